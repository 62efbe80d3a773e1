"""What serving a run means, decided once: :class:`ServeOptions`, and the :class:`Serving` type.

``serve(...)`` turns its keywords into one frozen :class:`ServeOptions` (run name, address,
token, TLS, pacing, journal path, watchers, in or out of process), validated here, before
anything starts. The in-thread server (:class:`livetune_rl.server.Server`) and the
child-process server (:class:`livetune_rl.sidecar.ProcessServer`) are both built from it and
both are a :class:`Serving`. This module imports neither of them (nor grpc): it is what the
CLI, the training commands and both servers share.

Example::

    >>> options = ServeOptions("127.0.0.1:0", run="demo", token="t0ken", journal=False)
    >>> options.run, options.bind_address, options.journal
    ('demo', '127.0.0.1:0', False)
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from . import discovery
from .values import LiveTuneError

if TYPE_CHECKING:
    from typing_extensions import Self

    from .registry import Registry

DEFAULT_ADDRESS = "127.0.0.1:50051"
# unary calls/s of all clients together: a human, a tuner or a polling dashboard needs far
# less; a storm paced to it costs ~a quarter of a core (clients, server and watcher together)
MAX_CALLS_PER_SECOND = 100.0
CLIENT_METADATA = "x-livetune-client"  # the name a client claims, journaled with its changes
_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ServeError(LiveTuneError):
    """The server could not start (address in use, unsafe bind without a token, bad TLS)."""


class TrainingUnavailableError(LiveTuneError):
    """The training process did not answer in time (out-of-process serving); nothing changed."""


def is_loopback(address: str) -> bool:
    """True for ``unix:`` paths and hosts on the loopback interface only.

    An abstract unix socket (``unix-abstract:NAME``) is not: it has no file permissions, so
    any local user can connect to it, or bind the name first. It is served only with a token
    (or ``insecure=True``).

    Example::

        >>> is_loopback("127.0.0.1:50051"), is_loopback("0.0.0.0:1"), is_loopback("unix:x")
        (True, False, True)
    """
    if address.startswith("unix-abstract:"):
        return False
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_journal_path(run: str) -> Path:
    """Where a run's journal goes when none is named: the per-user state directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return discovery.journals_dir() / f"{run}-{stamp}-{os.getpid()}.jsonl"


def journal_error(path: Path, exc: OSError) -> ServeError:
    """The one refusal for a journal that cannot be written (in or out of process)."""
    return ServeError(f"cannot write the journal {path}: {exc.strerror or exc}; pass "
                      "journal=<writable path> (--runs-root for livetune train) or "
                      "journal=False to run without one")


def _default_run_name() -> str:
    run = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(sys.argv[0] or "").stem).lstrip("_.-")
    return run[:64] or "livetune"


