"""The panel's HTTP server (aiohttp): the page, its static files, a JSON API and one
server-sent-events stream.

======================  ==================================================================
``GET /``               the page (``static/index.html``; ``/login`` first when a token is
                        required)
``GET /api/runs``       the runs listed (:class:`~livetune_rl.panel.hub.RunSummary` records)
``GET /api/stream``     server-sent events: one JSON :class:`~livetune_rl.panel.hub.Message`
                        per ``data:`` line (runs, state, events, progress, status)
``GET /api/runs/{id}/journal``  the journal records the panel holds of a run (an ended run:
                        read from its journal file)
``POST /api/set``       ``{"runs": [id...], "values": {name: text}, "expected": {name: v}}``
``POST /api/fire``      ``{"runs": [id...], "name": trigger}``
``POST /api/undo``      ``{"run": id}``: the run's undo of its newest set request
======================  ==================================================================

The POST endpoints answer ``{"results": [{"run", "ok", "changes" | "status", "error"}]}``,
one result per run; the HTTP status is 200 when every run accepted, else that of the first
refusal, mapped from its gRPC status (:func:`~livetune_rl.panel.requests.http_status`).
Every request passes the checks of :mod:`livetune_rl.panel.security` first.

Example::

    >>> from livetune_rl.panel.config import PanelConfig
    >>> app = make_app(PanelConfig(port=0))
    >>> sorted(r.resource.canonical for r in app.router.routes()
    ...        if r.method == "POST")
    ['/api/fire', '/api/set', '/api/undo', '/login']
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from ..client import ClientError
from ..journal import ChangeEvent
from .config import PanelConfig, PanelConfigError
from .hub import REFRESH, Hub, Message, RunLink
from .requests import (
    MAX_BODY_BYTES,
    RequestError,
    http_status,
    read_fire,
    read_set,
    read_undo,
)
from .security import COOKIE, FAILED_LOGIN_DELAY, SESSION_SECONDS, Guard
from .undo import newest_request
from .views import event_json

STATIC = Path(__file__).parent / "static"
KEEPALIVE = 15.0  # seconds between comments on an idle event stream (proxies close idle ones)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer makes a form post say Origin: null
    "Cache-Control": "no-store",
}
CONFIG = web.AppKey("config", PanelConfig)
GUARD = web.AppKey("guard", Guard)
HUB = web.AppKey("hub", Hub)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return web.Response(text=text, status=status, content_type="application/json")


def _error(message: str, status: str, *, login: bool = False) -> web.Response:
    body: dict[str, Any] = {"error": message, "status": status}
    if login:
        body["login"] = True
    return _json(body, http_status(status))


# ----------------------------------------------------------------- the checks
_OPEN = ("/login", "/static/")  # reachable before the login (the form and its style)


@web.middleware
async def guard_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD]
    if not guard.host_allowed(request.headers.get("Host")):
        return _error(f"this panel answers to 127.0.0.1:{guard.port} or localhost:"
                      f"{guard.port}, not to the host {request.headers.get('Host')!r}: open "
                      "the address `livetune panel` printed", "PERMISSION_DENIED")
    if request.method not in ("GET", "HEAD"):
        if not guard.origin_allowed(request.headers.get("Origin"), request.host):
            return _error("a request that changes something must come from the panel's own "
                          f"page (Origin http://{request.host}), not from "
                          f"{request.headers.get('Origin')!r}", "PERMISSION_DENIED")
        if request.path.startswith("/api/") and request.content_type != "application/json":
            return _error(f"send the body as application/json, not {request.content_type!r}",
                          "INVALID_ARGUMENT")
    if not request.path.startswith(_OPEN) and not guard.session_valid(
            request.cookies.get(COOKIE)):
        if request.path.startswith("/api/"):
            return _error("log in first: open the panel's page and give the token (from "
                          "--token-file or $LIVETUNE_TOKEN of `livetune panel`)",
                          "UNAUTHENTICATED", login=True)
        raise web.HTTPSeeOther("/login")
    response = await handler(request)
    if not response.prepared:  # the event stream sent its headers (these among them) already
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    guard = request.app[GUARD]
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not guard.token_matches(token.strip()):
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        raise web.HTTPSeeOther("/login#wrong")
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, guard.new_session(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="Strict", path="/")
    raise response


# ----------------------------------------------------------------- the page and the stream
async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def runs(request: web.Request) -> web.StreamResponse:
    return _json([asdict(s) for s in request.app[HUB].summaries()])


def _sse(message: Message) -> bytes:
    data = json.dumps(message.json(), separators=(",", ":"), allow_nan=False, default=str)
    return f"data: {data}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", **HEADERS})
    await response.prepare(request)
    queue, first = hub.subscribe()
    try:
        await response.write(b"".join(_sse(m) for m in first))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if message is None:
                break  # dropped (too slow) or the panel is stopping: the page reconnects
            batch = [message]
            while not queue.empty() and len(batch) < 256:
                item = queue.get_nowait()
                if item is None:
                    break
                batch.append(item)
            await response.write(b"".join(_sse(m) for m in batch))
    except ConnectionResetError:
        pass  # the page went away
    finally:
        hub.unsubscribe(queue)
    return response


async def journal(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    run = request.match_info["run"]
    link, ended = hub.link(run), hub.ended_run(run)
    events: list[ChangeEvent]
    if link is not None:
        events = link.events()
    elif ended is not None:
        events = await asyncio.get_running_loop().run_in_executor(None, ended.events)
    else:
        return _error(f"no run with id {run!r} in this panel (GET /api/runs lists them)",
                      "NOT_FOUND")
    return _json({"run": run, "events": [event_json(e) for e in events]})


# ----------------------------------------------------------------- changes
async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestError(f"the body is {request.content_length} bytes, at most "
                           f"{MAX_BODY_BYTES}", "RESOURCE_EXHAUSTED")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"the body is over {MAX_BODY_BYTES} bytes", "RESOURCE_EXHAUSTED")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError("the body is not JSON") from None


def _live_link(hub: Hub, run: str) -> RunLink:
    link, ended = hub.link(run), hub.ended_run(run)
    if link is None:
        if ended is not None:
            raise RequestError(f"the run {ended.summary.name!r} has ended: its journal is "
                               "read-only", "FAILED_PRECONDITION")
        raise RequestError(f"no live run with id {run!r} in this panel (GET /api/runs lists "
                           "them)", "NOT_FOUND")
    if not link.live:
        raise RequestError(f"the run {link.record.run!r} has ended: its journal is read-only",
                           "FAILED_PRECONDITION")
    return link


async def _per_run(hub: Hub, runs: tuple[str, ...],
                   call: Callable[[RunLink], list[ChangeEvent]]) -> web.Response:
    """Call each run (concurrently, each in a thread: the client blocks); one result each."""
    loop = asyncio.get_running_loop()

    async def one(run: str) -> dict[str, Any]:
        try:
            link = _live_link(hub, run)
            changes = await loop.run_in_executor(None, call, link)
        except RequestError as exc:
            return {"run": run, "ok": False, "status": exc.status, "error": str(exc)}
        except ClientError as exc:
            return {"run": run, "ok": False, "status": exc.code.name, "error": str(exc)}
        return {"run": run, "ok": True, "changes": [event_json(e) for e in changes]}

    results = await asyncio.gather(*(one(run) for run in runs))
    failed = next((r for r in results if not r["ok"]), None)
    return _json({"results": results}, http_status(failed["status"]) if failed else 200)


async def set_values(request: web.Request) -> web.StreamResponse:
    try:
        req = read_set(await _body(request))
    except RequestError as exc:
        return _error(str(exc), exc.status)
    return await _per_run(request.app[HUB], req.runs, lambda link: link.client.set_text(
        req.values, expected=req.expected or None))


async def fire(request: web.Request) -> web.StreamResponse:
    try:
        req = read_fire(await _body(request))
    except RequestError as exc:
        return _error(str(exc), exc.status)
    return await _per_run(request.app[HUB], req.runs, lambda link: [
        link.client.fire(req.name)])


def _undo(link: RunLink) -> list[ChangeEvent]:
    versions = newest_request(link.client.history(limit=1000))
    if not versions:
        raise RequestError(f"nothing to undo: the run {link.record.run!r} has no set in its "
                           "last 1000 journal records that is not an undo or undone",
                           "FAILED_PRECONDITION")
    return list(link.client.undo(versions=versions).changes)


async def undo(request: web.Request) -> web.StreamResponse:
    try:
        req = read_undo(await _body(request))
    except RequestError as exc:
        return _error(str(exc), exc.status)
    return await _per_run(request.app[HUB], (req.run,), _undo)


# ----------------------------------------------------------------- the app
def make_app(config: PanelConfig, hub: Hub | None = None,
             port: int | None = None) -> web.Application:
    """The aiohttp application of a panel (``hub``: the runs it shows; ``port``: the one it
    listens on, for the ``Host`` check, default ``config.port``)."""
    app = web.Application(middlewares=[guard_requests], client_max_size=MAX_BODY_BYTES)
    app[CONFIG] = config
    app[GUARD] = Guard(config.token, config.port if port is None else port, config.loopback,
                       config.bind)
    if hub is not None:
        app[HUB] = hub
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/runs/{run}/journal", journal)
    app.router.add_post("/api/set", set_values)
    app.router.add_post("/api/fire", fire)
    app.router.add_post("/api/undo", undo)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    return app


async def serve_panel(config: PanelConfig, *, started: Callable[[str], None] | None = None,
                      stop: asyncio.Event | None = None) -> None:
    """Serve the panel until ``stop`` is set (default: SIGINT or SIGTERM).

    :param config: a checked :class:`PanelConfig`.
    :param started: called with the page's URL once the panel listens.
    :param stop: set it to stop the panel.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    sock = _listen(config)
    port = sock.getsockname()[1]
    hub = Hub(config, loop)
    runner = web.AppRunner(make_app(config, hub, port), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        host = f"[{config.bind}]" if ":" in config.bind else config.bind
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        url = f"http://{host}:{port}/"
        for sig in (signal.SIGINT, signal.SIGTERM):
            # asyncio has no signal handlers off the main thread (RuntimeError: the tests run
            # the panel in a thread) nor on Windows (NotImplementedError); Ctrl-C then stops it
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        refresher = asyncio.create_task(_refresh(hub))
        if started is not None:
            started(url)
        await stop.wait()
        refresher.cancel()
    finally:
        hub.stop()
        hub.close_pages()
        await runner.cleanup()


def _listen(config: PanelConfig) -> socket.socket:
    """The panel's listening socket (bound first, so the port is known: ``--port 0``)."""
    family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.bind, config.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PanelConfigError(f"port {config.port} on {config.bind} is in use: pick "
                                   "another --port (0: any free port)") from None
        raise PanelConfigError(f"cannot listen on {config.bind}:{config.port}: "
                               f"{exc.strerror or exc}") from None
    return sock


async def _refresh(hub: Hub) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, hub.refresh)
        await asyncio.sleep(REFRESH)


def run_panel(config: PanelConfig) -> int:
    """``livetune panel``: serve until Ctrl-C; prints the URL (exit status 0)."""

    def say(url: str) -> None:
        which = ", ".join(config.runs) if config.runs else "every live run of yours"
        login = "; the page asks for the token once" if config.token else ""
        print(f"livetune panel: {url}  ({which}, and ended runs under {config.runs_root}/"
              f"{login}; Ctrl-C to stop)", flush=True)

    asyncio.run(serve_panel(config, started=say))
    return 0
