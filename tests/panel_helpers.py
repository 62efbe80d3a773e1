"""Helpers of the panel tests: a panel served from a thread of the test, and HTTP calls to it
the way the page makes them (JSON bodies, the panel's own Origin)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from livetune_rl.panel.config import PanelConfig
from livetune_rl.panel.server import serve_panel


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class PanelThread:
    """``livetune panel`` served from a thread of this process (stopped by :meth:`stop`)."""

    def __init__(self, config: PanelConfig) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(config.check(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise AssertionError(f"the panel did not start: {self._error!r}")

    def _run(self, config: PanelConfig) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def started(url: str) -> None:
                self.url = url.rstrip("/")
                self._ready.set()

            await serve_panel(config, started=started, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __init__
            self._error = exc
            self._ready.set()

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                follow: bool = True) -> Reply:
        """One HTTP request; JSON bodies with the page's headers unless ``headers`` says
        otherwise."""
        sent = {"Origin": self.url, "Content-Type": "application/json"}
        sent.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={k: v for k, v in sent.items() if v is not None})
        handlers: list[Any] = [urllib.request.ProxyHandler({})]  # loopback: never a proxy
        if not follow:
            handlers.append(_NoRedirect())
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(req, timeout=10) as reply:
                return Reply(reply.status, _decode(reply.read()), reply.headers)
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, _decode(exc.read()), exc.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