@dataclass(frozen=True)
class ServeOptions:
    """Everything :func:`~livetune_rl.server.serve` was asked for, resolved and validated.

    Constructing one checks it (:class:`ServeError` names what is wrong and how to fix it)
    and fills the defaults in: the run name from the script's name, the token from
    ``$LIVETUNE_TOKEN``, the journal path under the per-user state directory. Resolving an
    already resolved value changes nothing, so ``dataclasses.replace`` works as expected.

    :param address: ``host:port``, ``unix:/path`` or ``unix-abstract:NAME``; None: the
        default address, or a free port when it is taken (:attr:`bind_address`).
    :param run: run name shown by ``livetune runs`` (None: the script's name).
    :param token: bearer token every call must carry (None: ``$LIVETUNE_TOKEN``, if set).
    :param tls_cert: PEM certificate to serve TLS (with ``tls_key``).
    :param tls_key: PEM private key to serve TLS (with ``tls_cert``).
    :param insecure: allow a non-loopback bind without a token (a trusted network).
    :param journal: a path, None or True for the default path, False for no journal.
    :param discoverable: write the discovery record ``livetune runs`` reads.
    :param max_watchers: concurrent ``Watch`` streams allowed.
    :param max_calls_per_second: pace unary calls of all clients together (None: no pacing).
    :param watcher_timeout: seconds a watcher may read nothing while changes wait for it.
    :param gil_switch_interval: ``sys.setswitchinterval`` while serving in this process.
    :param quiet: do not print the start line (it is logged either way).
    :param out_of_process: serve from a child process (:mod:`livetune_rl.sidecar`).
    :param livetune_port: also accept the original LiveTune ``tune`` command on
        ``127.0.0.1:PORT`` (0: a free port; :mod:`livetune_rl.compat`); None: off.

    Example::

        >>> ServeOptions("0.0.0.0:1", run="r")   # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        livetune_rl.options.ServeError: refusing to serve on non-loopback address ...
    """

    address: str | None = None
    run: str | None = None  # resolved: always a str
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    journal: Path | Literal[False] | None = None
    discoverable: bool = True
    max_watchers: int = 256
    max_calls_per_second: float | None = MAX_CALLS_PER_SECOND
    watcher_timeout: float = 30.0
    gil_switch_interval: float | None = None
    quiet: bool = False
    out_of_process: bool = False
    livetune_port: int | None = None

    def __post_init__(self) -> None:
        def resolved(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.livetune_port is not None and not 0 <= self.livetune_port <= 65535:
            raise ServeError(f"invalid livetune_port {self.livetune_port!r}: use a TCP port "
                             "0-65535 (0 picks a free one), or None to keep it closed")

        run = self.run if self.run is not None else _default_run_name()
        if not _RUN_NAME.fullmatch(run):
            raise ServeError(f"invalid run name {run!r}: use 1-64 letters, digits, '_', '.' "
                             "or '-', not starting with '.' or '-'")
        resolved("run", run)
        token = self.token if self.token is not None else os.environ.get("LIVETUNE_TOKEN")
        resolved("token", token or None)
        if not is_loopback(self.bind_address) and not self.token and not self.insecure:
            raise ServeError(
                f"refusing to serve on non-loopback address {self.address} without a token: "
                "anyone who can reach it could change this run. Pass token=... (or "
                "--token-file, or set LIVETUNE_TOKEN), or insecure=True if the network is "
                "trusted."
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ServeError("TLS needs both tls_cert and tls_key")
        resolved("tls_cert", Path(self.tls_cert) if self.tls_cert else None)
        resolved("tls_key", Path(self.tls_key) if self.tls_key else None)
        rate = self.max_calls_per_second
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ServeError(f"max_calls_per_second must be a positive number (None: no "
                             f"pacing), got {rate!r}")
        if self.journal is None or self.journal is True:
            resolved("journal", default_journal_path(run))
        elif self.journal is not False:
            resolved("journal", Path(self.journal))

    @property
    def bind_address(self) -> str:
        """The address to bind: the one given, else :data:`DEFAULT_ADDRESS`."""
        return self.address or DEFAULT_ADDRESS

    @property
    def journal_path(self) -> Path | None:
        """The journal to write, or None to keep none."""
        return self.journal if self.journal is not False else None


def check_serve_args(address: str | None, run: str | None, token: str | None,
                     tls_cert: str | os.PathLike[str] | None,
                     tls_key: str | os.PathLike[str] | None,
                     insecure: bool,
                     max_calls_per_second: float | None = None) -> tuple[str, str | None]:
    """The run name and token :func:`~livetune_rl.server.serve` will use; :class:`ServeError`
    for an unsafe or invalid request: the checks of :class:`ServeOptions`, for a caller that
    wants them before it starts anything else (``livetune train`` before training).

    Example::

        >>> check_serve_args("127.0.0.1:0", "demo", "t0ken", None, None, False)
        ('demo', 't0ken')
    """
    options = ServeOptions(address, run=run, token=token,
                           tls_cert=Path(tls_cert) if tls_cert else None,
                           tls_key=Path(tls_key) if tls_key else None, insecure=insecure,
                           journal=False, max_calls_per_second=max_calls_per_second)
    return options.run, options.token


class Serving(ABC):
    """A started server of one registry: in this process's thread or in a child process.

    :func:`~livetune_rl.server.serve` returns one; both kinds are built complete by their
    constructors (serving when the constructor returns) and stop with :meth:`stop` or at the
    end of a ``with`` block.

    Attributes:
        options: what was asked for. registry: the served registry. run: the run name.
        address: the address clients use (the real port when a free one was picked).
        journal_path: the journal written. record_path: the discovery record written.
        start_line: the line printed (and logged) when serving started.
    """

    options: ServeOptions
    registry: Registry
    address: str
    journal_path: Path | None
    record_path: Path | None
    start_line: str
    livetune_listener: Any = None
    """The original LiveTune protocol's listener when ``livetune_port`` opened one (its
    ``port`` is the one to give ``tune -p``); it stops with the server."""

    _started: ClassVar[weakref.WeakSet[Serving]] = weakref.WeakSet()

    def __init__(self) -> None:
        self._stopped = threading.Event()
        Serving._started.add(self)

    @staticmethod
    def serving(registry: Registry) -> Serving | None:
        """The server of this process that serves ``registry`` now, if any (in a thread of
        this process or from a child process).

        Example::

            >>> from livetune_rl import Registry
            >>> Serving.serving(Registry()) is None
            True
        """
        return next((s for s in list(Serving._started)
                     if getattr(s, "registry", None) is registry and not s.stopped
                     and getattr(s, "address", "")),
                    None)

    @property
    def run(self) -> str:
        """The run name."""
        return self.options.run

    @abstractmethod
    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds); idempotent."""

    def _stop_listener(self) -> None:
        """Close the LiveTune port (the subclasses' :meth:`stop` call this first)."""
        if self.livetune_listener is not None:
            self.livetune_listener.stop()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` has begun."""
        return self._stopped.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(run={self.run!r}, address={self.address!r})"
