"""Out-of-process serving: the gRPC server runs in a child process, training keeps attributes.

``serve(out_of_process=True)`` (what ``livetune train`` and ``train-vision`` do unless given
``--no-serve-process``) starts a child Python
process (``python -m livetune_rl.sidecar``: a fresh interpreter, never a fork of a process
holding torch threads, and the user's script is not re-imported) that runs the usual asyncio
gRPC server (pacing, token, TLS, health, reflection, watchers, discovery record) over a
*replica* registry. The replica is the authority for versions and owns the journal. The
training process keeps its own :class:`~livetune_rl.registry.Registry`, whose variables the
training loop reads as plain attributes exactly as before: no lock, no RPC.

One socket pair links the two:

* child -> training: committed sets and fires, **coalesced**: a change is sent at once if
  nothing was sent in the last 20 ms, else the latest event per name is sent at the end of
  the window, so a storm of any rate wakes the training process at most ~50 times/s.
  A receiver thread there blocks on the socket (no interpreter lock held while it waits) and
  publishes the values with the versions the child gave them.
* training -> child: definitions (also those made after serving started), the training
  loop's records (``applied`` with step and version, ``event``, trigger handled) and sets or
  fires made by the training process itself, journaled and streamed by the child in one
  version order. A variable's custom ``check`` runs in the training process: the child asks
  the receiver thread and waits (``ABORTED``, nothing changed, if it gets no answer within 5 s).
* the training step is shared through 8 bytes of shared memory, so sets are journaled with
  the step at which they arrived.

If the training process dies the child sees the socket close (or its parent change), stops
serving and removes the discovery record. If the child dies, training goes on with the
values it had; a warning says the run is no longer served. A set the child acknowledged is
journaled before the acknowledgment, but may not have reached training yet (it waits up to
20 ms in the coalescing window): so when the child exits, training reads the journal's tail
and applies the sets and fires newer than the last it received. "Acknowledged" thus always
means "will be applied" (with a journal; ``journal=False`` has nothing to read back).

Example::

    >>> import livetune_rl as lt
    >>> reg = lt.Registry()
    >>> lr = lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0, registry=reg)
    >>> server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True,
    ...                   journal=False, discoverable=False, quiet=True)   # doctest: +SKIP
    >>> with lt.connect(server.address) as client:                       # doctest: +SKIP
    ...     _ = client.set({"learning_rate": 1e-4})
    >>> lr.value                   # a moment later, in the training process  # doctest: +SKIP
    0.0001
    >>> server.stop()                                                     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import itertools
import logging
import mmap
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from . import discovery
from .journal import ChangeEvent, Journal, iter_journal_backwards
from .registry import LiveTrigger, LiveVariable, Registry, default_registry
from .server import (
    MAX_CALLS_PER_SECOND,
    ServeError,
    Server,
    TrainingUnavailableError,
    _default_journal_path,
    check_serve_args,
    serve_here,
)
from .values import InvalidValueError, LiveTuneError, Value, VersionConflictError

log = logging.getLogger(__name__)

COALESCE_WINDOW = 0.02  # seconds: at most ~50 wake-ups of the training process per second
CHECK_TIMEOUT = 5.0  # seconds the child waits for a custom check run by the training process
COMMIT_TIMEOUT = 10.0  # seconds a set made in the training process waits for the child
START_TIMEOUT = 60.0  # seconds serve() waits for the child to be serving
NICENESS = 10  # the serving process yields the CPU to training when cores are scarce
RECOVER_SECONDS = 10.0  # how far back training reads the journal when the child exits

_ERRORS: dict[str, type[Exception]] = {
    "InvalidValueError": InvalidValueError,
    "VersionConflictError": VersionConflictError,
    "OSError": OSError,
}


def _definition(item: LiveVariable | LiveTrigger) -> dict[str, Any]:
    """What the child needs to mirror ``item`` (its check stays in the training process)."""
    if isinstance(item, LiveVariable):
        spec = item.spec
        return {"kind": "variable", "name": item.name, "default": item.default,
                "min": spec.min, "max": spec.max, "choices": spec.choices, "help": item.help,
                "deferred": item.deferred, "checked": spec.check is not None,
                "value": item.value, "version": item.version, "changed_at": item.changed_at,
                "source": item.source, "step": item.step,
                "applied_version": item.applied_version, "applied_step": item.applied_step}
    return {"kind": "trigger", "name": item.name, "help": item.help, "fires": item.fires,
            "handled": item.handled, "version": item.version, "last_fired": item.last_fired,
            "source": item.source, "max_pending": item.max_pending,
            "coalesced": item.coalesced}


def records_after(path: Path, version: int, since: float = 0.0) -> list[ChangeEvent]:
    """The journal records of ``path`` with a version above ``version`` (and written at or
    after ``since``), oldest first, reading the file backwards only as far as needed (torn
    or corrupt lines skipped).

    :param path: a journal file (absent: no records).
    :param version: records at or below this version are not returned.
    :param since: reading stops at the first record (from the end) older than this time.
    """
    found: list[ChangeEvent] = []
    try:
        for event in iter_journal_backwards(path):
            if event.v <= version or event.t < since:
                break
            found.append(event)
    except FileNotFoundError:
        return []
    return found[::-1]


def _error_message(exc: BaseException) -> tuple[str, str]:
    kind = type(exc).__name__
    if isinstance(exc, OSError):
        kind = "OSError"
    return kind, str(exc)


# ===================================================================== training process side
class _ParentLink:
    """The training process's end of the link, installed as the registry's ``_link``.

    Two daemon threads, both asleep in a blocking call (interpreter lock released) unless
    something happens: a sender (so the training thread never blocks on the socket) and a
    receiver (publishes coalesced batches, answers checks, resolves commits).
    """

    def __init__(self, registry: Registry, conn: Connection,
                 proc: subprocess.Popen[bytes]) -> None:
        self.registry = registry
        self.conn = conn
        self.proc = proc
        self.ready: Future[dict[str, Any]] = Future()
        self.stopping = False
        self.dead = False
        self.record_path: Path | None = None
        self.journal_path: Path | None = None  # the child's journal, read back if it dies
        self.seen = registry.version  # newest version of the child's events received here
        self._out: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                        name="livetune-link-send")
        self._receiver = threading.Thread(target=self._receive_loop, daemon=True,
                                          name="livetune-link-receive")

    def start(self) -> None:
        self._sender.start()
        self._receiver.start()

    def send(self, message: tuple[Any, ...]) -> None:
        self._out.put(message)

    # --------------------------------------------------------- RegistryLink protocol
    def define(self, item: LiveVariable | LiveTrigger) -> None:
        self.send(("define", _definition(item)))

    def remove(self, name: str) -> None:
        self.send(("remove", name))

    def record(self, event: ChangeEvent) -> None:
        self.send(("record", event))

    def commit(self, request: tuple[Any, ...]) -> list[ChangeEvent]:
        """Have the child commit a set or fire made in this process; its events."""
        future: Future[Any] = Future()
        with self._lock:
            if self.dead:
                raise LiveTuneError("the serving process has exited; nothing was changed")
            ident = next(self._ids)
            self._pending[ident] = future
        self.send(("commit", ident, request))
        try:
            result = future.result(COMMIT_TIMEOUT)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(ident, None)
            raise LiveTuneError(f"the serving process did not answer within "
                                f"{COMMIT_TIMEOUT:g} s; the change may not be made") from None
        if isinstance(result, tuple):
            kind, message = result
            raise _ERRORS.get(kind, LiveTuneError)(message)
        return list(result)

    # --------------------------------------------------------- threads
    def _send_loop(self) -> None:
        while True:
            message = self._out.get()
            if message is None:
                return
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                return  # the receiver sees the end of the link and says so

    def _receive_loop(self) -> None:
        try:
            while True:
                message = self.conn.recv()
                kind = message[0]
                if kind == "batch":
                    self.registry._apply_remote(message[1])
                    self._saw(message[1])
                elif kind == "reply":
                    if isinstance(message[2], list):
                        self._saw(message[2])
                    with self._lock:
                        future = self._pending.pop(message[1], None)
                    if future is not None:
                        future.set_result(message[2])
                elif kind == "check":
                    self.send(("checked", message[1], self._check(message[2], message[3])))
                elif kind == "ready":
                    self.ready.set_result(message[1])
                elif kind == "error":
                    self.ready.set_exception(ServeError(message[1]))
        except (EOFError, OSError):
            pass
        except Exception:  # never let the link take the training process down
            log.exception("livetune: the link to the serving process failed")
        finally:
            self._died()

    def _saw(self, events: list[ChangeEvent]) -> None:
        if events:
            self.seen = max(self.seen, max(e.v for e in events))

    def recover(self) -> int:
        """Apply the sets and fires the child journaled but did not send here (it exited
        inside its coalescing window); how many records were read back."""
        if self.journal_path is None:
            return 0
        try:  # only the last moments can hold what was not sent: the window is 20 ms
            missed = [e for e in records_after(self.journal_path, self.seen,
                                               since=time.time() - RECOVER_SECONDS)
                      if e.kind in ("set", "fire")]
        except OSError as exc:
            log.error("livetune: cannot read the journal %s back (%s); sets acknowledged "
                      "in the serving process's last 20 ms may not be applied",
                      self.journal_path, exc)
            return 0
        if missed:
            self.registry._apply_remote(missed)
            self._saw(missed)
        return len(missed)

    def _check(self, name: str, value: Value) -> str | None:
        """Run ``name``'s full validation (its custom check too) here; the refusal, if any."""
        var = self.registry._vars.get(name)
        if var is None:
            return f"{name}: no such variable in the training process any more"
        try:
            var.spec.accept(name, value)
        except InvalidValueError as exc:
            return str(exc)
        except Exception as exc:  # a broken check refuses, it does not crash anything
            return f"{name}: its check failed: {type(exc).__name__}: {exc}"
        return None

    def _died(self) -> None:
        with self._lock:
            if self.dead:
                return
            self.dead = True
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.set_result(("LiveTuneError", "the serving process has exited; nothing "
                                                "was changed"))
        if not self.ready.done():
            code = self.proc.poll()
            self.ready.set_exception(ServeError(
                f"the serving process exited before serving (exit status {code}); see its "
                "messages above"))
        self.detach()
        self._out.put(None)
        if self.ready.done() and self.ready.exception() is None:
            recovered = self.recover()
            if recovered and not self.stopping:
                log.warning("livetune: %d journaled change(s) the serving process had not "
                            "sent yet were applied from the journal", recovered)
        if not self.stopping:
            if self.record_path is not None:
                discovery.remove_record(self.record_path)
            log.warning("livetune: the serving process (pid %d) has exited; training goes "
                        "on with the values it had, but the run is no longer served or "
                        "journaled", self.proc.pid)

    def detach(self) -> None:
        """Make the registry a plain local one again (idempotent)."""
        registry = self.registry
        with registry._lock:
            if registry._link is self:
                registry._link = None
                registry._step_cell = None


