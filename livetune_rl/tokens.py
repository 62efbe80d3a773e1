"""Where a bearer token comes from: ``--token-file`` (0600/0400, yours), else ``$LIVETUNE_TOKEN``.

A token on the command line (``--token``) is readable by every user of the machine in ``ps``
for as long as the process runs. The commands that run for hours (``livetune train``,
``train-vision``) refuse it; the short client commands accept it with a warning.

Example::

    >>> import os, tempfile
    >>> fd, path = tempfile.mkstemp()          # created 0600
    >>> _ = os.write(fd, b"s3cret\\n"); os.close(fd)
    >>> token_from(None, path, environ={})
    's3cret'
    >>> token_from(None, None, environ={"LIVETUNE_TOKEN": "t"})
    't'
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from typing import Any

from .values import LiveTuneError

ENV = "LIVETUNE_TOKEN"
ARGV_WARNING = ("livetune: warning: a token given with --token is visible to every user of "
                "this machine (ps, /proc/PID/cmdline); use $LIVETUNE_TOKEN or --token-file")


class TokenError(LiveTuneError):
    """A token file that is missing, empty, someone else's or readable by others."""


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace removed).

    :param path: a file of this user, mode 0600 or 0400 (no access for group or others).
    :raises TokenError: naming the file, its mode or owner, and the fix.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise TokenError(f"the token file {path} belongs to uid {st.st_uid}, not to you "
                             f"(uid {os.getuid()}): use a file of your own, mode 0600")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise TokenError(f"the token file {path} has mode {mode:04o}: other users may read "
                             f"it. Run `chmod 600 {path}` (0600 or 0400 are accepted)")
        with os.fdopen(os.dup(fd), encoding="utf-8") as file:
            token = file.read().strip()
    finally:
        os.close(fd)
    if not token:
        raise TokenError(f"the token file {path} is empty")
    return token


SERVE_TOKEN_HELP = ("require the bearer token in FILE (yours, mode 0600 or 0400); default: "
                    "$LIVETUNE_TOKEN. The token is never written anywhere")
"""The ``--token-file`` help of a command that serves a run."""


def add_token_file(parser: Any, help: str = SERVE_TOKEN_HELP) -> None:
    """Add ``--token-file FILE`` (read with :func:`token_from`) to an argparse parser or
    argument group: how a command that serves or calls runs is given the token (a config
    holds the token itself, never a flag)."""
    parser.add_argument("--token-file", default=None, metavar="FILE", help=help)


def token_from(argv_token: str | None, token_file: str | None, *,
               environ: Mapping[str, str] | None = None) -> str | None:
    """The token to use: ``token_file``, else ``argv_token`` (a ``--token`` value: warns on
    stderr), else ``$LIVETUNE_TOKEN``, else None.

    :param argv_token: the value of a ``--token`` option (None if not given).
    :param token_file: the value of ``--token-file`` (None if not given).
    :param environ: where to look for ``LIVETUNE_TOKEN`` (default ``os.environ``).
    """
    if token_file is not None and argv_token is not None:
        raise TokenError("give the token once: --token-file or --token, not both")
    if token_file is not None:
        return read_token_file(token_file)
    if argv_token is not None:
        print(ARGV_WARNING, file=sys.stderr)
        return argv_token
    env = os.environ if environ is None else environ
    return env.get(ENV) or None
