"""Out-of-process serving, the training process's side: the gRPC server runs in a child.

``serve(out_of_process=True)`` (what ``livetune train`` and ``train-vision`` do unless given
``--no-serve-process``) starts a child Python
process (``python -m livetune_rl.sidecar_child``: a fresh interpreter, never a fork of a process
holding torch threads, and the user's script is not re-imported) that runs the usual asyncio
gRPC server (pacing, token, TLS, health, reflection, watchers, discovery record) over a
*replica* registry. The replica is the authority for versions and owns the journal. The
training process keeps its own :class:`~livetune_rl.registry.Registry`, whose variables the
training loop reads as plain attributes exactly as before: no lock, no RPC.

This module is the training process's side (:class:`ProcessServer`, :class:`ParentLink`);
:mod:`livetune_rl.sidecar_child` is the serving process's. One socket pair links the two,
carrying the dataclasses of :mod:`livetune_rl.link`:

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

import atexit
import contextlib
import ctypes
import itertools
import logging
import mmap
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from . import discovery, link
from .journal import ChangeEvent, Journal, iter_journal_backwards
from .options import ServeError, ServeOptions, Serving
from .registry import Handover, LiveTrigger, LiveVariable, Registry, default_registry
from .values import InvalidValueError, LiveTuneError, Value

log = logging.getLogger(__name__)

COALESCE_WINDOW = 0.02  # seconds: at most ~50 wake-ups of the training process per second
CHECK_TIMEOUT = 5.0  # seconds the child waits for a custom check run by the training process
COMMIT_TIMEOUT = 10.0  # seconds a set made in the training process waits for the child
START_TIMEOUT = 60.0  # seconds serve() waits for the child to be serving
NICENESS = 10  # the serving process yields the CPU to training when cores are scarce
RECOVER_SECONDS = 10.0  # how far back training reads the journal when the child exits
CHILD_MODULE = "livetune_rl.sidecar_child"  # run as ``python -m`` in the serving process


def definition(item: LiveVariable | LiveTrigger) -> link.Definition:
    """What the serving process needs to mirror ``item`` (its check stays here)."""
    if isinstance(item, LiveVariable):
        return link.VariableDefinition(item.state(), checked=item.spec.check is not None)
    return link.TriggerDefinition(item.state())


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


class ParentLink:
    """The training process's end of the link: the registry's :class:`Committer` while it is
    served from the child (:meth:`Registry.serve_remotely`).

    Two daemon threads, both asleep in a blocking call (interpreter lock released) unless
    something happens: a sender (so the training thread never blocks on the socket) and a
    receiver (publishes coalesced batches, answers checks, resolves commits).
    """

    remote = True

    def __init__(self, registry: Registry, conn: Connection,
                 proc: subprocess.Popen[bytes], journal_path: Path | None) -> None:
        self.registry = registry
        self.conn = conn
        self.proc = proc
        self.journal_path = journal_path  # the child's journal, read back if it dies
        self.ready: Future[link.Ready] = Future()
        self.stopping = False
        self.dead = False
        self.record_path: Path | None = None
        self.seen = registry.version  # newest version of the child's events received here
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[link.Reply]] = {}
        self._lock = threading.Lock()
        self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                        name="livetune-link-send")
        self._receiver = threading.Thread(target=self._receive_loop, daemon=True,
                                          name="livetune-link-receive")

    def start(self) -> None:
        self._sender.start()
        self._receiver.start()

    def send(self, message: Any) -> None:
        """Queue ``message`` (a :mod:`livetune_rl.link` dataclass; None ends the sender)."""
        self._out.put(message)

    # --------------------------------------------------------- Committer protocol
    def define(self, item: LiveVariable | LiveTrigger) -> None:
        self.send(link.Define(definition(item)))

    def remove(self, name: str) -> None:
        self.send(link.Remove(name))

    def record(self, event: ChangeEvent) -> None:
        self.send(link.Record(event))

    def commit_set(self, accepted: list[tuple[LiveVariable, Value]],
                   expected: Mapping[str, int], source: str) -> list[ChangeEvent]:
        changes = tuple((var.name, value) for var, value in accepted)
        return self._commit(lambda ident: link.SetRequest(ident, changes, dict(expected),
                                                          source))

    def commit_fire(self, trigger: LiveTrigger, source: str) -> ChangeEvent:
        name = trigger.name
        return self._commit(lambda ident: link.FireRequest(ident, name, source))[0]

    def _commit(self, request: Any) -> list[ChangeEvent]:
        """Have the child commit a set or fire made in this process; publish its events."""
        future: Future[link.Reply] = Future()
        with self._lock:
            if self.dead:
                raise LiveTuneError("the serving process has exited; nothing was changed")
            ident = next(self._ids)
            self._pending[ident] = future
        self.send(request(ident))
        try:
            reply = future.result(COMMIT_TIMEOUT)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(ident, None)
            raise LiveTuneError(f"the serving process did not answer within "
                                f"{COMMIT_TIMEOUT:g} s; the change may not be made") from None
        if reply.error is not None:
            raise reply.error.exception()
        return self.registry.apply_committed(reply.events)

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
                self.handle(self.conn.recv())
        except (EOFError, OSError):
            pass
        except Exception:  # never let the link take the training process down
            log.exception("livetune: the link to the serving process failed")
        finally:
            self._died()

    def handle(self, message: Any) -> None:
        """Act on one message of the serving process (on the receiver thread)."""
        if isinstance(message, link.Batch):
            self.registry.apply_committed(message.events)
            self._saw(message.events)
        elif isinstance(message, link.Reply):
            self._saw(message.events)
            with self._lock:
                future = self._pending.pop(message.ident, None)
            if future is not None:
                future.set_result(message)
        elif isinstance(message, link.CheckRequest):
            self.send(link.CheckAnswer(message.ident, self._check(message.name,
                                                                  message.value)))
        elif isinstance(message, link.Ready):
            self.ready.set_result(message)
        elif isinstance(message, link.Failed):
            self.ready.set_exception(message.error.exception())
        else:
            log.error("livetune: unexpected message from the serving process: %r", message)

    def _saw(self, events: Iterable[ChangeEvent]) -> None:
        self.seen = max([self.seen, *(e.v for e in events)])

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
            self.registry.apply_committed(missed)
            self._saw(missed)
        return len(missed)

    def _check(self, name: str, value: Value) -> str | None:
        """Run ``name``'s full validation (its custom check too) here; the refusal, if any."""
        try:
            var = self.registry.variable(name)
        except LiveTuneError:
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
            future.set_result(link.Reply(0, error=link.RemoteError(
                "LiveTuneError", "the serving process has exited; nothing was changed")))
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

    def detach(self, journal: Journal | None = None) -> None:
        """Make the registry a plain local one again (idempotent), writing ``journal``
        again if given (a start that failed hands the registry its journal back)."""
        self.registry.commit_locally(self, journal=journal)