class ProcessServer:
    """A run served from a child process. Create it with ``serve(out_of_process=True)``.

    Attributes:
        address: the address clients use. run: the run name. registry: the training-side
        registry. journal_path: the journal the child writes. pid: the child's process id.
    """

    def __init__(self, registry: Registry, run: str, link: _ParentLink,
                 proc: subprocess.Popen[bytes], step_memory: tuple[IO[bytes], mmap.mmap]
                 ) -> None:
        self.registry = registry
        self.run = run
        self.address = ""
        self.journal_path: Path | None = None
        self.record_path: Path | None = None
        self.start_line = ""
        self._link = link
        self._proc = proc
        self._step_memory = step_memory  # kept alive while the child maps it
        self._stopped = threading.Event()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """True while the serving process runs and is linked to this one."""
        return self._proc.poll() is None and not self._link.dead

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving: records already made are journaled first, then the child stops
        (in-flight calls get ``grace`` seconds) and removes the discovery record."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        link = self._link
        link.stopping = True
        link.send(("stop", grace))
        try:
            self._proc.wait((grace or 0) + 10)
        except subprocess.TimeoutExpired:
            log.warning("livetune: the serving process did not stop; killing it")
            self._proc.kill()
            self._proc.wait()
        link.detach()
        link.recover()  # a set acknowledged just before the stop is applied too
        link.send(None)
        with contextlib.suppress(OSError):
            link.conn.close()
        if self.record_path is not None:
            discovery.remove_record(self.record_path)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> ProcessServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ProcessServer(run={self.run!r}, address={self.address!r}, pid={self.pid})"


