"""Property-based tests: arbitrary text at the parser, junk and random messages at the server."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import make_registry
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import livetune_rl as lt
from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb
from livetune_rl.values import (
    INT_MAX,
    INT_MIN,
    InvalidNameError,
    InvalidValueError,
    Spec,
    VarType,
    coerce,
    validate_name,
)

FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SERVER = settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])

junk_objects = st.one_of(
    st.text(), st.binary(), st.integers(), st.floats(), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3), st.integers(min_value=-(2**70), max_value=2**70),
    st.from_regex(r"\s*[+-]?[0-9_]{0,25}(\.[0-9]*)?([eE][+-]?[0-9]{1,4})?\s*", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "Infinity", "yes", "no", "on", "1e-4", "5.5", "5"]),
)


@FAST
@given(vtype=st.sampled_from(list(VarType)), raw=junk_objects)
@example(vtype=VarType.INT, raw=2**63)
@example(vtype=VarType.INT, raw="9999999999999999999")
@example(vtype=VarType.INT, raw=1e300)
@example(vtype=VarType.STR, raw="\ud800")
@example(vtype=VarType.FLOAT, raw=" nan ")
def test_coerce_returns_the_type_or_a_clean_error(vtype: VarType, raw: object) -> None:
    try:
        value = coerce(vtype, raw, "v")
    except InvalidValueError as exc:
        assert str(exc).startswith("v: ") and len(str(exc)) < 400
        return
    expected = {VarType.FLOAT: float, VarType.INT: int, VarType.BOOL: bool, VarType.STR: str}
    assert type(value) is expected[vtype]
    if isinstance(value, float):
        assert math.isfinite(value)
    if type(value) is int:
        assert INT_MIN <= value <= INT_MAX
    if isinstance(value, str):
        value.encode("utf-8")  # always sendable over gRPC
    # what a CLI user sees (the server's own rendering) parses back to the same value
    text = repr(value) if isinstance(value, float) else str(value)
    assert coerce(vtype, text if vtype is not VarType.STR else value, "v") == value


@FAST
@given(raw=st.text())
def test_spec_accept_with_bounds_never_escapes_them(raw: str) -> None:
    floats = Spec.for_default(0.5, min=-1.0, max=1.0)
    ints = Spec.for_default(5, min=0, max=10, check=lambda v: None if v != 7 else "no 7")
    choice = Spec.for_default("adam", choices=["adam", "sgd"])
    for spec in (floats, ints, choice):
        try:
            value = spec.accept("v", raw)
        except InvalidValueError:
            continue
        if spec is choice:
            assert value in ("adam", "sgd")
        else:
            assert spec.min <= value <= spec.max  # type: ignore[operator]
            assert value != 7


@FAST
@given(name=st.text(max_size=140))
def test_validate_name_accepts_only_dotted_identifiers(name: str) -> None:
    try:
        assert validate_name(name) == name
    except InvalidNameError:
        return
    parts = name.split(".")
    assert all(p and (p[0].isalpha() or p[0] == "_") and p.isascii() for p in parts)
    assert all(c.isalnum() or c == "_" for p in parts for c in p)


@pytest.fixture
def fuzz_server(start_server: Any) -> Iterator[tuple[Any, grpc.Channel]]:
    reg = make_registry()
    lt.LiveVariable("count", 0, registry=reg)  # an unbounded int: only int64 limits it
    server = start_server(reg, journal=False)
    channel = grpc.insecure_channel(server.address)
    try:
        yield server, channel
    finally:
        channel.close()


METHODS = ["ListVariables", "GetVariable", "SetVariables", "FireTrigger", "GetHistory"]
OK_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION}
# grpc's asyncio server answers an undecodable request with UNKNOWN ("Unexpected DecodeError")
JUNK_CODES = OK_CODES | {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def _still_serving(server: Any, channel: grpc.Channel) -> None:
    list_vars = channel.unary_unary("/livetune.v1.LiveTune/ListVariables",
                                    request_serializer=None, response_deserializer=None)
    reply = pb.ListVariablesResponse.FromString(list_vars(b"", timeout=5))
    assert reply.run.run == "test" and len(reply.variables) == 8


@SERVER
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=300))
def test_junk_bytes_get_a_status_and_the_server_keeps_serving(
        fuzz_server: tuple[Any, grpc.Channel], method: str, payload: bytes) -> None:
    server, channel = fuzz_server
    call = channel.unary_unary(f"/livetune.v1.LiveTune/{method}", request_serializer=None,
                               response_deserializer=None)
    values = dict(server.registry.values())
    try:
        call(payload, timeout=5)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    assert code in JUNK_CODES, code
    if method != "SetVariables" or code is not grpc.StatusCode.OK:
        assert server.registry.values() == values
    _still_serving(server, channel)


@SERVER
@given(payload=st.binary(max_size=200))
def test_junk_bytes_at_watch(fuzz_server: tuple[Any, grpc.Channel], payload: bytes) -> None:
    server, channel = fuzz_server
    call = channel.unary_stream("/livetune.v1.LiveTune/Watch", request_serializer=None,
                                response_deserializer=None)
    stream = call(payload, timeout=5)
    try:
        first = next(stream)
        assert pb.WatchResponse.FromString(first).HasField("snapshot")
    except grpc.RpcError as exc:
        assert exc.code() in JUNK_CODES, exc.code()
    finally:
        stream.cancel()
    _still_serving(server, channel)


values = st.one_of(
    st.builds(lambda x: pb.Value(double=x), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda x: pb.Value(int=x), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.builds(lambda x: pb.Value(bool=x), st.booleans()),
    st.builds(lambda x: pb.Value(string=x), st.text(max_size=50)),
    st.builds(lambda x: pb.Value(text=x), st.text(max_size=50) | junk_objects.map(str)),
    st.just(pb.Value()),
)
names = st.sampled_from(["learning_rate", "batch_size", "use_amp", "optimizer", "reward.hungry",
                         "checkpoint", "count", "nope", ""]) | st.text(max_size=30)
assignments = st.builds(
    lambda n, v, e: pb.Assignment(name=n, value=v, expected_version=e)
    if e is not None else pb.Assignment(name=n, value=v),
    names, values, st.none() | st.integers(min_value=0, max_value=2**64 - 1))


@SERVER
@given(request=st.builds(lambda a: pb.SetVariablesRequest(assignments=a),
                         st.lists(assignments, max_size=4)))
@example(request=pb.SetVariablesRequest(assignments=[
    pb.Assignment(name="count", value=pb.Value(text="9223372036854775808"))]))
@example(request=pb.SetVariablesRequest(assignments=[
    pb.Assignment(name="optimizer", value=pb.Value(text="sgd")),
    pb.Assignment(name="batch_size", value=pb.Value(double=float("nan")))]))
def test_random_set_requests_are_all_or_nothing(fuzz_server: tuple[Any, grpc.Channel],
                                                request: pb.SetVariablesRequest) -> None:
    server, channel = fuzz_server
    reg = server.registry
    before = (reg.values(), reg.version)
    call = channel.unary_unary("/livetune.v1.LiveTune/SetVariables", request_serializer=None,
                               response_deserializer=None)
    try:
        reply = pb.SetVariablesResponse.FromString(call(request.SerializeToString(), timeout=5))
    except grpc.RpcError as exc:
        assert exc.code() in OK_CODES - {grpc.StatusCode.OK}, (exc.code(), exc.details())
        assert (reg.values(), reg.version) == before  # refused: nothing changed
        return
    assert len(reply.changes) == len(request.assignments)
    # an assignment of the value a variable holds is acknowledged as unchanged: no version
    made = [c for c in reply.changes
            if not ("unchanged" in c.data.fields and c.data.fields["unchanged"].bool_value)]
    assert reg.version == before[1] + len(made)
    for change in reply.changes:
        if change not in made:
            assert change.old == change.new and change.version <= before[1]
        value = reg.values()[change.name]
        assert not isinstance(value, float) or math.isfinite(value)
    _still_serving(server, channel)


@SERVER
@given(data=st.data())
def test_registry_values_always_valid_after_random_text_sets(data: st.DataObject) -> None:
    reg = make_registry()
    for _ in range(5):
        name = data.draw(st.sampled_from(["learning_rate", "batch_size", "use_amp", "optimizer"]))
        text = data.draw(junk_objects.map(str))
        with contextlib.suppress(lt.InvalidValueError):
            reg.set({name: text})
    v = reg.values()
    assert 1e-7 <= v["learning_rate"] <= 1.0 and 1 <= v["batch_size"] <= 4096
    assert v["optimizer"] in ("adam", "sgd") and isinstance(v["use_amp"], bool)