class _StepMemory:
    """8 bytes of shared memory holding the training step (-1: none), mapped by both."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the server
        self.file.truncate(8)
        self.map = mmap.mmap(self.file.fileno(), 8)
        self.cell = ctypes.c_int64.from_buffer(self.map)


class ProcessServer(Serving):
    """A run served from a child process: ``serve(out_of_process=True)``, or this class.

    The constructor starts the child and returns once it serves (:class:`ServeError` if it
    cannot). A registry that already journals (a resumed ``livetune train``) hands its
    journal to the child, which appends to it and continues the version sequence.

    Attributes:
        address: the address clients use. run: the run name. registry: the training-side
        registry. journal_path: the journal the child writes. pid: the child's process id.

    :param registry: the registry to serve (its values stay plain attributes here).
    :param options: what to serve (:class:`~livetune_rl.options.ServeOptions`).
    :param niceness: added to the child's nice value: when the cores are all busy the
        kernel gives the training process the CPU first, and a storm of requests slows down
        to what the spare CPU serves (0: same priority as training).

    Example::

        >>> server = ProcessServer(Registry(), ServeOptions("127.0.0.1:0", journal=False,
        ...                        discoverable=False, quiet=True))   # doctest: +SKIP
    """

    def __init__(self, registry: Registry, options: ServeOptions, *,
                 niceness: int = NICENESS) -> None:
        super().__init__()
        if registry.remote:
            raise ServeError("this registry is already served from another process")
        self.options = options
        self.registry = registry
        own_journal = registry.journal
        journal_path = own_journal.path if own_journal is not None else options.journal_path

        parent_sock, child_sock = socket.socketpair()
        self._step_memory = _StepMemory()  # kept alive while the child maps it
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                          env.get("PYTHONPATH")]))
        step_fd = self._step_memory.file.fileno()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, str(child_sock.fileno()), str(step_fd)],
                pass_fds=(child_sock.fileno(), step_fd), stdin=subprocess.DEVNULL,
                env=env,  # same session: its niceness counts against training's (autogroups)
            )
        except OSError as exc:
            parent_sock.close()
            raise ServeError(f"cannot start the serving process: {exc}") from None
        finally:
            child_sock.close()
        self._link = ParentLink(registry, Connection(parent_sock.detach()), self._proc,
                                journal_path)

        def announce(handover: Handover) -> None:
            self._link.send(link.Start(
                options=options if own_journal is None else replace(options,
                                                                    journal=journal_path),
                pid=os.getpid(), definitions=tuple(definition(i) for i in handover.items),
                version=handover.version, adopt_journal=own_journal is not None,
                check_timeout=CHECK_TIMEOUT, niceness=niceness))

        registry.serve_remotely(self._link, step_cell=self._step_memory.cell,
                                announce=announce)
        self._link.start()
        try:
            ready = self._link.ready.result(START_TIMEOUT)
        except BaseException as exc:
            self._link.stopping = True
            self._link.detach(journal=own_journal)
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._link.send(None)
            if isinstance(exc, FutureTimeout):
                raise ServeError(f"the serving process did not start within "
                                 f"{START_TIMEOUT:g} s") from None
            raise
        if own_journal is not None:
            own_journal.close()
        self.address = ready.address
        self.journal_path = ready.journal
        self.record_path = self._link.record_path = ready.record
        self.start_line = f"{ready.line[:-1]}, served from pid {self._proc.pid})"
        atexit.register(self.stop)
        log.info(self.start_line)
        if not options.quiet:
            print(self.start_line, file=sys.stderr, flush=True)

    @property
    def pid(self) -> int:
        """The serving process's id."""
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
        self._stop_listener()
        parent = self._link
        parent.stopping = True
        parent.send(link.Stop(grace))
        try:
            self._proc.wait((grace or 0) + 10)
        except subprocess.TimeoutExpired:
            log.warning("livetune: the serving process did not stop; killing it")
            self._proc.kill()
            self._proc.wait()
        parent.detach()
        parent.recover()  # a set acknowledged just before the stop is applied too
        parent.send(None)
        with contextlib.suppress(OSError):
            parent.conn.close()
        if self.record_path is not None:
            discovery.remove_record(self.record_path)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __repr__(self) -> str:
        return f"ProcessServer(run={self.run!r}, address={self.address!r}, pid={self.pid})"


def serve_process(address: str | None = None, *, registry: Registry | None = None,
                  niceness: int = NICENESS, **options: Any) -> ProcessServer:
    """``serve(out_of_process=True)``: serve ``registry`` from a child process (see above).

    :param address: as :func:`livetune_rl.server.serve`.
    :param registry: the registry to serve (default: the process-wide one).
    :param niceness: see :class:`ProcessServer`.
    :param options: the other keywords of :func:`livetune_rl.server.serve`
        (:class:`~livetune_rl.options.ServeOptions`' fields).

    Example::

        >>> server = serve_process("127.0.0.1:0", registry=Registry(), journal=False,
        ...                        discoverable=False, quiet=True)   # doctest: +SKIP
    """
    resolved = ServeOptions(address, **{**options, "out_of_process": True})
    return ProcessServer(registry if registry is not None else default_registry(), resolved,
                         niceness=niceness)