def serve_process(
    address: str | None = None,
    *,
    run: str | None = None,
    token: str | None = None,
    registry: Registry | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    journal: str | os.PathLike[str] | bool | None = None,
    discoverable: bool = True,
    max_watchers: int = 256,
    max_calls_per_second: float | None = MAX_CALLS_PER_SECOND,
    watcher_timeout: float = 30.0,
    quiet: bool = False,
    niceness: int = NICENESS,
) -> ProcessServer:
    """``serve(out_of_process=True)``: serve ``registry`` from a child process (see above).

    Arguments as :func:`livetune_rl.server.serve`. A registry that already journals (a
    resumed ``livetune train``) hands its journal to the child, which appends to it and
    continues the version sequence. ``niceness`` is added to the child's nice value: when
    the cores are all busy the kernel gives the training process the CPU first, and a storm
    of requests slows down to what the spare CPU serves (0: same priority as training).

    Example::

        >>> server = serve_process("127.0.0.1:0", registry=Registry(), journal=False,
        ...                        discoverable=False, quiet=True)   # doctest: +SKIP
    """
    registry = registry if registry is not None else default_registry()
    run, token = check_serve_args(address, run, token, tls_cert, tls_key, insecure,
                                  max_calls_per_second)
    if registry._link is not None:
        raise ServeError("this registry is already served from another process")
    own_journal = registry.journal
    journal_path: Path | None
    if own_journal is not None:
        journal_path = own_journal.path
    elif journal is False:
        journal_path = None
    else:
        journal_path = (_default_journal_path(run) if journal is None or journal is True
                        else Path(journal))

    parent_sock, child_sock = socket.socketpair()
    step_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
    step_file.truncate(8)
    step_map = mmap.mmap(step_file.fileno(), 8)
    step_cell = ctypes.c_int64.from_buffer(step_map)
    step_cell.value = -1 if registry.step is None else registry.step
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livetune_rl.sidecar", str(child_sock.fileno()),
             str(step_file.fileno())],
            pass_fds=(child_sock.fileno(), step_file.fileno()), stdin=subprocess.DEVNULL,
            env=env,  # same session: its niceness counts against training's (autogroups)
        )
    except OSError as exc:
        parent_sock.close()
        raise ServeError(f"cannot start the serving process: {exc}") from None
    finally:
        child_sock.close()
    link = _ParentLink(registry, Connection(parent_sock.detach()), proc)
    link.journal_path = journal_path
    config = {
        "address": address, "run": run, "token": token,
        "tls_cert": str(tls_cert) if tls_cert else None,
        "tls_key": str(tls_key) if tls_key else None, "insecure": insecure,
        "journal": str(journal_path) if journal_path is not None else None,
        "adopt_journal": own_journal is not None, "discoverable": discoverable,
        "max_watchers": max_watchers, "max_calls_per_second": max_calls_per_second,
        "watcher_timeout": watcher_timeout, "pid": os.getpid(),
        "check_timeout": CHECK_TIMEOUT, "niceness": niceness,
    }
    with registry._lock:
        config["definitions"] = [_definition(item)
                                 for item in [*registry.variables(), *registry.triggers()]]
        config["version"] = registry.version
        link.send(("config", config))
        registry.journal = None  # the child appends to it from now on
        registry._link = link
        registry._step_cell = step_cell
    link.start()
    try:
        info = link.ready.result(START_TIMEOUT)
    except BaseException as exc:
        link.stopping = True
        link.detach()
        with registry._lock:
            registry.journal = own_journal
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        link.send(None)
        if isinstance(exc, ServeError):
            raise
        if isinstance(exc, FutureTimeout):
            raise ServeError(f"the serving process did not start within {START_TIMEOUT:g} s"
                             ) from None
        raise
    if own_journal is not None:
        own_journal.close()
    server = ProcessServer(registry, run, link, proc, (step_file, step_map))
    server.address = info["address"]
    server.journal_path = Path(info["journal"]) if info["journal"] else None
    server.record_path = link.record_path = (Path(info["record"]) if info["record"]
                                             else None)
    server.start_line = f"{info['line'][:-1]}, served from pid {proc.pid})"
    atexit.register(server.stop)
    log.info(server.start_line)
    if not quiet:
        print(server.start_line, file=sys.stderr, flush=True)
    return server


