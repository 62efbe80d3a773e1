"""Serve a :class:`~livetune_rl.registry.Registry` over gRPC on one address per process.

The servicer is a thin adapter: it turns requests into registry calls and registry errors into
gRPC status codes. It runs on an asyncio gRPC server in one daemon thread, so an idle control
plane costs the training thread nothing and a hundred watchers cost no thread each. With
``serve(out_of_process=True)`` the same server runs in a child process instead
(:mod:`livetune_rl.sidecar`), so requests cost the training process next to no CPU.

Example::

    >>> import livetune_rl as lt
    >>> lr = lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0)   # doctest: +SKIP
    >>> with lt.serve(run="demo") as server:                               # doctest: +SKIP
    ...     print(server.address)
    127.0.0.1:50051
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hmac
import inspect
import logging
import os
import resource
import socket
import stat
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import convert, discovery, undo
from ._proto.livetune.v1 import livetune_pb2 as pb
from ._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from .feed import EventFeed, Lagged
from .journal import ChangeEvent, read_journal_tail
from .options import (
    CLIENT_METADATA,
    DEFAULT_ADDRESS,
    MAX_CALLS_PER_SECOND,
    ServeError,
    ServeOptions,
    Serving,
    TrainingUnavailableError,
    check_serve_args,
    is_loopback,
    journal_error,
)
from .patterns import NameFilter
from .registry import Registry, default_registry
from .sidecar import ProcessServer
from .values import (
    InvalidNameError,
    InvalidValueError,
    LiveTuneError,
    UnknownNameError,
    VersionConflictError,
)

__all__ = [  # the serving API; options and errors are defined in livetune_rl.options
    "CLIENT_METADATA", "DEFAULT_ADDRESS", "MAX_CALLS_PER_SECOND", "AccessInterceptor",
    "LiveTuneServicer", "ProcessServer", "ServeError", "ServeOptions", "Server", "Serving",
    "TokenBucket", "TrainingUnavailableError", "check_serve_args", "is_loopback", "serve",
]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LiveTune"].full_name
MAX_REQUEST_BYTES = 1 << 20
HISTORY_PAGE = 10_000
# connections: idle ones cost a file descriptor each; a cap keeps the server below its limit
EXTRA_CONNECTIONS = 256  # allowed beyond max_watchers (each watcher may hold one)
HANDSHAKE_TIMEOUT_MS = 5_000  # a connection that has not finished its handshake is closed
MAX_CONNECTION_IDLE_MS = 60_000  # a connection without a call for this long is closed (GOAWAY)
STALL_GRACE = 1.0  # s a pending watch write gets once its buffer has overflowed
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler | None"]]
Precheck = Callable[[list[tuple[str, object]]], Awaitable[None]]


def _status_of(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, TrainingUnavailableError):
        return grpc.StatusCode.ABORTED  # answered by the server: the client shows the reason
    if isinstance(exc, (InvalidValueError, InvalidNameError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, UnknownNameError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, VersionConflictError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, LiveTuneError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def _source(context: grpc.aio.ServicerContext, authenticated: bool) -> str:
    """Who made a change, as journaled: the peer address gRPC saw (and ``token`` when the
    call had to carry the run's token), then the name the client *claims* in its
    ``x-livetune-client`` metadata, which nothing checks: ``ipv4:127.0.0.1:40312 (token;
    claims 'alice@box livetune-cli')``."""
    peer = context.peer() or "unknown"
    notes = ["token"] if authenticated else []
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_METADATA and isinstance(value, str):
            claimed = "".join(c if c.isprintable() else "?" for c in value[:64])
            notes.append(f"claims {claimed!r}")
            break
    return f"{peer} ({'; '.join(notes)})" if notes else peer


class LiveTuneServicer(pb_grpc.LiveTuneServicer):
    """The ``livetune.v1.LiveTune`` service over one registry."""

    def __init__(self, registry: Registry, run: pb.RunInfo, *, max_watchers: int = 256,
                 watch_buffer: int = 4096, write_timeout: float = 30.0,
                 precheck: Precheck | None = None, token_required: bool = False) -> None:
        self.registry = registry
        self.token_required = token_required  # every call reaching us carried the token
        self.precheck = precheck  # extra validation awaited before a set (out-of-process)
        self.run = run
        self.max_watchers = max_watchers
        self.watch_buffer = watch_buffer
        self.write_timeout = write_timeout
        self.max_lags = 3
        self.watchers = 0
        # one per open watch stream: its feed, and the event that wakes it
        self._streams: set[tuple[EventFeed[ChangeEvent], asyncio.Event]] = set()
        self.closing = False

    def close(self) -> None:
        """End every watch stream with status OK: the server is stopping on purpose, so a
        watcher can tell a run that ended from a server that crashed. Call on the loop."""
        self.closing = True
        for feed, ready in self._streams:
            feed.close()  # what it holds is still sent, then the stream ends
            ready.set()

    def _run_info(self, version: int, step: int | None) -> pb.RunInfo:
        info = pb.RunInfo()
        info.CopyFrom(self.run)
        info.version = version
        if step is not None:
            info.step = step
        return info

    async def _fail(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        code = _status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            if isinstance(exc, OSError):
                message = f"journal write failed, nothing was changed: {exc}"
            else:
                log.exception("internal error in livetune server")
                message = f"internal error: {type(exc).__name__}: {exc}"
        else:
            message = str(exc)
        await context.abort(code, message)

    async def ListVariables(self, request: pb.ListVariablesRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListVariablesResponse:
        try:
            wanted = NameFilter.checked(request.patterns)
        except Exception as exc:
            await self._fail(context, exc)
            raise
        state = self.registry.state(wanted)
        return pb.ListVariablesResponse(
            run=self._run_info(state.version, state.step),
            variables=[convert.variable_to_proto(v) for v in state.variables],
            triggers=[convert.trigger_to_proto(t) for t in state.triggers],
        )

    async def GetVariable(self, request: pb.GetVariableRequest,
                          context: grpc.aio.ServicerContext) -> pb.Variable:
        try:
            self.registry.variable(request.name)
            state = self.registry.state([request.name])
            return convert.variable_to_proto(state.variables[0])
        except Exception as exc:
            await self._fail(context, exc)
            raise  # unreachable: abort raises

    async def SetVariables(self, request: pb.SetVariablesRequest,
                           context: grpc.aio.ServicerContext) -> pb.SetVariablesResponse:
        try:
            if not request.assignments:
                raise InvalidValueError("no assignments given")
            changes: list[tuple[str, object]] = []
            expected: dict[str, int] = {}
            for a in request.assignments:
                var = self.registry.variable(a.name)
                changes.append((a.name, convert.request_value(a.value, var.type, a.name)))
                if a.HasField("expected_version"):
                    expected[a.name] = a.expected_version
            if self.precheck is not None:
                await self.precheck(changes)
            events = self.registry.set(changes, expected=expected,
                                       source=_source(context, self.token_required))
        except Exception as exc:
            await self._fail(context, exc)
            raise
        return pb.SetVariablesResponse(changes=[convert.event_to_proto(e) for e in events])

    async def FireTrigger(self, request: pb.FireTriggerRequest,
                          context: grpc.aio.ServicerContext) -> pb.FireTriggerResponse:
        try:
            event = self.registry.fire(request.name,
                                       source=_source(context, self.token_required))
        except Exception as exc:
            await self._fail(context, exc)
            raise
        return pb.FireTriggerResponse(change=convert.event_to_proto(event))

    async def Undo(self, request: pb.UndoRequest,
                   context: grpc.aio.ServicerContext) -> pb.UndoResponse:
        try:  # the journal is read off the event loop, as GetHistory does
            plan = await asyncio.to_thread(undo.plan_for, self.registry,
                                           count=request.count or 1,
                                           versions=list(request.versions), force=request.force)
            if self.precheck is not None:
                await self.precheck([(r.name, r.value) for r in plan.reverts])
            events = plan.apply(self.registry, _source(context, self.token_required))
        except Exception as exc:
            await self._fail(context, exc)
            raise
        return pb.UndoResponse(changes=[convert.event_to_proto(e) for e in events],
                               undone=plan.versions)

    async def GetHistory(self, request: pb.GetHistoryRequest,
                         context: grpc.aio.ServicerContext) -> pb.GetHistoryResponse:
        journal = self.registry.journal
        if journal is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this run keeps no journal (started with journal=False)")
        try:
            wanted = NameFilter.checked(request.patterns)
        except Exception as exc:
            await self._fail(context, exc)
            raise
        limit = min(request.limit or HISTORY_PAGE, HISTORY_PAGE)
        events, truncated = await asyncio.to_thread(  # read from the journal's end
            read_journal_tail, journal.path, since=request.since_version, limit=limit,
            match=wanted if wanted.patterns else None)
        return pb.GetHistoryResponse(
            changes=[convert.event_to_proto(e) for e in events], truncated=truncated)

    async def Watch(self, request: pb.WatchRequest,
                    context: grpc.aio.ServicerContext) -> None:
        try:
            wanted = NameFilter.checked(request.patterns)
        except Exception as exc:
            await self._fail(context, exc)
            raise
        if self.watchers >= self.max_watchers:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many watchers (limit {self.max_watchers})")
        self.watchers += 1
        held = True
        lags = 0
        overflow = asyncio.Event()  # set when this watcher's buffer overflows
        messages = self._watch(wanted, overflow)
        try:
            async for message in messages:
                if message.HasField("lagged"):
                    lags += 1
                    if lags > self.max_lags:
                        await context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"watcher dropped: it fell behind {lags} times; it cannot keep up "
                            "with this run's changes (watch fewer names with patterns)")
                reason = await self._write(context, message, overflow)
                if reason:
                    # The stream is blocked by flow control, so sending the status below can
                    # itself wait until the connection goes: unsubscribe and free the slot first.
                    await messages.aclose()
                    self.watchers -= 1
                    held = False
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"watcher dropped: {reason}")
        finally:
            if held:
                self.watchers -= 1

    async def _write(self, context: grpc.aio.ServicerContext, message: pb.WatchResponse,
                     overflow: asyncio.Event) -> str | None:
        """Write one message; why the watcher must be dropped, if it must.

        A client that reads nothing fills its flow-control window, and the write then waits.
        Waiting ``write_timeout`` is the limit, but if the buffer overflows meanwhile the
        client is not reading: it is dropped after a short grace instead of holding its
        slot and memory for the whole timeout (its lag can only be told by a write)."""
        write = asyncio.ensure_future(context.write(message))
        stalled = asyncio.ensure_future(overflow.wait())
        try:
            done, _ = await asyncio.wait((write, stalled), timeout=self.write_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if write not in done and stalled in done:
                done, _ = await asyncio.wait((write,), timeout=STALL_GRACE)
                if write not in done:
                    return (f"it read nothing while {self.watch_buffer} events piled up for "
                            "it")
            if write not in done:
                return f"it read nothing for {self.write_timeout:g} s"
            write.result()  # a failed write raises here, as it did unwrapped
            return None
        finally:
            stalled.cancel()
            if not write.done():
                write.cancel()

    async def _watch(self, match: NameFilter,
                     overflow: asyncio.Event | None = None
                     ) -> AsyncGenerator[pb.WatchResponse, None]:
        loop = asyncio.get_running_loop()
        overflow = overflow if overflow is not None else asyncio.Event()

        def wanted(name: str) -> bool:
            return not name or match(name)

        def later(callback: Callable[[], object]) -> Callable[[], None]:
            def call() -> None:  # on the registry's writer thread
                with contextlib.suppress(RuntimeError):  # loop closed: server stopping
                    loop.call_soon_threadsafe(callback)
            return call

        while True:  # one pass per snapshot; a watcher that lags resyncs from a new one
            ready = asyncio.Event()  # set when an event arrives in the empty feed
            overflow.clear()
            feed: EventFeed[ChangeEvent] = EventFeed(
                self.watch_buffer, on_ready=later(ready.set), on_overflow=later(overflow.set))
            subscription = self.registry.subscribe(feed.push, snapshot=True)
            self._streams.add((feed, ready))
            try:
                if self.closing:
                    return
                state = subscription.snapshot
                assert state is not None
                yield pb.WatchResponse(snapshot=pb.Snapshot(
                    run=self._run_info(state.version, state.step),
                    variables=[convert.variable_to_proto(v) for v in state.variables
                               if wanted(v.name)],
                    triggers=[convert.trigger_to_proto(t) for t in state.triggers
                              if wanted(t.name)],
                ))
                while True:
                    item = feed.take()
                    if item is None:
                        if self.closing:
                            return  # the server is stopping: the stream ends with OK
                        ready.clear()
                        item = feed.take()  # one may have arrived before the clear
                        if item is None:
                            await ready.wait()
                            continue
                    if isinstance(item, Lagged):
                        yield pb.WatchResponse(lagged=pb.Lagged(
                            dropped=item.dropped,
                            message=f"watcher fell {self.watch_buffer} events behind; "
                                    "events were dropped, a fresh snapshot follows",
                        ))
                        break
                    if wanted(item.name):
                        yield pb.WatchResponse(change=convert.event_to_proto(item))
            finally:
                subscription.close()
                self._streams.discard((feed, ready))


def _deny(handler: grpc.RpcMethodHandler | None, message: str,
          code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED
          ) -> grpc.RpcMethodHandler | None:
    """A handler of the same kind as ``handler`` that only answers ``code``."""
    if handler is None:
        return None

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(code, message)
        yield None  # pragma: no cover - abort raises

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream, **kwargs)


class TokenBucket:
    """Pacing arithmetic: ``rate`` calls per second, ``burst`` at once, at most ``max_queue``
    waiting. :meth:`reserve` says how long a call must wait, or None to refuse it.

    Example::

        >>> bucket = TokenBucket(rate=100, burst=2, max_queue=1)
        >>> [bucket.reserve(0.0) for _ in range(5)]
        [0.0, 0.0, 0.01, 0.02, None]
    """

    def __init__(self, rate: float, burst: int = 50, max_queue: int = 1000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_queue = max_queue
        self.tokens = float(burst)
        self.stamp: float | None = None

    def reserve(self, now: float) -> float | None:
        """Seconds to wait before serving a call that arrives at ``now`` (None: refuse)."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < -self.max_queue:
            return None
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class _Malformed:
    """What a request that is not a valid protobuf message deserializes to."""

    def __init__(self, kind: str, error: Exception) -> None:
        self.message = (f"malformed request: the bytes are not a valid {kind} message "
                        f"({type(error).__name__}); send the message the method expects")


def _strict(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` answering ``INVALID_ARGUMENT`` to request bytes that do not parse (gRPC
    itself answers ``UNKNOWN`` with the Python exception's text). Unary requests only."""
    parse = handler.request_deserializer
    if not (handler.unary_unary or handler.unary_stream) or parse is None:
        return handler
    descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    kind = descriptor.full_name if descriptor is not None else "request"

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or whatever a broken message raises
            return _Malformed(kind, exc)

    kwargs = {"request_deserializer": deserialize,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        unary_behaviour = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await unary_behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    behaviour = handler.unary_stream
    if inspect.isasyncgenfunction(behaviour):
        async def generate(request: Any, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[Any]:
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for message in behaviour(request, context):
                yield message

        return grpc.unary_stream_rpc_method_handler(generate, **kwargs)

    async def write(request: Any, context: grpc.aio.ServicerContext) -> None:
        # a streaming handler that writes with context.write
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        await behaviour(request, context)

    return grpc.unary_stream_rpc_method_handler(write, **kwargs)


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Checks the token first, then paces each kind of caller in a budget of its own.

    * **Token** (when ``token`` is set): every RPC but the health service needs
      ``authorization: Bearer <token>``, compared in constant time and never logged.
    * **Pacing** (when ``rate`` is set): unary ``LiveTune`` calls and ``Watch`` opens are
      paced with a :class:`TokenBucket` (``rate``/s, ``burst`` at once): a call beyond the
      rate waits its turn (``asyncio.sleep``, no thread held), so a client in a tight loop
      is slowed to the rate instead of taking CPU from the training run; when more than
      ``max_queue`` calls wait, new ones get ``RESOURCE_EXHAUSTED``. Callers with the token
      (everyone, when no token is required) share one budget; calls with a missing or wrong
      token have their own (with a tenth of the queue) and are then refused, so a flood of
      them neither spends the token holder's budget nor guesses tokens fast. Watch streams
      once open and the health service are not paced.
    * **Malformed requests** get ``INVALID_ARGUMENT`` (see :func:`_strict`).
    """

    def __init__(self, token: str | None, rate: float | None, burst: int = 50,
                 max_queue: int = 1000) -> None:
        self._expected = f"Bearer {token}".encode() if token else None
        self.client = TokenBucket(rate, burst, max_queue) if rate else None
        self.unauthenticated = (TokenBucket(rate, burst, max(1, max_queue // 10))
                                if rate else None)
        self.delayed = 0
        self.refused = 0

    def _token_given(self, details: grpc.HandlerCallDetails) -> bytes:
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
        return given

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if method.startswith("/grpc.health.v1.Health/"):
            return _strict(handler)
        given = self._token_given(details) if self._expected is not None else b""
        allowed = self._expected is None or hmac.compare_digest(given, self._expected)
        bucket = self.client if allowed else self.unauthenticated
        if bucket is not None and method.startswith(f"/{SERVICE_NAME}/"):
            delay = bucket.reserve(asyncio.get_running_loop().time())
            if delay is None:
                self.refused += 1
                if not allowed:
                    return _deny(handler, "missing or wrong token, and too many such calls "
                                          "at once; send metadata 'authorization: Bearer "
                                          "<token>'")
                return _deny(handler,
                             f"server busy: more than {bucket.max_queue} calls are waiting "
                             f"(rate limit {bucket.rate:g}/s); retry later",
                             grpc.StatusCode.RESOURCE_EXHAUSTED)
            if delay > 0:
                self.delayed += 1
                await asyncio.sleep(delay)
        if not allowed:
            reason = "missing" if not given else "wrong"
            return _deny(handler, f"{reason} token: send metadata 'authorization: Bearer "
                                  "<token>' (livetune --token-file or LIVETUNE_TOKEN)")
        return _strict(handler)


def _port_taken(address: str) -> bool:
    """Cheap probe so a port in use is refused (or, for the default port, replaced) without
    gRPC logging a bind error first. ``SO_REUSEADDR`` as gRPC sets it: a port left in
    ``TIME_WAIT`` by a run that just ended counts as free, one with a listener as taken."""
    if address.startswith("unix"):
        return False
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        return False  # not host:port; gRPC's bind says what is wrong with it
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError:
            return True
    return False


def _unix_target(address: str) -> str:
    """The address a unix bind really gets: ``unix:`` and an absolute path (a relative one
    is relative to this process's working directory), or ``unix-abstract:NAME``."""
    if address.startswith("unix-abstract:"):
        return address
    path = address[len("unix://"):] if address.startswith("unix://") else address[len("unix:"):]
    return f"unix:{os.path.abspath(path)}"


def _check_unix_free(target: str) -> None:
    """:class:`ServeError` if a unix socket path is served by a live process, or is not a
    socket. gRPC removes a socket file before binding its path, which would silently take
    the address from a run serving on it; a socket nobody accepts on (left by a run that
    was killed) is replaced."""
    if not target.startswith("unix:"):
        return  # an abstract name in use makes the bind itself fail
    path = target[len("unix:"):]
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ServeError(f"cannot bind {target}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(mode):
        raise ServeError(f"cannot bind {target}: the path exists and is not a socket; pick "
                         "another path (nothing was removed)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return  # stale: nobody serves it
        except OSError as exc:
            raise ServeError(f"cannot bind {target}: {exc.strerror or exc}") from None
    raise ServeError(f"cannot bind {target}: another process is serving on it (is another "
                     "run using it? `livetune runs` lists runs); pick another path")


def _raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files to ``wanted`` where the hard limit
    allows, so that the connection cap, not the file-descriptor limit, refuses connections."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Server(Serving):
    """A livetune gRPC server in a daemon thread of this process: ``serve(...)``, or this class.

    The constructor starts it and returns once it serves (:class:`ServeError` if it cannot):
    it attaches the journal (unless the registry already journals or ``options.journal`` is
    False), binds, and writes the discovery record. It is also what the serving child of
    ``serve(out_of_process=True)`` runs, over its replica registry.

    Attributes:
        address: the address clients use (the real port when a free one was picked).
        run: the run name. registry: the served registry. journal_path: its journal.

    :param registry: the registry to serve.
    :param options: what to serve (:class:`~livetune_rl.options.ServeOptions`).
    :param pid: the process clients are told about and that discovery checks for liveness
        (default: this one; the serving child names the training process).
    :param precheck: awaited before each set (the serving child forwards custom checks to
        the training process with it).

    Example::

        >>> server = Server(Registry(), ServeOptions("127.0.0.1:0", journal=False,
        ...                 discoverable=False, quiet=True))   # doctest: +SKIP
    """

    def __init__(self, registry: Registry, options: ServeOptions, *, pid: int | None = None,
                 precheck: Precheck | None = None) -> None:
        super().__init__()
        if registry.remote:
            raise ServeError("this registry is already served from another process")
        self.options = options
        self.registry = registry
        self.address = ""
        self.record_path: Path | None = None
        self.start_line = ""
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._previous_switch_interval: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"livetune-server-{options.run}", daemon=True)
        pid = os.getpid() if pid is None else pid
        path = options.journal_path
        if registry.journal is None and path is not None:
            try:
                registry.attach_journal(path, data={"run": options.run})
            except OSError as exc:
                raise journal_error(path, exc) from None
        self.journal_path = registry.journal.path if registry.journal is not None else None
        credentials = None
        if options.tls_cert and options.tls_key:
            try:
                credentials = grpc.ssl_server_credentials(
                    [(options.tls_key.read_bytes(), options.tls_cert.read_bytes())])
            except OSError as exc:
                raise ServeError(f"cannot read TLS files: {exc}") from None
        started = time.time()
        run_info = pb.RunInfo(run=options.run, pid=pid, started=convert.timestamp(started),
                              journal=str(self.journal_path or ""))
        self.servicer = LiveTuneServicer(registry, run_info, max_watchers=options.max_watchers,
                                         write_timeout=options.watcher_timeout,
                                         precheck=precheck, token_required=bool(options.token))
        if options.gil_switch_interval is not None:
            self._previous_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(options.gil_switch_interval)
        self._thread.start()
        notes: list[str] = []
        try:
            self.address = self._call(self._start(credentials, notes))
        except BaseException:
            self.stop(grace=0)
            raise
        run_info.address = self.address
        if options.discoverable:
            try:
                self.record_path = discovery.write_record(discovery.RunRecord(
                    run=options.run, address=self.address, pid=pid, started=started,
                    # absolute: clients read it from their own directories (livetune runs'
                    # lineage, the panel)
                    journal=os.path.abspath(self.journal_path) if self.journal_path else "",
                    token_required=bool(options.token),
                    tls=credentials is not None,
                    pid_start_ticks=discovery.process_start_ticks(pid),
                ))
            except OSError as exc:
                log.warning("livetune: cannot write the discovery record (%s); `livetune runs` "
                            "will not list this run, use --addr %s", exc, self.address)
        atexit.register(self.stop)
        self.start_line = (
            f"livetune: {''.join(notes)}run {options.run!r} serving on {self.address} (pid "
            f"{pid}{', token required' if options.token else ''}"
            f"{', TLS' if credentials else ''})")
        log.info(self.start_line)
        if not options.quiet:
            print(self.start_line, file=sys.stderr, flush=True)

    async def _start(self, credentials: grpc.ServerCredentials | None,
                     notes: list[str]) -> str:
        """Build, bind and start the gRPC server on the loop; the address it serves on."""
        options = self.options
        address = options.bind_address
        max_watchers = options.max_watchers
        max_connections = max_watchers + EXTRA_CONNECTIONS
        _raise_fd_limit(max_connections + 256)
        grpc_server = grpc.aio.server(
            interceptors=[AccessInterceptor(options.token, options.max_calls_per_second)],
            maximum_concurrent_rpcs=max_watchers + 1024,
            options=[
                ("grpc.so_reuseport", 0),  # never share a port with another run
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_concurrent_streams", max_watchers + 64),
                # each connection holds a file descriptor: cap them, close idle ones
                ("grpc.max_allowed_incoming_connections", max_connections),
                ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
                ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
            ],
        )
        pb_grpc.add_LiveTuneServicer_to_server(self.servicer, grpc_server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            grpc_server,
        )

        def bind(target: str) -> int:
            try:
                if credentials is not None:
                    return grpc_server.add_secure_port(target, credentials)
                return grpc_server.add_insecure_port(target)
            except RuntimeError:
                return 0

        port = 0
        if address.startswith(("unix:", "unix-abstract:")):
            bound = _unix_target(address)
            _check_unix_free(bound)
            if bind(address) == 0:
                raise ServeError(
                    f"cannot bind {address}: "
                    + ("the name is in use (another process holds it)"
                       if bound.startswith("unix-abstract:") else
                       "its directory does not exist or is not writable")
                    + "; pick another address")
        else:
            bound = address
            port = 0 if _port_taken(address) else bind(address)
            if port == 0 and options.address is None:
                bound = address.rsplit(":", 1)[0] + ":0"
                port = bind(bound)
                notes.append(f"port {address.rsplit(':', 1)[1]} is in use, picked a free one; ")
            if port == 0:
                raise ServeError(f"cannot bind {address}: address in use or not available "
                                 "(is another run using it? omit the address to pick a free "
                                 "port)")
        await grpc_server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self._server = grpc_server
        self._health = health_servicer
        if bound.startswith("unix:"):
            with contextlib.suppress(OSError):
                os.chmod(bound[len("unix:"):], 0o600)
        if port == 0:  # a unix socket: the path (absolute) or abstract name bound
            return bound
        return f"{bound.rsplit(':', 1)[0]}:{port}"

    def _call(self, coro: Awaitable[Any], timeout: float | None = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), remove the discovery record."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stop_listener()
        if self.record_path is not None:
            discovery.remove_record(self.record_path)
        if self._server is not None and self._loop.is_running():
            async def shutdown() -> None:
                self.servicer.close()  # watch streams end with OK: the run ended
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 1.0
                while self.servicer.watchers and loop.time() < deadline:
                    await asyncio.sleep(0.01)  # let their OK status go out first
                if self._health is not None:
                    await self._health.enter_graceful_shutdown()
                assert self._server is not None
                await self._server.stop(grace)
                # end what is left (watch streams) so no task is destroyed while pending
                left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in left:
                    task.cancel()
                if left:
                    await asyncio.wait(left, timeout=2)

            with contextlib.suppress(Exception):
                self._call(shutdown(), timeout=(grace or 0) + 5)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._previous_switch_interval is not None:
            sys.setswitchinterval(self._previous_switch_interval)

    @property
    def watchers(self) -> int:
        """Watch streams open now."""
        return self.servicer.watchers


def serve(
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
    gil_switch_interval: float | None = None,
    quiet: bool = False,
    out_of_process: bool = False,
    livetune_port: int | None = None,
) -> Server | ProcessServer:
    """Serve ``registry`` (default: the process-wide one) on one gRPC address.

    The keywords are checked once, into a :class:`~livetune_rl.options.ServeOptions`, before
    anything starts; then a :class:`Server` (in a thread of this process) or a
    :class:`~livetune_rl.sidecar.ProcessServer` (``out_of_process=True``) is built from it.

    Args:
        address: ``host:port`` or ``unix:/path``. Default ``127.0.0.1:50051``; when that port
            is taken a free port is picked and said. An explicit address in use is an error,
            as is a unix socket another process serves on or one in a missing directory;
            ``unix-abstract:NAME`` counts as non-loopback (anyone local can reach it).
        run: run name shown by ``livetune runs`` (default: the script's name).
        token: require ``authorization: Bearer <token>`` (default ``$LIVETUNE_TOKEN``).
            A non-loopback bind refuses to start without one unless ``insecure=True``.
        tls_cert, tls_key: PEM files to serve TLS.
        journal: journal path; None picks one under the per-user state directory, False keeps
            none. Ignored when the registry already journals (``livetune train`` sets one).
        discoverable: write the discovery record ``livetune runs`` reads.
        max_watchers: concurrent ``Watch`` streams allowed.
        max_calls_per_second: pace unary calls and watch opens of all clients together to
            this rate (default 100/s; a call beyond it waits its turn) so clients in a tight
            loop cannot starve the training run of CPU (None: no pacing). Calls with a
            missing or wrong token are paced in a budget of their own, after the token
            check, so they never spend the token holder's.
        watcher_timeout: a watcher that reads nothing for this many seconds while changes
            wait for it is dropped (``RESOURCE_EXHAUSTED``), so it holds no memory or slot.
        gil_switch_interval: set ``sys.setswitchinterval`` while serving (restored at stop).
            A training loop that never releases the GIL (pure Python, no numpy/torch calls)
            makes the server wait up to Python's 5 ms interval per request; 0.0005 brings a
            set's delay to such a loop under 1 ms. Loops that call numpy/torch do not need it.
        quiet: do not print the start line (it is logged either way).
        out_of_process: run the gRPC server, journal and watchers in a child process (see
            :mod:`livetune_rl.sidecar`): requests then take neither CPU nor the interpreter
            lock from the training process; committed changes reach it coalesced, at most
            ~50 wake-ups per second whatever the request rate. ``gil_switch_interval`` is
            ignored (nothing serves in this process).
        livetune_port: also accept the original LiveTune ``tune`` command on
            ``127.0.0.1:PORT`` (0: a free port; see :mod:`livetune_rl.compat`); None: off.
            Its changes are validated and journaled with source ``livetune-tcp``; the port
            closes when the server stops (``server.livetune_listener.port`` is the port).

    Returns:
        A started :class:`Server` (a :class:`~livetune_rl.sidecar.ProcessServer` with
        ``out_of_process=True``), both a :class:`~livetune_rl.options.Serving`;
        ``server.stop()`` or ``with serve(...):`` stops it.
    """
    options = ServeOptions(
        address, run=run, token=token, tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None, insecure=insecure, journal=journal,
        discoverable=discoverable, max_watchers=max_watchers,
        max_calls_per_second=max_calls_per_second, watcher_timeout=watcher_timeout,
        gil_switch_interval=gil_switch_interval, quiet=quiet, out_of_process=out_of_process,
        livetune_port=livetune_port)
    registry = registry if registry is not None else default_registry()
    server = ProcessServer(registry, options) if options.out_of_process else Server(registry,
                                                                                   options)
    if not options.quiet and server.journal_path is not None:
        print(f"livetune: journal {server.journal_path}", file=sys.stderr, flush=True)
    if options.livetune_port is not None:  # opened after the journal: its changes are journaled
        from .compat.listener import OriginalProtocolListener

        try:
            server.livetune_listener = OriginalProtocolListener(
                registry, options.livetune_port, quiet=options.quiet).start()
        except BaseException:
            server.stop(grace=0)
            raise
    return server
