"""The server's edges as a client or an operator meets them: which gRPC status each kind of
error gets, what the token check lets through, and which serve arguments are refused."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
import pytest

import livetune_rl as lt
from livetune_rl.server import (
    AccessInterceptor,
    ServeError,
    TrainingUnavailableError,
    _status_of,
    check_serve_args,
    is_loopback,
)
from livetune_rl.values import LiveTuneError, VersionConflictError


@pytest.mark.parametrize(("error", "code"), [
    (TrainingUnavailableError("no answer"), grpc.StatusCode.ABORTED),
    (lt.InvalidValueError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (lt.InvalidNameError("bad name"), grpc.StatusCode.INVALID_ARGUMENT),
    (lt.UnknownNameError("x", []), grpc.StatusCode.NOT_FOUND),
    (VersionConflictError("moved"), grpc.StatusCode.FAILED_PRECONDITION),
    (lt.DuplicateNameError("twice"), grpc.StatusCode.FAILED_PRECONDITION),
    (LiveTuneError("a subscriber cannot write"), grpc.StatusCode.FAILED_PRECONDITION),
    (OSError("disk full"), grpc.StatusCode.INTERNAL),
    (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    (KeyError("x"), grpc.StatusCode.INTERNAL),
])
def test_every_error_kind_gets_its_status(error: Exception, code: grpc.StatusCode) -> None:
    assert _status_of(error) is code


class Details:
    """What gRPC hands an interceptor: the method and the call's metadata."""

    def __init__(self, method: str, metadata: tuple[tuple[str, Any], ...] | None) -> None:
        self.method = method
        self.invocation_metadata = metadata


class Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)
        raise grpc.RpcError(message)


async def _ok(request: Any, context: Any) -> str:
    return "served"


async def _ok_stream(request: Any, context: Any) -> Any:
    yield "served"


HANDLERS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler(_ok),
    "unary_stream": grpc.unary_stream_rpc_method_handler(_ok_stream),
    "stream_unary": grpc.stream_unary_rpc_method_handler(_ok),
    "stream_stream": grpc.stream_stream_rpc_method_handler(_ok_stream),
}


def intercept(metadata: tuple[tuple[str, Any], ...] | None, kind: str = "unary_unary",
              method: str = "/livetune.v1.LiveTune/SetVariables") -> Any:
    handler = HANDLERS[kind] if kind else None

    async def continuation(details: Any) -> Any:
        return handler

    return asyncio.run(AccessInterceptor("s3cret", None).intercept_service(
        continuation, Details(method, metadata)))


def refusal(handler: Any, kind: str) -> tuple[grpc.StatusCode, str]:
    context = Context()
    behaviour = getattr(handler, kind)

    async def call() -> None:
        result = behaviour(None, context)
        if hasattr(result, "__anext__"):
            await result.__anext__()
        else:
            await result

    with pytest.raises(grpc.RpcError):
        asyncio.run(call())
    assert context.aborted is not None
    return context.aborted


def test_the_right_token_reaches_the_service_as_text_or_bytes() -> None:
    for value in ("Bearer s3cret", b"Bearer s3cret"):
        assert intercept((("x-other", "1"), ("authorization", value))) is \
            HANDLERS["unary_unary"]


@pytest.mark.parametrize("kind", list(HANDLERS))
def test_a_missing_or_wrong_token_is_refused_whatever_the_call_kind(kind: str) -> None:
    for metadata, reason in ((None, "missing"), ((), "missing"),
                             ((("authorization", "Bearer nope"),), "wrong"),
                             ((("authorization", "s3cret"),), "wrong"),
                             ((("authorization", "Bearer s3cret "),), "wrong")):
        handler = intercept(metadata, kind)
        assert handler is not HANDLERS[kind]
        assert getattr(handler, kind) is not None  # the same kind of call, answered at once
        code, message = refusal(handler, kind)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert message == (f"{reason} token: send metadata 'authorization: Bearer <token>' "
                           "(livetune --token-file or LIVETUNE_TOKEN)")
        assert "s3cret" not in message


def test_health_needs_no_token_and_unknown_methods_stay_unknown() -> None:
    health = intercept(None, method="/grpc.health.v1.Health/Check")
    assert health is HANDLERS["unary_unary"]
    assert intercept(None, kind="", method="/livetune.v1.LiveTune/Nope") is None


