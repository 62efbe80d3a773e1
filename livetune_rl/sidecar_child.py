"""Out-of-process serving, the serving process's side: ``python -m livetune_rl.sidecar_child``.

Started by :class:`livetune_rl.sidecar.ProcessServer` with its end of the link (a socket) and
the shared step memory as file descriptors. It mirrors the training process's registry in a
:class:`Replica`, which is the authority for versions and owns the journal, serves it with the
usual in-thread gRPC server (:class:`livetune_rl.server.Server`), forwards committed sets
and fires to the training process coalesced, and asks it to run custom checks. It stops when
told to, when the link closes, or when the training process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import mmap
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from . import discovery, link
from .journal import ChangeEvent, Journal
from .options import TrainingUnavailableError, journal_error
from .registry import Registry
from .server import Server
from .sidecar import COALESCE_WINDOW
from .values import InvalidValueError, UnknownNameError

log = logging.getLogger(__name__)


class Replica(Registry):
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

    def mirror(self, definition: link.Definition) -> None:
        """Mirror a variable or trigger of the training process (replacing one of that name)."""
        self.define_from(definition.state)
        if isinstance(definition, link.VariableDefinition) and definition.checked:
            self.checked.add(definition.state.name)
        else:
            self.checked.discard(definition.state.name)

    def forget(self, name: str) -> None:
        """Remove ``name`` if it is here."""
        with contextlib.suppress(UnknownNameError):
            self.remove(name)
        self.checked.discard(name)


class Child:
    """The serving process: the gRPC server over a replica, and its end of the link."""

    def __init__(self, conn: Connection, start: link.Start,
                 step_cell: ctypes.c_int64) -> None:
        self.conn = conn
        self.start = start
        self.parent_pid = start.pid
        self.replica = Replica(step_cell)
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

    def send(self, message: Any) -> None:
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
                batch, self._pending = tuple(self._pending.values()), {}
            last = time.monotonic()
            try:
                self.send(link.Batch(batch))
            except (OSError, ValueError):
                return

    async def precheck(self, changes: list[tuple[str, object]]) -> None:
        """Ask the training process to run the custom checks of the variables being set."""
        timeout = self.start.check_timeout
        for name, raw in changes:
            if name not in self.replica.checked:
                continue
            value = self.replica.variable(name).spec.accept(name, raw)  # type, bounds first
            future: Future[str | None] = Future()
            with self._checks_lock:
                ident = next(self._ids)
                self._checks[ident] = future
            try:
                await asyncio.to_thread(self.send, link.CheckRequest(ident, name, value))
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
    def handle(self, message: Any) -> None:
        """Act on one message of the training process (on the link thread)."""
        replica = self.replica
        if isinstance(message, link.Record):
            replica.adopt_record(message.event)
        elif isinstance(message, link.Define):
            replica.mirror(message.definition)
        elif isinstance(message, link.Remove):
            replica.forget(message.name)
        elif isinstance(message, link.CheckAnswer):
            with self._checks_lock:
                future = self._checks.pop(message.ident, None)
            if future is not None:
                future.set_result(message.refusal)
        elif isinstance(message, (link.SetRequest, link.FireRequest)):
            try:
                if isinstance(message, link.SetRequest):
                    events = replica.set(message.changes, expected=message.expected or None,
                                         source=message.source)
                else:
                    events = [replica.fire(message.name, source=message.source)]
                reply = link.Reply(message.ident, tuple(events))
            except Exception as exc:
                reply = link.Reply(message.ident, error=link.RemoteError.of(exc))
            self.send(reply)
        else:
            log.error("unexpected message from the training process: %r", message)

    def _parent_gone(self) -> bool:
        return os.getppid() != self.parent_pid or not discovery.pid_alive(self.parent_pid)

    def run(self) -> int:
        start, replica = self.start, self.replica
        options = start.options
        try:
            for definition in start.definitions:
                replica.mirror(definition)
            replica.continue_versions(start.version)
            path = options.journal_path
            if path is not None:
                try:
                    if start.adopt_journal:
                        replica.journal = Journal(path)
                    else:
                        replica.attach_journal(path, data={"run": options.run,
                                                           "pid": self.parent_pid})
                except OSError as exc:
                    raise journal_error(path, exc) from None
            replica.subscribe(self._forward)
            # the training process prints the start line; the journal is attached above
            server = Server(replica, replace(options, quiet=True, journal=False,
                                             gil_switch_interval=None),
                            pid=self.parent_pid, precheck=self.precheck)
        except Exception as exc:
            with contextlib.suppress(OSError, ValueError):
                self.send(link.Failed(link.RemoteError.of(exc)))
            return 1
        return self._serve(server)

    def _serve(self, server: Server) -> int:
        self._coalescer.start()
        grace: float | None = 1.0
        try:
            self.send(link.Ready(server.address, server.start_line, server.journal_path,
                                 server.record_path))
            while True:
                if not self.conn.poll(1.0):
                    if self._parent_gone():
                        break
                    continue
                message = self.conn.recv()
                if isinstance(message, link.Stop):
                    grace = message.grace
                    break
                self.handle(message)
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


def main(argv: list[str]) -> int:
    """Entry point of the serving process: ``python -m livetune_rl.sidecar_child FD STEP_FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for training, which stops us
    logging.basicConfig(level=logging.WARNING,
                        format="livetune (serving process %(process)d): %(message)s")
    fd, step_fd = int(argv[0]), int(argv[1])
    conn = Connection(fd)
    step_map = mmap.mmap(step_fd, 8)
    os.close(step_fd)
    step_cell = ctypes.c_int64.from_buffer(step_map)
    try:
        start = conn.recv()
    except (EOFError, OSError):
        return 1
    if not isinstance(start, link.Start):
        return 1
    if start.niceness:
        with contextlib.suppress(OSError):
            os.nice(start.niceness)
    return Child(conn, start, step_cell).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
