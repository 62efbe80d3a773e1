"""Who may use the panel: the checks every HTTP request passes before it reaches a run.

* **Host** (loopback binds): the ``Host`` header must name the panel's own address
  (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``). A web page elsewhere that points
  a name of its own at 127.0.0.1 (DNS rebinding) is refused.
* **Origin** (every request that changes something): the ``Origin`` header must be this
  panel's own, and the body JSON (a cross-site form cannot send either without a preflight,
  which the panel never answers). A page on another site cannot make the browser set or fire.
* **Token** (whenever the panel holds one, and always off loopback): the browser gives it
  once in a form; the panel answers with a random session cookie (``HttpOnly``,
  ``SameSite=Strict``). A token in the page's URL is never read: URLs end up in histories,
  logs and ``Referer`` headers.

Example::

    >>> guard = Guard(token=None, port=8765, loopback=True)
    >>> guard.host_allowed("127.0.0.1:8765"), guard.host_allowed("evil.example:8765")
    (True, False)
    >>> guard.origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
    True
    >>> guard.login_required, Guard(token="s3cret", port=1, loopback=True).login_required
    (False, True)
"""

from __future__ import annotations

import hmac
import secrets
import time

COOKIE = "livetune_panel"
SESSION_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 64  # the oldest session is forgotten beyond this many
FAILED_LOGIN_DELAY = 1.0  # seconds a wrong token waits before its answer: no fast guessing


class Guard:
    """The checks of one panel (see the module docstring).

    :param token: the token the browser must give (None: no login).
    :param port: the port the panel listens on (the ``Host`` it answers to).
    :param loopback: whether the panel listens on loopback only (then ``Host`` is checked).
    :param bind: the interface it listens on (its name is a ``Host`` it answers to as well).
    """

    def __init__(self, token: str | None, port: int, loopback: bool,
                 bind: str = "127.0.0.1") -> None:
        self._token = token.encode() if token else None
        self.port = port
        self.loopback = loopback
        host = f"[{bind}]" if ":" in bind else bind
        self._hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", host)}
        self._sessions: dict[str, float] = {}  # session id -> when it expires

    @property
    def login_required(self) -> bool:
        return self._token is not None

    def host_allowed(self, host: str | None) -> bool:
        """True if ``host`` (the ``Host`` header) may be answered."""
        if not self.loopback:
            return True  # any name may reach it; the token guards it
        return host in self._hosts

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """True if a request that changes something comes from the panel's own page."""
        return origin is not None and host is not None and origin in (
            f"http://{host}", f"https://{host}")

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison with the panel's token."""
        return self._token is not None and hmac.compare_digest(given.encode(), self._token)

    def new_session(self) -> str:
        """A fresh session id (the cookie's value) for a browser that gave the token."""
        now = time.time()
        self._sessions = {s: t for s, t in self._sessions.items() if t > now}
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_SECONDS
        return session

    def session_valid(self, session: str | None) -> bool:
        """True if no login is required, or ``session`` is a live session id."""
        if not self.login_required:
            return True
        expires = self._sessions.get(session or "")
        return expires is not None and expires > time.time()
