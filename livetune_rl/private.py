"""Owner-only files and directories: what livetune writes, and what it trusts enough to load.

A run directory, its checkpoints and journal, and the per-user state directory (journals,
discovery records) are readable by their owner only: directories 0700, files 0600. New files
are created with ``O_EXCL | O_NOFOLLOW`` inside a directory livetune created (or checked), so
a symbolic link planted in advance is never followed, and an existing run directory is never
taken over by a new run. What livetune *loads* (a checkpoint on ``--resume``, a token file)
must belong to the user and not be writable by anyone else: loading a checkpoint runs code
from it (SB3 and ``torch.load`` unpickle).

Example::

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> run = new_private_dir(root / "run")          # 0700, refused if it exists
    >>> oct(run.stat().st_mode & 0o777)
    '0o700'
    >>> write_private(run / "config.json", "{}")     # 0600, never through a symlink
    >>> check_trusted(run / "config.json", "a config")   # owned by us, not group-writable
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .values import LiveTuneError

DIR_MODE = 0o700
FILE_MODE = 0o600


class UnsafePathError(LiveTuneError, PermissionError):
    """A path livetune would write or load is not safe: a symbolic link, someone else's, or
    writable by other users. The message names the path, the rule and the fix. It is a
    ``PermissionError`` too, so code that handles an unwritable path handles this one."""


def _uid() -> int:
    return os.getuid()


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _chmod_dir(path: Path) -> None:
    """chmod 0700 through a descriptor opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as an owner-only directory: created 0700 (missing parents too) if absent; if
    present, it must be a real directory (not a symlink) of this user, and is set to 0700.

    A symbolic link to a directory of this user that nobody else can enter is accepted as is
    (the link is not followed to chmod anything); any other link is refused.

    :param path: the directory.
    :raises UnsafePathError: a link to something else, or a directory of another user.
    """
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, mode=DIR_MODE)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.stat(path)  # only inspected, never chmod-ed
        if (not stat.S_ISDIR(target.st_mode) or target.st_uid != _uid()
                or target.st_mode & 0o077):
            raise UnsafePathError(
                f"{path} is a symbolic link to {os.path.realpath(path)} (mode "
                f"{stat.S_IMODE(target.st_mode):04o}, owner {_owner(target.st_uid)}); livetune "
                "keeps private files there only in a directory of yours that nobody else can "
                "enter: remove the link, or point it at such a directory (chmod 700)")
        return path
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} exists and is not a directory; move it away")
    if st.st_uid != _uid():
        raise UnsafePathError(
            f"{path} belongs to {_owner(st.st_uid)}, not to you; livetune keeps private files "
            "only in your own directories: remove it or choose another path")
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        _chmod_dir(path)
    return path


def new_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (mode 0700); ``FileExistsError`` if anything (even a link) is there.

    Missing parents are created with the default mode. The directory is checked after its
    creation, so what is written into it afterwards is written where this call created it.

    :param path: the directory to create.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(path, DIR_MODE)
    _chmod_dir(path)  # the umask may have taken bits away; never adds any for others
    return path


def open_private(path: str | os.PathLike[str], mode: str = "w") -> int:
    """A new file descriptor for ``path``, created 0600 with ``O_EXCL | O_NOFOLLOW``.

    :param path: a file that must not exist yet (a link there is refused too).
    :param mode: ``"w"`` (write) or ``"a"`` (append, the file may exist but not be a link).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if mode == "a" else os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    if mode == "a":
        st = os.fstat(fd)
        if st.st_uid != _uid() or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UnsafePathError(f"{path} is not a regular file of yours; livetune appends "
                                  "only to its own files: move it away")
    return fd


def write_private(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` (0600) atomically: a new temporary file in the same
    directory, then a rename over ``path`` (which replaces a link there, never follows it).

    :param path: the file to write or replace.
    :param data: its whole content.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def chmod_private_file(path: str | os.PathLike[str]) -> None:
    """Set a file this process just wrote (through a library) to 0600, not following links."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def check_trusted(path: str | os.PathLike[str], what: str) -> None:
    """Refuse to load ``path`` unless it, its directory and (for a link) the link's target
    and the target's directory belong to this user and are not writable by group or others.

    :param path: a file or directory about to be loaded.
    :param what: what it is, for the message ("a checkpoint", "a token file").
    :raises UnsafePathError: naming the offending path, its owner and mode, and the fix.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    seen: list[Path] = []
    for p in (path, path.absolute().parent, real, real.parent):
        if p in seen:
            continue
        seen.append(p)
        st = os.lstat(p) if p == path else os.stat(p)
        if st.st_uid != _uid():
            raise UnsafePathError(
                f"refusing to load {what} from {path}: {p} belongs to {_owner(st.st_uid)}, "
                "not to you; loading it would run code from it. Copy what you trust into a "
                "directory of your own")
        if st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(
                f"refusing to load {what} from {path}: {p} is writable by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}), so anyone could have changed it, and "
                f"loading it runs code from it. If you trust it: chmod go-w {p}")
