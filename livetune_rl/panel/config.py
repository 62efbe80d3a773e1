"""What ``livetune panel`` serves and for whom: :class:`PanelConfig`, checked once.

The panel is an HTTP server for one person's browser. Like a run, it binds to the loopback
interface unless told otherwise, and a non-loopback bind is refused without a token: anyone
who can reach the page can change every run it shows. The token comes from ``--token-file``
or ``$LIVETUNE_TOKEN`` (never from the page's URL); the panel sends it to the runs, and asks
the browser for it once (a login form) whenever it holds one.

Example::

    >>> config = PanelConfig(port=0)
    >>> config.bind, config.check().runs
    ('127.0.0.1', ())
    >>> PanelConfig(bind="0.0.0.0").check()
    Traceback (most recent call last):
    ...
    livetune_rl.panel.config.PanelConfigError: the panel would listen on 0.0.0.0 (not \
loopback) without a token: anyone who reaches it could change your runs. Give a token \
(--token-file FILE or $LIVETUNE_TOKEN), or bind 127.0.0.1
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..flags import option
from ..options import is_loopback
from ..values import LiveTuneError

DEFAULT_PORT = 8765
_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class PanelConfigError(LiveTuneError):
    """A panel that cannot start as configured (unsafe bind, bad port or run name)."""


@dataclass(frozen=True)
class PanelConfig:
    """Options of ``livetune panel``: every field declared with ``option`` is a flag."""

    port: int = option(DEFAULT_PORT, "HTTP port (0: any free port; the URL is printed)")
    bind: str = option("127.0.0.1", "interface to listen on; a non-loopback one needs a token",
                       metavar="HOST")
    runs: tuple[str, ...] = option(
        (), "show only these runs (names or pids); default: every live run of yours, and "
        "those that start later", names=("--run",), nargs="+", metavar="NAME", parse=str)
    runs_root: str = option(
        "runs", "where `livetune train` keeps run directories: their journals are listed as "
        "ended runs (read-only)", metavar="DIR")
    cacert: str | None = option(
        None, "CA certificate (PEM) of runs that serve TLS (default: $LIVETUNE_CACERT)",
        metavar="FILE")
    timeout: float = option(5.0, "seconds per call to a run", metavar="SECONDS")
    poll: float = option(1.0, "seconds between reads of each run's step (the steps/s curve)",
                         metavar="SECONDS")
    token: str | None = None  # from --token-file or $LIVETUNE_TOKEN, never a flag

    def check(self) -> PanelConfig:
        """This config, or :class:`PanelConfigError` naming what is unsafe or invalid."""
        if not 0 <= self.port <= 65535:
            raise PanelConfigError(f"--port {self.port} is not a TCP port: use 1-65535, or 0 "
                                   "for any free port")
        if not is_loopback(f"{self.bind}:{self.port}") and not self.token:
            raise PanelConfigError(
                f"the panel would listen on {self.bind} (not loopback) without a token: anyone "
                "who reaches it could change your runs. Give a token (--token-file FILE or "
                "$LIVETUNE_TOKEN), or bind 127.0.0.1")
        for name in self.runs:
            if not _RUN_NAME.fullmatch(name):
                raise PanelConfigError(
                    f"--run {name!r} is not a run name: names are 1-64 letters, digits, "
                    "'_', '.' or '-' (see `livetune runs`)")
        if self.timeout <= 0 or self.poll <= 0:
            raise PanelConfigError(f"--timeout {self.timeout} and --poll {self.poll} must be "
                                   "positive numbers of seconds")
        return self

    def with_token(self, token: str | None) -> PanelConfig:
        """A copy holding ``token`` (empty text counts as none)."""
        return replace(self, token=token or None)

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the panel."""
        return is_loopback(f"{self.bind}:{self.port}")