@pytest.mark.parametrize(("address", "loopback"), [
    ("unix-abstract:livetune", False), ("unix:relative.sock", True), ("127.9.9.9:5", True),
    ("localhost", True), ("[::1]:50051", True), ("[::ffff:10.0.0.1]:1", False),
    ("192.168.1.2:80", False), ("", False), ("host:1", False),
])
def test_is_loopback_knows_every_loopback_form(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_run_name_defaults_to_the_script_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_TOKEN", raising=False)
    for argv0, run in (("/home/me/train ppo!.py", "train_ppo_"), ("", "livetune"),
                       ("__main__.py", "main__"), ("x" * 80 + ".py", "x" * 64),
                       ("-.-", "livetune"), ("Xtrain.py", "Xtrain")):
        monkeypatch.setattr(sys, "argv", [argv0])
        assert check_serve_args(None, None, None, None, None, False) == (run, None)


def test_token_comes_from_the_argument_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_TOKEN", "from-env")
    assert check_serve_args("127.0.0.1:0", "r", None, None, None, False) == ("r", "from-env")
    assert check_serve_args("127.0.0.1:0", "r", "given", None, None, False)[1] == "given"
    monkeypatch.setenv("LIVETUNE_TOKEN", "")
    assert check_serve_args("127.0.0.1:0", "r", None, None, None, False)[1] is None
    # a token read from the environment is enough to serve beyond loopback
    monkeypatch.setenv("LIVETUNE_TOKEN", "from-env")
    assert check_serve_args("0.0.0.0:0", "r", None, None, None, False)[1] == "from-env"


def test_unsafe_or_invalid_serve_arguments_are_refused_with_the_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_TOKEN", raising=False)
    with pytest.raises(ServeError, match=r"^refusing to serve on non-loopback address "
                                         r"0\.0\.0\.0:1 without a token: .* Pass token=\.\.\. "
                                         r"\(or --token-file, or set LIVETUNE_TOKEN\), or "
                                         r"insecure=True if the network "
                                         r"is trusted\.$"):
        check_serve_args("0.0.0.0:1", "r", None, None, None, False)
    assert check_serve_args("0.0.0.0:1", "r", None, None, None, True) == ("r", None)
    assert check_serve_args("0.0.0.0:1", "r", "t", None, None, False) == ("r", "t")
    assert check_serve_args(None, "r", None, None, None, False) == ("r", None)  # default: local
    with pytest.raises(ServeError, match=r"^TLS needs both tls_cert and tls_key$"):
        check_serve_args(None, "r", None, None, "key.pem", False)
    assert check_serve_args(None, "r", None, "c.pem", "k.pem", False) == ("r", None)
    for rate in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ServeError, match=r"^max_calls_per_second must be a positive "
                                             r"number \(None: no pacing\), got "):
            check_serve_args(None, "r", None, None, None, False, rate)
    assert check_serve_args(None, "r", None, None, None, False, 0.5) == ("r", None)
    for run in ("a" * 65, "-x", ".x", "a b", ""):
        with pytest.raises(ServeError, match=r"^invalid run name "):
            check_serve_args(None, run, None, None, None, False)
    assert check_serve_args(None, "a" * 64, None, None, None, False)[0] == "a" * 64
    assert check_serve_args(None, "_a.b-c9", None, None, None, False)[0] == "_a.b-c9"


def test_pacing_queues_then_refuses_and_a_flood_without_the_token_has_its_own_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def no_wait(delay: float) -> None:  # record the pacing delay instead of sleeping it
        waits.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    rate = 0.001  # slow enough that no budget refills while the test runs
    access = AccessInterceptor("s3cret", rate, burst=2, max_queue=10)

    async def continuation(details: Any) -> Any:
        return HANDLERS["unary_unary"]

    def call(token: str) -> Any:
        details = Details("/livetune.v1.LiveTune/SetVariables",
                          (("authorization", f"Bearer {token}"),))
        return asyncio.run(access.intercept_service(continuation, details))

    # without the token: 2 calls at once (the same burst), then queued up to a tenth of the
    # queue (1 waiting), then refused for the flood before the token is even judged
    flood = [call("nope") for _ in range(5)]
    assert [refusal(h, "unary_unary")[1].split(":")[0] for h in flood] == [
        "wrong token", "wrong token", "wrong token", "wrong token",
        "missing or wrong token, and too many such calls at once; send metadata "
        "'authorization"]
    assert refusal(flood[4], "unary_unary") == (
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong token, and too many such calls at once; send metadata "
        "'authorization: Bearer <token>'")
    assert (access.delayed, access.refused) == (2, 1)
    assert waits == pytest.approx([1 / rate, 2 / rate], rel=1e-3)
    # the token holder's budget is untouched by that flood: 2 at once, then queued until
    # more than 10 wait
    served = [call("s3cret") for _ in range(13)]
    assert all(h is HANDLERS["unary_unary"] for h in served)
    assert waits[2:] == pytest.approx([k / rate for k in range(1, 12)], rel=1e-3)
    busy = call("s3cret")
    assert refusal(busy, "unary_unary") == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "server busy: more than 10 calls are waiting (rate limit 0.001/s); retry later")
    assert (access.delayed, access.refused) == (13, 2)
