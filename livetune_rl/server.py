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
import fnmatch
import hmac
import ipaddress
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import convert, discovery
from ._proto.livetune.v1 import livetune_pb2 as pb
from ._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from .journal import ChangeEvent, read_journal_tail
from .registry import Registry, default_registry
from .values import (
    InvalidNameError,
    InvalidValueError,
    LiveTuneError,
    UnknownNameError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from .sidecar import ProcessServer

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:50051"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LiveTune"].full_name
MAX_REQUEST_BYTES = 1 << 20
HISTORY_PAGE = 10_000
# unary calls/s of all clients together: a human, a tuner or a polling dashboard needs far
# less; a storm paced to it costs ~a quarter of a core (clients, server and watcher together)
MAX_CALLS_PER_SECOND = 100.0
CLIENT_METADATA = "x-livetune-client"
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler | None"]]
Precheck = Callable[[list[tuple[str, object]]], Awaitable[None]]
_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ServeError(LiveTuneError):
    """The server could not start (address in use, unsafe bind without a token, bad TLS)."""


class TrainingUnavailableError(LiveTuneError):
    """The training process did not answer in time (out-of-process serving); nothing changed."""


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


def _source(context: grpc.aio.ServicerContext) -> str:
    peer = context.peer() or "unknown"
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_METADATA and isinstance(value, str):
            return f"{value[:64]} {peer}"
    return peer