# ===================================================================== serving process side
class _Replica(Registry):
    """The serving process's registry: the authority for versions and the journal.

    Its step is the training process's, read from shared memory; custom checks are asked of
    the training process (names in ``checked``).
    """

    def __init__(self, step_cell: ctypes.c_int64) -> None:
        super().__init__()
        self._cell = step_cell
        self.checked: set[str] = set()

    @property  # type: ignore[override]
    def step(self) -> int | None:
        value = self._cell.value
        return None if value < 0 else value

    @step.setter
    def step(self, value: int | None) -> None:  # the training process owns the step
        pass

    def define(self, d: dict[str, Any]) -> None:
        """Mirror a variable or trigger of the training process (replacing one of that name)."""
        with self._lock:
            name = d["name"]
            if name in self:
                self.remove(name)
            self.checked.discard(name)
            if d["kind"] == "variable":
                var = LiveVariable(name, d["default"], min=d["min"], max=d["max"],
                                   choices=d["choices"] or None, help=d["help"],
                                   deferred=d["deferred"], registry=self)
                var.value, var.version, var.changed_at = d["value"], d["version"], \
                    d["changed_at"]
                var.source, var.step = d["source"], d["step"]
                var.applied_version, var.applied_step = d["applied_version"], \
                    d["applied_step"]
                if d["checked"]:
                    self.checked.add(name)
            else:
                trig = LiveTrigger(name, d["help"], max_pending=d.get("max_pending", 1),
                                   registry=self)
                trig.fires, trig.handled, trig.version = d["fires"], d["handled"], \
                    d["version"]
                trig.coalesced = d.get("coalesced", 0)
                trig.last_fired, trig.source = d["last_fired"], d["source"]

    def forget(self, name: str) -> None:
        with self._lock:
            if name in self:
                self.remove(name)
            self.checked.discard(name)

    def adopt(self, event: ChangeEvent) -> None:
        """Journal and stream a record of the training loop under this registry's version."""
        with self._lock:
            if event.kind == "applied":
                var = self._vars.get(event.name)
                if var is not None and event.applies is not None:
                    var.applied_version = max(var.applied_version, event.applies)
                    var.applied_step = event.step
                trig = self._triggers.get(event.name)
                if trig is not None and isinstance(event.new, int):
                    trig.handled = max(trig.handled, event.new)
            record = replace(event, v=self.version + 1)
            self._write_from_training([record])
            self._publish([record])


