"""Per-user records of the runs serving on this machine, so clients find them by name.

Each serving process writes one small JSON file (run name, address, pid, start time, journal
path, whether a token or TLS is needed) into a per-user directory created with mode 0700
(``$LIVETUNE_HOME/runs``, else ``$XDG_RUNTIME_DIR/livetune/runs``, else
``~/.local/state/livetune/runs``). The file is removed at a clean stop; records of processes
that died are recognised (the pid is gone or belongs to another process since) and removed by
the next :func:`list_runs`.

Example::

    >>> for run in list_runs():                       # doctest: +SKIP
    ...     print(run.run, run.address, run.pid)
    ppo-demo 127.0.0.1:50051 41234
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .private import ensure_private_dir
from .values import LiveTuneError

log = logging.getLogger(__name__)
_RECORD_NAME = re.compile(r".+-[0-9]+\.json")


def state_home() -> Path:
    """The per-user livetune directory (created on demand with mode 0700)."""
    if os.environ.get("LIVETUNE_HOME"):
        return Path(os.environ["LIVETUNE_HOME"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "livetune"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "livetune"


def runs_dir() -> Path:
    return state_home() / "runs"


def journals_dir() -> Path:
    """Where runs served without a journal path keep their journal (created 0700)."""
    ensure_private_dir(state_home())
    return ensure_private_dir(state_home() / "journals")


def _private_dir(path: Path) -> Path:
    """``path`` and the state directory above it as owner-only directories. A symlink is
    never followed to chmod its target; one to a directory that is not private is refused."""
    if path.parent == state_home():
        ensure_private_dir(path.parent)
    return ensure_private_dir(path)


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None where unknown.

    Stored with the record so that a pid reused by another process is not taken for the run.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True if ``pid`` runs and (where known) is the same process that wrote the record."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start_ticks is not None:
        now = process_start_ticks(pid)
        if now is not None and now != start_ticks:
            return False
    return True


@dataclass(frozen=True)
class RunRecord:
    """What a client needs to reach a run."""

    run: str
    address: str
    pid: int
    started: float
    journal: str = ""
    token_required: bool = False
    tls: bool = False
    pid_start_ticks: int | None = None
    path: str = ""

    @property
    def uptime(self) -> float:
        return time.time() - self.started

    def alive(self) -> bool:
        return pid_alive(self.pid, self.pid_start_ticks)


def write_record(record: RunRecord, directory: Path | None = None) -> Path:
    """Atomically write ``record`` (mode 0600) and return its path."""
    directory = _private_dir(directory or runs_dir())
    path = directory / f"{record.run}-{record.pid}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            data = asdict(record)
            data.pop("path")
            json.dump(data, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_record(path: str | os.PathLike[str]) -> None:
    Path(path).unlink(missing_ok=True)


def _trusted_dir(directory: Path) -> bool:
    """True if ``directory`` (or what a link there points at) is this user's and private."""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        log.warning("livetune: ignoring the discovery directory %s: it must be yours and "
                    "private (mode 0700, owner uid %d), it is mode %04o, owner uid %d",
                    directory, os.getuid(), stat.S_IMODE(st.st_mode), st.st_uid)
        return False
    return True


def list_runs(directory: Path | None = None, *, cleanup: bool = True) -> list[RunRecord]:
    """Live runs, oldest first.

    Only records this user wrote are read: regular files (not links) owned by the user, in a
    private directory of the user's. With ``cleanup``, a record whose process has died is
    removed; a file that does not parse as a record is left alone (nothing proves livetune
    wrote it) and skipped.
    """
    directory = directory or runs_dir()
    if not _trusted_dir(directory):
        return []
    runs = []
    uid = os.getuid()
    for path in sorted(directory.glob("*.json")):
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                continue  # not a record of ours: never read as one, never removed
            data = json.loads(path.read_text(encoding="utf-8"))
            record = RunRecord(**{**data, "path": str(path)})
        except (OSError, ValueError, TypeError):
            continue
        if record.alive():
            runs.append(record)
        elif cleanup and _RECORD_NAME.fullmatch(path.name):
            remove_record(path)
    return sorted(runs, key=lambda r: r.started)


class RunNotFoundError(LiveTuneError):
    """No live run matches, or several do."""


def find_run(name: str | None = None, directory: Path | None = None) -> RunRecord:
    """The live run called ``name`` (or with that pid); with no name, the only live run."""
    runs = list_runs(directory)
    if name is None:
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise RunNotFoundError("no live run found on this machine (is training running?)")
        listing = ", ".join(f"{r.run} (pid {r.pid})" for r in runs)
        raise RunNotFoundError(f"several runs are live, pick one with --run: {listing}")
    matches = [r for r in runs if r.run == name or str(r.pid) == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(sorted({r.run for r in runs})) or "none"
        raise RunNotFoundError(f"no live run named {name!r} (live runs: {known})")
    pids = ", ".join(str(r.pid) for r in matches)
    raise RunNotFoundError(f"several live runs are named {name!r}; use --run PID ({pids})")