class LiveTuneServicer(pb_grpc.LiveTuneServicer):
    """The ``livetune.v1.LiveTune`` service over one registry."""

    def __init__(self, registry: Registry, run: pb.RunInfo, *, max_watchers: int = 256,
                 watch_buffer: int = 4096, write_timeout: float = 30.0,
                 precheck: Precheck | None = None) -> None:
        self.registry = registry
        self.precheck = precheck  # extra validation awaited before a set (out-of-process)
        self.run = run
        self.max_watchers = max_watchers
        self.watch_buffer = watch_buffer
        self.write_timeout = write_timeout
        self.max_lags = 3
        self.watchers = 0

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
        state = self.registry.state(list(request.patterns))
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
            events = self.registry.set(changes, expected=expected, source=_source(context))
        except Exception as exc:
            await self._fail(context, exc)
            raise
        return pb.SetVariablesResponse(changes=[convert.event_to_proto(e) for e in events])

    async def FireTrigger(self, request: pb.FireTriggerRequest,
                          context: grpc.aio.ServicerContext) -> pb.FireTriggerResponse:
        try:
            event = self.registry.fire(request.name, source=_source(context))
        except Exception as exc:
            await self._fail(context, exc)
            raise
        return pb.FireTriggerResponse(change=convert.event_to_proto(event))

    async def GetHistory(self, request: pb.GetHistoryRequest,
                         context: grpc.aio.ServicerContext) -> pb.GetHistoryResponse:
        journal = self.registry.journal
        if journal is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this run keeps no journal (started with journal=False)")
        patterns = list(request.patterns)
        limit = min(request.limit or HISTORY_PAGE, HISTORY_PAGE)
        events, truncated = await asyncio.to_thread(  # read from the journal's end
            read_journal_tail, journal.path, since=request.since_version, limit=limit,
            match=(lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns))
            if patterns else None)
        return pb.GetHistoryResponse(
            changes=[convert.event_to_proto(e) for e in events], truncated=truncated)

    async def Watch(self, request: pb.WatchRequest,
                    context: grpc.aio.ServicerContext) -> None:
        if self.watchers >= self.max_watchers:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many watchers (limit {self.max_watchers})")
        self.watchers += 1
        held = True
        lags = 0
        messages = self._watch(list(request.patterns))
        try:
            async for message in messages:
                if message.HasField("lagged"):
                    lags += 1
                    if lags > self.max_lags:
                        await context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"watcher dropped: it fell behind {lags} times; it cannot keep up "
                            "with this run's changes (watch fewer names with patterns)")
                try:
                    await asyncio.wait_for(context.write(message), self.write_timeout)
                except asyncio.TimeoutError:
                    # The stream is blocked by flow control, so sending the status below can
                    # itself wait until the connection goes: unsubscribe and free the slot first.
                    await messages.aclose()
                    self.watchers -= 1
                    held = False
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"watcher dropped: it read nothing for {self.write_timeout:g} s")
        finally:
            if held:
                self.watchers -= 1

    async def _watch(self, patterns: list[str]) -> AsyncGenerator[pb.WatchResponse, None]:
        loop = asyncio.get_running_loop()
        lagged = object()

        def wanted(name: str) -> bool:
            return not patterns or not name or any(fnmatch.fnmatchcase(name, p)
                                                   for p in patterns)

        while True:  # one pass per snapshot; a watcher that lags resyncs from a new one
            queue: asyncio.Queue[Any] = asyncio.Queue()
            lock = threading.Lock()
            buffered = [0, 0]  # events waiting, events dropped

            def push(event: ChangeEvent, queue: asyncio.Queue[Any] = queue,
                     lock: threading.Lock = lock, buffered: list[int] = buffered) -> None:
                with lock:
                    if buffered[1]:
                        buffered[1] += 1
                        return
                    if buffered[0] >= self.watch_buffer:
                        buffered[1] = 1
                        item: Any = lagged
                    else:
                        buffered[0] += 1
                        item = event
                with contextlib.suppress(RuntimeError):  # loop closed: server stopping
                    loop.call_soon_threadsafe(queue.put_nowait, item)

            subscription = self.registry.subscribe(push, snapshot=True)
            try:
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
                    item = await queue.get()
                    if item is lagged:
                        with lock:
                            dropped = buffered[1] + buffered[0]
                        yield pb.WatchResponse(lagged=pb.Lagged(
                            dropped=dropped,
                            message=f"watcher fell {self.watch_buffer} events behind; "
                                    "events were dropped, a fresh snapshot follows",
                        ))
                        break
                    with lock:
                        buffered[0] -= 1
                    if wanted(item.name):
                        yield pb.WatchResponse(change=convert.event_to_proto(item))
            finally:
                subscription.close()


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


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` on every RPC but the health service.

    The token is compared in constant time and never logged.
    """

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if details.method.startswith("/grpc.health.v1.Health/"):
            return handler
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(given, self._expected):
            return handler
        reason = "missing" if not given else "wrong"
        return _deny(handler, f"{reason} token: send metadata 'authorization: Bearer <token>' "
                              "(livetune --token-file or LIVETUNE_TOKEN)")


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """Paces the unary ``LiveTune`` calls of all clients together to ``rate`` per second.

    A token bucket (``burst`` calls may come at once): a call beyond the rate waits its turn
    (``asyncio.sleep``, no thread held), so a client setting values in a tight loop is slowed
    to the rate instead of taking the GIL from the training thread; when more than
    ``max_queue`` calls wait, new ones get ``RESOURCE_EXHAUSTED``. Watch streams and the health
    service are not paced.
    """

    def __init__(self, rate: float, burst: int = 50, max_queue: int = 1000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_queue = max_queue
        self.tokens = float(burst)
        self.stamp: float | None = None
        self.delayed = 0
        self.refused = 0

    def reserve(self, now: float) -> float | None:
        """Seconds to wait before serving a call that arrives at ``now`` (None: refuse)."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < -self.max_queue:
            return None
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method.startswith(f"/{SERVICE_NAME}/") and not method.endswith("/Watch"):
            delay = self.reserve(asyncio.get_running_loop().time())
            if delay is None:
                self.refused += 1
                return _deny(await continuation(details),
                             f"server busy: more than {self.max_queue} calls are waiting "
                             f"(rate limit {self.rate:g}/s); retry later",
                             grpc.StatusCode.RESOURCE_EXHAUSTED)
            if delay > 0:
                self.delayed += 1
                await asyncio.sleep(delay)
        return await continuation(details)


def is_loopback(address: str) -> bool:
    """True for ``unix:`` addresses and hosts on the loopback interface only."""
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _default_journal_path(run: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return discovery.journals_dir() / f"{run}-{stamp}-{os.getpid()}.jsonl"


class Server:
    """A running livetune gRPC server. Create it with :func:`serve`.

    Attributes:
        address: the address clients use (the real port when a free one was picked).
        run: the run name. registry: the served registry. journal_path: its journal.
    """

    def __init__(self, registry: Registry, run: str) -> None:
        self.registry = registry
        self.run = run
        self.address = ""
        self.journal_path: Path | None = None
        self.record_path: Path | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"livetune-server-{run}", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self.servicer: LiveTuneServicer | None = None
        self._previous_switch_interval: float | None = None
        self._stopped = threading.Event()
        self.start_line = ""

    def _call(self, coro: Awaitable[Any], timeout: float | None = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), remove the discovery record."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.record_path is not None:
            discovery.remove_record(self.record_path)
        if self._server is not None and self._loop.is_running():
            async def shutdown() -> None:
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
        return self.servicer.watchers if self.servicer is not None else 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Server(run={self.run!r}, address={self.address!r})"


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
) -> Server | ProcessServer:
    """Serve ``registry`` (default: the process-wide one) on one gRPC address.

    Args:
        address: ``host:port`` or ``unix:/path``. Default ``127.0.0.1:50051``; when that port
            is taken a free port is picked and said. An explicit address in use is an error.
        run: run name shown by ``livetune runs`` (default: the script's name).
        token: require ``authorization: Bearer <token>`` (default ``$LIVETUNE_TOKEN``).
            A non-loopback bind refuses to start without one unless ``insecure=True``.
        tls_cert, tls_key: PEM files to serve TLS.
        journal: journal path; None picks one under the per-user state directory, False keeps
            none. Ignored when the registry already journals (``livetune train`` sets one).
        discoverable: write the discovery record ``livetune runs`` reads.
        max_watchers: concurrent ``Watch`` streams allowed.
        max_calls_per_second: pace unary calls of all clients together to this rate (default
            100/s; a call beyond it waits its turn) so clients in a tight loop cannot starve
            the training run of CPU (None: no pacing).
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

    Returns:
        A started :class:`Server` (a :class:`~livetune_rl.sidecar.ProcessServer` with
        ``out_of_process=True``); ``server.stop()`` or ``with serve(...):`` stops it.
    """
    registry = registry if registry is not None else default_registry()
    if out_of_process:
        from .sidecar import serve_process

        return serve_process(
            address, run=run, token=token, registry=registry, tls_cert=tls_cert,
            tls_key=tls_key, insecure=insecure, journal=journal, discoverable=discoverable,
            max_watchers=max_watchers, max_calls_per_second=max_calls_per_second,
            watcher_timeout=watcher_timeout, quiet=quiet)
    return serve_here(
        address, run=run, token=token, registry=registry, tls_cert=tls_cert, tls_key=tls_key,
        insecure=insecure, journal=journal, discoverable=discoverable,
        max_watchers=max_watchers, max_calls_per_second=max_calls_per_second,
        watcher_timeout=watcher_timeout, gil_switch_interval=gil_switch_interval, quiet=quiet)


def check_serve_args(address: str | None, run: str | None, token: str | None,
                     tls_cert: str | os.PathLike[str] | None,
                     tls_key: str | os.PathLike[str] | None,
                     insecure: bool,
                     max_calls_per_second: float | None = None) -> tuple[str, str | None]:
    """The run name and token :func:`serve` will use; :class:`ServeError` for an unsafe or
    invalid request (checked in the training process before anything starts).

    Example::

        >>> check_serve_args("127.0.0.1:0", "demo", "t0ken", None, None, False)
        ('demo', 't0ken')
    """
    if run is None:
        run = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(sys.argv[0] or "").stem).lstrip("_.-")
        run = run[:64] or "livetune"
    if not _RUN_NAME.fullmatch(run):
        raise ServeError(f"invalid run name {run!r}")
    token = token if token is not None else os.environ.get("LIVETUNE_TOKEN") or None
    if not is_loopback(address or DEFAULT_ADDRESS) and not token and not insecure:
        raise ServeError(
            f"refusing to serve on non-loopback address {address} without a token: anyone who "
            "can reach it could change this run. Pass token=... (or --token), or insecure=True "
            "if the network is trusted."
        )
    if bool(tls_cert) != bool(tls_key):
        raise ServeError("TLS needs both tls_cert and tls_key")
    if max_calls_per_second is not None and not (math.isfinite(max_calls_per_second)
                                                 and max_calls_per_second > 0):
        raise ServeError(f"max_calls_per_second must be a positive number (None: no pacing), "
                         f"got {max_calls_per_second!r}")
    return run, token


def serve_here(
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
    pid: int | None = None,
    precheck: Precheck | None = None,
) -> Server:
    """:func:`serve` in this process (the in-process mode; also what the serving child of
    ``out_of_process=True`` runs). ``pid`` is the process clients are told about and that
    discovery checks for liveness (default: this one); ``precheck`` is awaited before each
    set (the child forwards custom checks to the training process with it).

    Example::

        >>> server = serve_here("127.0.0.1:0", registry=Registry(), journal=False,
        ...                     discoverable=False, quiet=True)   # doctest: +SKIP
    """
    registry = registry if registry is not None else default_registry()
    run, token = check_serve_args(address, run, token, tls_cert, tls_key, insecure,
                                  max_calls_per_second)
    if registry._link is not None:
        raise ServeError("this registry is already served from another process")
    explicit = address is not None
    address = address or DEFAULT_ADDRESS
    pid = os.getpid() if pid is None else pid

    if registry.journal is None and journal is not False:
        path = (_default_journal_path(run) if journal is None or journal is True
                else Path(journal))
        try:
            registry.attach_journal(path, data={"run": run})
        except OSError as exc:
            raise ServeError(f"cannot write the journal {path}: {exc.strerror or exc}; pass "
                             "journal=<writable path> (--runs-root for livetune train) or "
                             "journal=False to run without one") from None
    server = Server(registry, run)
    server.journal_path = registry.journal.path if registry.journal is not None else None

    started = time.time()
    run_info = pb.RunInfo(run=run, pid=pid, started=convert.timestamp(started),
                          journal=str(server.journal_path or ""))
    servicer = LiveTuneServicer(registry, run_info, max_watchers=max_watchers,
                                write_timeout=watcher_timeout, precheck=precheck)
    server.servicer = servicer
    credentials = None
    if tls_cert and tls_key:
        try:
            credentials = grpc.ssl_server_credentials(
                [(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())])
        except OSError as exc:
            raise ServeError(f"cannot read TLS files: {exc}") from None

    notes: list[str] = []

    async def start() -> str:
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if max_calls_per_second:
            interceptors.append(RateLimitInterceptor(max_calls_per_second))
        if token:
            interceptors.append(TokenAuthInterceptor(token))
        grpc_server = grpc.aio.server(
            interceptors=interceptors,
            maximum_concurrent_rpcs=max_watchers + 1024,
            options=[
                ("grpc.so_reuseport", 0),  # never share a port with another run
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_concurrent_streams", max_watchers + 64),
            ],
        )
        pb_grpc.add_LiveTuneServicer_to_server(servicer, grpc_server)
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

        bound = address
        port = 0 if _port_taken(address) else bind(address)
        if port == 0 and not explicit and not address.startswith("unix"):
            bound = address.rsplit(":", 1)[0] + ":0"
            port = bind(bound)
            notes.append(f"port {address.rsplit(':', 1)[1]} is in use, picked a free one; ")
        if port == 0 and not bound.startswith("unix"):
            raise ServeError(f"cannot bind {address}: address in use or not available "
                             "(is another run using it? omit the address to pick a free port)")
        await grpc_server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        server._server = grpc_server
        server._health = health_servicer
        if bound.startswith("unix:"):
            with contextlib.suppress(OSError):
                os.chmod(bound[len("unix:"):], 0o600)
            return bound
        return f"{bound.rsplit(':', 1)[0]}:{port}"

    if gil_switch_interval is not None:
        server._previous_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(gil_switch_interval)
    server._thread.start()
    try:
        server.address = server._call(start())
    except BaseException:
        server.stop(grace=0)
        raise
    run_info.address = server.address
    if discoverable:
        try:
            server.record_path = discovery.write_record(discovery.RunRecord(
                run=run, address=server.address, pid=pid, started=started,
                journal=str(server.journal_path or ""), token_required=bool(token),
                tls=credentials is not None,
                pid_start_ticks=discovery.process_start_ticks(pid),
            ))
        except OSError as exc:
            log.warning("livetune: cannot write the discovery record (%s); `livetune runs` "
                        "will not list this run, use --addr %s", exc, server.address)
    atexit.register(server.stop)
    line = (f"livetune: {''.join(notes)}run {run!r} serving on {server.address} (pid {pid}"
            f"{', token required' if token else ''}{', TLS' if credentials else ''})")
    server.start_line = line
    log.info(line)
    if not quiet:
        print(line, file=sys.stderr, flush=True)
    return server
