"""An opt-in listener that lets the original LiveTune ``tune`` command change a registry.

It speaks the protocol described in :mod:`livetune_rl.compat.protocol` on loopback only, and
goes through the registry's public API, so every change is validated, journaled with its
source (``livetune-tcp``) and streamed to gRPC watchers like any other; ``livetune ls``
shows it. A value the registry refuses changes nothing: the ``tune`` command gets no answer
(as the original library answers a value it cannot use) and the refusal is logged here.

It never stalls the training loop or grows without bound: it runs in one thread of its own
(an asyncio loop) and applies changes on one more; it keeps at most ``max_connections``
connections open at once (closing the others at once), gives each ``timeout`` seconds to
finish, reads at most 1024 bytes per message, and paces connections to
``max_calls_per_second`` so a client in a tight loop cannot take the training process's CPU.

Example::

    >>> import livetune_rl as lt
    >>> from livetune_rl.compat import OriginalProtocolListener
    >>> reg = lt.Registry(); lr = lt.LiveVariable("lr", 0.01, min=0.0, registry=reg)
    >>> with OriginalProtocolListener(reg, 0, quiet=True) as listener:  # 0: a free port
    ...     listener.port > 0
    True

    Then, from another terminal: ``tune -v 0.001 -t lr -p PORT``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..registry import Registry, default_registry
from ..values import LiveTuneError, UnknownNameError
from . import protocol

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""Where the listener binds: the original ``tune`` command connects to localhost (IPv4)."""

SOURCE = "livetune-tcp"
"""The journal's ``source`` of every change made through the listener."""

T = TypeVar("T")


class ListenerError(LiveTuneError):
    """The listener cannot start (port in use, bad argument) or is used the wrong way."""


class _Refused(Exception):
    """A request the listener does not carry out (the message says why)."""


@dataclass
class ListenerStats:
    """What a listener did so far (updated on its own thread; read them for a summary).

    Attributes:
        changes: sets and fires applied.
        refused: requests that changed nothing (bad value, unknown tag, bad message).
        dropped: connections closed for going over ``max_connections`` or ``timeout``.
    """

    changes: int = 0
    refused: int = 0
    dropped: int = 0