class _Child:
    """The serving process: the gRPC server over a replica, and its end of the link."""

    def __init__(self, conn: Connection, config: dict[str, Any],
                 step_cell: ctypes.c_int64) -> None:
        self.conn = conn
        self.config = config
        self.parent_pid = int(config["pid"])
        self.replica = _Replica(step_cell)
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._checks: dict[int, Future[str | None]] = {}
        self._checks_lock = threading.Lock()
        self._pending: dict[str, ChangeEvent] = {}
        self._wake = threading.Condition()
        self._closed = False
        self._link_thread = threading.current_thread()
        self._coalescer = threading.Thread(target=self._coalesce, daemon=True,
                                           name="livetune-coalesce")

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    # --------------------------------------------------------- child -> training
    def _forward(self, event: ChangeEvent) -> None:
        """Subscriber: queue a committed set/fire for the training process (latest per name).
        Changes the training process asked for are answered directly, not forwarded."""
        if event.kind not in ("set", "fire") or threading.current_thread() is self._link_thread:
            return
        with self._wake:
            self._pending.pop(event.name, None)  # keep batches in version order
            self._pending[event.name] = event
            self._wake.notify()

    def _coalesce(self) -> None:
        last = 0.0
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
            delay = last + COALESCE_WINDOW - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # changes arriving meanwhile replace older ones per name
            with self._wake:
                batch, self._pending = list(self._pending.values()), {}
            last = time.monotonic()
            try:
                self.send(("batch", batch))
            except (OSError, ValueError):
                return

    async def precheck(self, changes: list[tuple[str, object]]) -> None:
        """Ask the training process to run the custom checks of the variables being set."""
        timeout = float(self.config.get("check_timeout", CHECK_TIMEOUT))
        for name, raw in changes:
            if name not in self.replica.checked:
                continue
            value = self.replica.variable(name).spec.accept(name, raw)  # type, bounds first
            future: Future[str | None] = Future()
            with self._checks_lock:
                ident = next(self._ids)
                self._checks[ident] = future
            try:
                await asyncio.to_thread(self.send, ("check", ident, name, value))
                reason = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except (asyncio.TimeoutError, OSError, ValueError):
                raise TrainingUnavailableError(
                    f"{name}: the training process did not answer the check of {value!r} "
                    f"within {timeout:g} s; nothing was changed") from None
            finally:
                with self._checks_lock:
                    self._checks.pop(ident, None)
            if reason:
                raise InvalidValueError(reason)

    # --------------------------------------------------------- training -> child
    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        replica = self.replica
        if kind == "record":
            replica.adopt(message[1])
        elif kind == "define":
            replica.define(message[1])
        elif kind == "remove":
            replica.forget(message[1])
        elif kind == "checked":
            with self._checks_lock:
                future = self._checks.pop(message[1], None)
            if future is not None:
                future.set_result(message[2])
        elif kind == "commit":
            ident, request = message[1], message[2]
            result: Any
            try:
                if request[0] == "set":
                    result = replica.set(request[1], expected=request[2] or None,
                                         source=request[3])
                else:
                    result = [replica.fire(request[1], source=request[2])]
            except Exception as exc:
                result = _error_message(exc)
            self.send(("reply", ident, result))

    def _parent_gone(self) -> bool:
        return os.getppid() != self.parent_pid or not discovery.pid_alive(self.parent_pid)

    def run(self) -> int:
        config, replica = self.config, self.replica
        try:
            for definition in config["definitions"]:
                replica.define(definition)
            replica.continue_versions(config["version"])
            if config["journal"]:
                try:
                    if config["adopt_journal"]:
                        replica.journal = Journal(config["journal"])
                    else:
                        replica.attach_journal(config["journal"],
                                               data={"run": config["run"],
                                                     "pid": self.parent_pid})
                except OSError as exc:
                    raise ServeError(
                        f"cannot write the journal {config['journal']}: "
                        f"{exc.strerror or exc}; pass journal=<writable path> (--runs-root "
                        "for livetune train) or journal=False to run without one") from None
            replica.subscribe(self._forward)
            server = serve_here(
                config["address"], run=config["run"], token=config["token"], registry=replica,
                tls_cert=config["tls_cert"], tls_key=config["tls_key"],
                insecure=config["insecure"], journal=False,
                discoverable=config["discoverable"], max_watchers=config["max_watchers"],
                max_calls_per_second=config["max_calls_per_second"],
                watcher_timeout=config["watcher_timeout"], quiet=True, pid=self.parent_pid,
                precheck=self.precheck)
        except Exception as exc:
            with contextlib.suppress(OSError, ValueError):
                self.send(("error", str(exc) if isinstance(exc, LiveTuneError)
                           else f"{type(exc).__name__}: {exc}"))
            return 1
        return self._serve(server)

    def _serve(self, server: Server) -> int:
        self._coalescer.start()
        grace: float | None = 1.0
        try:
            self.send(("ready", {
                "address": server.address, "line": server.start_line,
                "journal": str(server.journal_path) if server.journal_path else "",
                "record": str(server.record_path) if server.record_path else ""}))
            while True:
                if not self.conn.poll(1.0):
                    if self._parent_gone():
                        break
                    continue
                message = self.conn.recv()
                if message[0] == "stop":
                    grace = message[1]
                    break
                self._handle(message)
        except (EOFError, OSError):
            pass  # the training process is gone
        finally:
            server.stop(grace=grace)
            with self._wake:
                self._closed = True
                self._wake.notify()
            self._coalescer.join(timeout=1)
            if self.replica.journal is not None:
                self.replica.journal.close()
        return 0


def _child_main(argv: list[str]) -> int:
    """Entry point of the serving process: ``python -m livetune_rl.sidecar FD STEP_FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for training, which stops us
    logging.basicConfig(level=logging.WARNING,
                        format="livetune (serving process %(process)d): %(message)s")
    fd, step_fd = int(argv[0]), int(argv[1])
    conn = Connection(fd)
    step_map = mmap.mmap(step_fd, 8)
    os.close(step_fd)
    step_cell = ctypes.c_int64.from_buffer(step_map)
    try:
        kind, config = conn.recv()
    except (EOFError, OSError):
        return 1
    if kind != "config":
        return 1
    if config.get("niceness"):
        with contextlib.suppress(OSError):
            os.nice(int(config["niceness"]))
    return _Child(conn, config, step_cell).run()


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
