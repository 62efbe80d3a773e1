"""The panel's HTTP requests, read into typed records and checked before any run is called.

A body that the gRPC server would refuse is refused here with the server's own words (a name
that is not a dotted identifier, text longer than a value may be, too many names); what only
the run can judge (bounds, choices, a variable's own check, versions) is passed to it, and its
refusal comes back with its gRPC status, mapped to HTTP as grpc-gateway maps it
(:func:`http_status`).

Values are sent as text, exactly as typed; the run parses them with each variable's type, as
``livetune set`` does.

Example::

    >>> read_set({"runs": ["run-1"], "values": {"learning_rate": "1e-4"}})
    SetRequest(runs=('run-1',), values={'learning_rate': '1e-4'}, expected={})
    >>> read_set({"runs": ["run-1"], "values": {"learning rate": "1e-4"}})
    Traceback (most recent call last):
    ...
    livetune_rl.panel.requests.RequestError: invalid name 'learning rate': use dotted \
identifiers such as 'reward.hungry' (letters, digits and _, not starting with a digit, \
parts joined by '.')
    >>> http_status("FAILED_PRECONDITION"), http_status("UNAVAILABLE")
    (400, 503)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..patterns import MAX_PATTERNS
from ..values import MAX_STRING_LENGTH, InvalidNameError, LiveTuneError, validate_name

MAX_BODY_BYTES = 1 << 20  # the gRPC server's MAX_REQUEST_BYTES: a bigger body could not pass
MAX_ASSIGNMENTS = 1024  # names in one set request
MAX_RUNS = MAX_PATTERNS  # runs one request may address
MAX_VERSION = 2**64 - 1  # expected_version is a uint64

_HTTP = {  # grpc-gateway's mapping of gRPC status codes to HTTP
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
}


def http_status(grpc_status: str) -> int:
    """The HTTP status of a gRPC status code's name (500 for a name not known)."""
    return _HTTP.get(grpc_status, 500)


class RequestError(LiveTuneError):
    """A request refused by the panel before any run was called: ``status`` is the gRPC
    status the run would have answered (``INVALID_ARGUMENT``, ``NOT_FOUND``...)."""

    def __init__(self, message: str, status: str = "INVALID_ARGUMENT") -> None:
        self.status = status
        super().__init__(message)

    @property
    def http(self) -> int:
        return http_status(self.status)


@dataclass(frozen=True)
class SetRequest:
    """Set ``values`` (text, parsed by the run) in each of ``runs``: atomically in each run
    (all the names or none); ``expected`` makes it a compare-and-set."""

    runs: tuple[str, ...]
    values: dict[str, str]
    expected: dict[str, int]


@dataclass(frozen=True)
class FireRequest:
    """Fire the trigger ``name`` in each of ``runs``."""

    runs: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class UndoRequest:
    """Undo the newest set of ``run``."""

    run: str


def _object(body: Any, keys: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(f"the request body is a JSON object, not {type(body).__name__}")
    unknown = set(body) - keys
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}: the "
                           f"fields are {', '.join(sorted(keys))}")
    missing = required - set(body)
    if missing:
        raise RequestError(f"missing field(s) {', '.join(sorted(missing))}")
    return body


def _name(value: Any) -> str:
    try:
        return validate_name(value)
    except InvalidNameError as exc:
        raise RequestError(str(exc)) from None


def _runs(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(r, str) and 0 < len(r) <= 128 for r in value)):
        raise RequestError("runs is a list of one or more run ids (as /api/runs lists them)")
    if len(value) > MAX_RUNS:
        raise RequestError(f"{len(value)} runs in one request, at most {MAX_RUNS}")
    return tuple(dict.fromkeys(value))


def read_set(body: Any) -> SetRequest:
    """A set request from its JSON body; :class:`RequestError` naming what is wrong."""
    body = _object(body, {"runs", "values", "expected"}, {"runs", "values"})
    runs = _runs(body["runs"])
    values = body["values"]
    if not isinstance(values, dict) or not values:
        raise RequestError('values is an object of one or more names and their text, e.g. '
                           '{"learning_rate": "1e-4"}')
    if len(values) > MAX_ASSIGNMENTS:
        raise RequestError(f"{len(values)} values in one set, at most {MAX_ASSIGNMENTS}")
    texts: dict[str, str] = {}
    for name, text in values.items():
        _name(name)
        if not isinstance(text, str):
            raise RequestError(f"{name}: the value is sent as text, as typed (\"1e-4\", "
                               f"\"true\", \"adam\"), not as JSON {type(text).__name__}")
        if len(text) > MAX_STRING_LENGTH:
            raise RequestError(f"{name}: text longer than {MAX_STRING_LENGTH} characters")
        texts[name] = text
    expected_raw = body.get("expected") or {}
    if not isinstance(expected_raw, dict):
        raise RequestError('expected is an object of names and versions, e.g. '
                           '{"learning_rate": 12}')
    expected: dict[str, int] = {}
    for name, version in expected_raw.items():
        if name not in texts:
            raise RequestError(f"expected names {name!r}, which this set does not set")
        if isinstance(version, bool) or not isinstance(version, int) \
                or not 0 <= version <= MAX_VERSION:
            raise RequestError(f"{name}: expected version {version!r} is not an integer from "
                               f"0 to 2**64-1")
        expected[name] = version
    return SetRequest(runs, texts, expected)


def read_fire(body: Any) -> FireRequest:
    """A fire request from its JSON body."""
    body = _object(body, {"runs", "name"}, {"runs", "name"})
    return FireRequest(_runs(body["runs"]), _name(body["name"]))


def read_undo(body: Any) -> UndoRequest:
    """An undo request from its JSON body."""
    body = _object(body, {"run"}, {"run"})
    run = body["run"]
    if not isinstance(run, str) or not 0 < len(run) <= 128:
        raise RequestError("run is one run id (as /api/runs lists them), e.g. "
                           '{"run": "ppo-demo.4242"}')
    return UndoRequest(run)