class OriginalProtocolListener:
    """Serve ``registry`` to the original LiveTune ``tune`` command on a loopback port.

    :param registry: the registry to change (default: the process-wide one).
    :param port: the dictionary port, what users pass as ``tune -p PORT``; 0 picks a free
        one (read :attr:`port` after :meth:`start`).
    :param source: the ``source`` journaled with each change.
    :param timeout: seconds a connection may take from its turn to its last byte.
    :param max_connections: connections open at once; more are closed at once.
    :param max_calls_per_second: connections started per second, all clients together (a
        ``tune`` command makes two); None: no pacing.
    :param quiet: do not print the start line to stderr (it is logged either way).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        >>> listener = OriginalProtocolListener(Registry(), 0, quiet=True).start()
        >>> listener.stop()
    """

    def __init__(
        self,
        registry: Registry | None = None,
        port: int = 0,
        *,
        source: str = SOURCE,
        timeout: float = 5.0,
        max_connections: int = 16,
        max_calls_per_second: float | None = 100.0,
        quiet: bool = False,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ListenerError(f"the LiveTune port must be an int from 0 to 65535 (0: a free "
                                f"port), got {port!r}")
        if not timeout > 0:
            raise ListenerError(f"timeout must be positive seconds, got {timeout!r}")
        if max_connections < 1:
            raise ListenerError(f"max_connections must be at least 1, got {max_connections!r}")
        if max_calls_per_second is not None and not max_calls_per_second > 0:
            raise ListenerError("max_calls_per_second must be positive (None: no pacing), "
                                f"got {max_calls_per_second!r}")
        self.registry = registry if registry is not None else default_registry()
        self.requested_port = port
        self.port = 0
        self.source = source
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_calls_per_second = max_calls_per_second
        self.quiet = quiet
        self.stats = ListenerStats()
        self.start_line = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._apply_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._ports: dict[str, int] = {}  # tag -> variable port, opened on first lookup
        self._port_locks: dict[str, asyncio.Lock] = {}
        self._active = 0
        self._next_turn = 0.0
        self._last_warning = -1e9
        self._quiet_warnings = 0

    # ------------------------------------------------------------------ life cycle
    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> OriginalProtocolListener:
        """Bind the dictionary port and start serving; returns self.

        Raises :class:`ListenerError` if the port is taken (pick another, or 0 for a free one).
        """
        if self._thread is not None:
            raise ListenerError(f"this listener already serves on port {self.port}")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._apply_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="livetune-tcp-apply")
        self._thread = threading.Thread(target=loop.run_forever, name="livetune-tcp",
                                        daemon=True)
        self._thread.start()
        try:
            self.port = self._call(self._open_dictionary())
        except OSError as exc:
            self.stop()
            raise ListenerError(
                f"cannot listen for the LiveTune protocol on {LOOPBACK}:{self.requested_port}: "
                f"{exc.strerror or exc}; pick another port (0 picks a free one)") from None
        except BaseException:
            self.stop()
            raise
        self.start_line = (f"livetune: original LiveTune protocol on {LOOPBACK}:{self.port} "
                           f"(tune -v VALUE -t TAG -p {self.port})")
        log.info(self.start_line)
        if not self.quiet:
            print(self.start_line, file=sys.stderr, flush=True)
        return self

    def stop(self) -> None:
        """Close every port and end the listener's threads (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
        if self._apply_pool is not None:
            self._apply_pool.shutdown(wait=False)
        self._loop = self._thread = self._apply_pool = None
        self._servers = []
        self._ports = {}
        self._port_locks = {}

    def __enter__(self) -> OriginalProtocolListener:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def variable_port(self, tag: str) -> int | None:
        """The port answered for ``tag`` so far (None before its first lookup)."""
        return self._ports.get(tag)

    def __repr__(self) -> str:
        state = f"port {self.port}" if self.running else "stopped"
        return f"OriginalProtocolListener({state}, {self.stats})"

    def _call(self, coro: Awaitable[T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    async def _open_dictionary(self) -> int:
        server = await asyncio.start_server(
            functools.partial(self._guarded, self._serve_dictionary), LOOPBACK,
            self.requested_port)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ connections
    async def _guarded(self, handler: Any, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        """Run ``handler`` for one connection within the listener's limits."""
        if self._active >= self.max_connections:
            self.stats.dropped += 1
            self._warn(f"more than {self.max_connections} connections at once; closed one "
                       "(nothing changed)")
            writer.transport.abort()
            return
        self._active += 1
        try:
            await self._wait_turn()
            change = await asyncio.wait_for(handler(reader, writer), self.timeout)
            if change is not None:
                await self._apply(*change)
        except asyncio.TimeoutError:
            self.stats.dropped += 1
            self._warn(f"a client took more than {self.timeout:g}s; closed it (nothing "
                       "changed)")
        except _Refused as exc:
            self.stats.refused += 1
            self._warn(f"{exc}; nothing changed")
        except (ConnectionError, asyncio.IncompleteReadError):
            self.stats.dropped += 1
        except Exception:  # a bug or a failing custom check must not end the listener
            self.stats.refused += 1
            self._warn("a request failed; nothing changed", exc_info=True)
        finally:
            self._active -= 1
            writer.close()

    def _warn(self, text: str, *, exc_info: bool = False) -> None:
        """Log a warning, at most one a second: a flood must not flood the program's log."""
        now = time.monotonic()
        if now - self._last_warning < 1.0:
            self._quiet_warnings += 1
            return
        more = (f" ({self._quiet_warnings} more since the last one shown)"
                if self._quiet_warnings else "")
        log.warning("livetune-tcp: %s%s", text, more, exc_info=exc_info)
        self._last_warning, self._quiet_warnings = now, 0

    async def _wait_turn(self) -> None:
        if self.max_calls_per_second is None:
            return
        now = asyncio.get_running_loop().time()
        turn = max(now, self._next_turn)
        self._next_turn = turn + 1.0 / self.max_calls_per_second
        if turn > now:
            await asyncio.sleep(turn - now)

    async def _serve_dictionary(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        message = await _read_start(reader, protocol.LOOKUP_PREFIX, extra=1)
        if not message:  # connected and closed without a word
            self.stats.dropped += 1
            return
        tag = protocol.parse_lookup(message)
        if tag is None:
            raise _Refused(f"not a tag lookup on the dictionary port: {_show(message)}")
        if tag not in self.registry:
            raise _Refused(f"no variable or trigger named {tag!r} (known: "
                           f"{', '.join(self.registry.names()) or 'none'}); tune -t takes "
                           "one of those names")
        port = await self._port_for(tag)
        writer.write(str(port).encode())
        await writer.drain()

    async def _port_for(self, tag: str) -> int:
        """The variable port of ``tag``, opened on its first lookup (one per registry name)."""
        lock = self._port_locks.setdefault(tag, asyncio.Lock())
        async with lock:
            if tag not in self._ports:
                server = await asyncio.start_server(
                    functools.partial(self._guarded,
                                      functools.partial(self._serve_variable, tag)),
                    LOOPBACK, 0)
                self._servers.append(server)
                self._ports[tag] = int(server.sockets[0].getsockname()[1])
            return self._ports[tag]

    async def _serve_variable(self, tag: str, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> tuple[str, bytes] | None:
        """Answer the type of ``tag``, then read what the client sends: (tag, message)."""
        message = await _read_start(reader, protocol.UPDATE)
        if not message:
            self.stats.dropped += 1
            return None
        if message != protocol.UPDATE:
            raise _Refused(f"{tag}: expected {protocol.UPDATE.decode()!r} first, got "
                           f"{_show(message)}")
        kind = self._kind(tag)
        if kind is None:
            raise _Refused(f"{tag!r} is no longer in the registry")
        writer.write(kind.encode())
        await writer.drain()
        message = await _read_to_end(reader)
        if not message:  # tune refused the value itself (wrong type) and sent nothing
            log.info("livetune-tcp: %s: the client sent no value; nothing to change", tag)
            return None
        return tag, message

    def _kind(self, tag: str) -> str | None:
        """The type name ``tag``'s port answers: ``int``, ..., ``trigger``; None if unknown."""
        try:
            return protocol.TYPE_NAMES[self.registry.variable(tag).type]
        except UnknownNameError:
            return protocol.TRIGGER if tag in self.registry else None

    async def _apply(self, tag: str, message: bytes) -> None:
        """Carry out a set or fire on the apply thread (the registry may block on its lock,
        journal or serving process; the listener's own loop never does)."""
        assert self._apply_pool is not None
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._apply_pool, self._apply_now, tag, message)
        self.stats.changes += 1
        log.info("livetune-tcp: %s", done)

    def _apply_now(self, tag: str, message: bytes) -> str:
        is_trigger = self._kind(tag) == protocol.TRIGGER
        try:
            if is_trigger:
                if message != protocol.FIRE:
                    raise _Refused(f"{tag} is a trigger: fire it with `tune -t {tag} -p "
                                   f"{self.port} -tr`, it takes no value (got {_show(message)})")
                event = self.registry.fire(tag, source=self.source)
                return f"fired {tag} (version {event.v})"
            if message.startswith(b"request_type:"):
                raise _Refused(f"{tag} is a variable: give it a value with `tune -v VALUE -t "
                               f"{tag} -p {self.port}` (got {_show(message)})")
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                raise _Refused(f"{tag}: the value {_show(message)} is not UTF-8 text") from None
            event = self.registry.set({tag: text}, source=self.source)[0]
            if event.unchanged:
                return f"{tag} unchanged: already {event.new!r} (version {event.v})"
            return f"set {tag} = {event.new!r} (version {event.v})"
        except LiveTuneError as exc:
            rule = ""
            with contextlib.suppress(LiveTuneError):
                if not is_trigger:
                    described = self.registry.variable(tag).spec.describe()
                    rule = f" (it takes {described})" if described else ""
            raise _Refused(f"refused {_show(message)} from the tune command: {exc}{rule}") \
                from None
        except OSError as exc:
            raise _Refused(f"{tag}: cannot journal the change ({exc}); fix the journal's "
                           "disk and send it again") from None


async def _read_start(reader: asyncio.StreamReader, expected: bytes, *, extra: int = 0) -> bytes:
    """Read one message that the client sends and then waits for an answer to.

    Messages have no terminator: like the original library this takes what one read brings,
    reading on only while the bytes so far are a beginning of ``expected`` (plus ``extra``
    bytes, e.g. the tag after a lookup's prefix), so a message split by the network still
    arrives whole.
    """
    data = b""
    while len(data) < len(expected) + extra and expected.startswith(data[:len(expected)]):
        chunk = await reader.read(protocol.MAX_MESSAGE + 1 - len(data))
        if not chunk:
            break
        data += chunk
        if len(data) > protocol.MAX_MESSAGE:
            raise _Refused(f"message longer than {protocol.MAX_MESSAGE} bytes")
    return data


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Read the last message of a connection: everything until the client closes."""
    data = await reader.read(protocol.MAX_MESSAGE + 1)
    while data and len(data) <= protocol.MAX_MESSAGE:
        chunk = await reader.read(protocol.MAX_MESSAGE + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > protocol.MAX_MESSAGE:
        raise _Refused(f"message longer than {protocol.MAX_MESSAGE} bytes")
    return data


def _show(message: bytes) -> str:
    text = repr(message.decode("utf-8", "backslashreplace"))
    return text if len(text) <= 60 else text[:57] + "..."
