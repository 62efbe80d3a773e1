"""The gRPC service against an in-process server: every RPC and every error code."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import make_registry, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

import livetune_rl as lt
from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb
from livetune_rl._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from livetune_rl.server import ServeError, is_loopback


@pytest.fixture
def stub(served: Any) -> Iterator[pb_grpc.LiveTuneStub]:
    with grpc.insecure_channel(served.address) as channel:
        yield pb_grpc.LiveTuneStub(channel)


def _error(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=5)
    return info.value  # type: ignore[return-value]


def _set(name: str, **value: Any) -> pb.SetVariablesRequest:
    return pb.SetVariablesRequest(assignments=[pb.Assignment(name=name, value=pb.Value(**value))])


def test_list_variables_full_description(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    reply = stub.ListVariables(pb.ListVariablesRequest(), timeout=5)
    assert reply.run.run == "test" and reply.run.address == served.address
    assert reply.run.journal == str(served.journal_path) and reply.run.version == 1
    by_name = {v.name: v for v in reply.variables}
    assert list(by_name) == sorted(by_name)
    lr = by_name["learning_rate"]
    assert lr.type == pb.VAR_TYPE_FLOAT and lr.value.double == 3e-4
    assert lr.min.double == 1e-7 and lr.max.double == 1.0 and lr.help == "optimizer step size"
    assert lr.version == 0 and lr.source == "default" and lr.changed_at.seconds > 0
    assert by_name["batch_size"].type == pb.VAR_TYPE_INT and by_name["batch_size"].max.int == 4096
    assert by_name["use_amp"].type == pb.VAR_TYPE_BOOL and not by_name["use_amp"].HasField("min")
    opt = by_name["optimizer"]
    assert opt.type == pb.VAR_TYPE_STRING and [c.string for c in opt.choices] == ["adam", "sgd"]
    assert by_name["clip"].deferred
    assert [t.name for t in reply.triggers] == ["checkpoint", "stop"]
    only = stub.ListVariables(pb.ListVariablesRequest(patterns=["reward.*", "stop"]), timeout=5)
    assert [v.name for v in only.variables] == ["reward.hungry", "reward.scale"]
    assert [t.name for t in only.triggers] == ["stop"]


def test_get_variable_and_not_found_with_suggestion(stub: pb_grpc.LiveTuneStub) -> None:
    assert stub.GetVariable(pb.GetVariableRequest(name="batch_size"), timeout=5).value.int == 64
    err = _error(stub.GetVariable, pb.GetVariableRequest(name="learning_rat"))
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert "learning_rat" in err.details() and "did you mean learning_rate" in err.details()
    err = _error(stub.GetVariable, pb.GetVariableRequest(name="checkpoint"))
    assert err.code() is grpc.StatusCode.NOT_FOUND and "trigger" in err.details()
    err = _error(stub.GetVariable, pb.GetVariableRequest())  # empty request
    assert err.code() is grpc.StatusCode.NOT_FOUND
    # a huge name still gets a NOT_FOUND (the message is shortened to fit a status)
    err = _error(stub.GetVariable, pb.GetVariableRequest(name="z" * 200_000))
    assert err.code() is grpc.StatusCode.NOT_FOUND


def test_set_every_type_typed_and_text(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    reg = served.registry
    stub.SetVariables(_set("learning_rate", double=1e-4), timeout=5)
    stub.SetVariables(_set("batch_size", int=128), timeout=5)
    stub.SetVariables(_set("use_amp", bool=True), timeout=5)
    stub.SetVariables(_set("optimizer", string="sgd"), timeout=5)
    assert reg.values()["learning_rate"] == 1e-4 and reg.values()["batch_size"] == 128
    assert reg.values()["use_amp"] is True and reg.values()["optimizer"] == "sgd"
    stub.SetVariables(_set("learning_rate", text="2e-4"), timeout=5)
    stub.SetVariables(_set("batch_size", text="256"), timeout=5)
    stub.SetVariables(_set("use_amp", text="no"), timeout=5)
    reply = stub.SetVariables(_set("optimizer", text="adam"), timeout=5)
    assert reg.values()["learning_rate"] == 2e-4 and reg.values()["batch_size"] == 256
    assert reg.values()["use_amp"] is False
    (change,) = reply.changes
    assert change.kind == pb.CHANGE_KIND_SET and change.old.string == "sgd"
    assert change.new.string == "adam" and change.version == reg.version
    stub.SetVariables(_set("learning_rate", int=1), timeout=5)  # an int is a fine float
    stub.SetVariables(_set("batch_size", double=32.0), timeout=5)  # a whole double a fine int
    assert reg.values()["learning_rate"] == 1.0 and reg.values()["batch_size"] == 32


def test_set_source_names_the_client(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    stub.SetVariables(_set("batch_size", int=2), timeout=5,
                      metadata=[("x-livetune-client", "alice@box")])
    var = served.registry.variable("batch_size")
    # the peer gRPC saw first; the name the client gives is marked as a claim
    assert var.source.startswith("ipv4:127.0.0.1:") and var.source.endswith(
        "(claims 'alice@box')")


@pytest.mark.parametrize(("name", "value", "words"), [
    ("learning_rate", {"double": 2.0}, ["learning_rate", "2.0", "maximum 1.0"]),
    ("learning_rate", {"text": "nan"}, ["learning_rate", "'nan'", "finite"]),
    ("learning_rate", {"text": "abc"}, ["learning_rate", "'abc'", "not a float"]),
    ("batch_size", {"text": "5.5"}, ["batch_size", "'5.5'", "not an int"]),
    ("batch_size", {"double": 5.5}, ["batch_size", "5.5", "whole number"]),
    ("batch_size", {"int": 0}, ["batch_size", "0", "minimum 1"]),
    ("batch_size", {"text": "9999999999999999999"}, ["batch_size", "64-bit"]),
    ("optimizer", {"string": "rmsprop"}, ["optimizer", "'rmsprop'", "not one of 'adam', 'sgd'"]),
    ("use_amp", {"text": "maybe"}, ["use_amp", "'maybe'", "true/false"]),
    # typed-oneof mismatch: a string is not a float, a bool not an int, a number not a bool
    ("learning_rate", {"string": "0.1"}, ["learning_rate", "expects a float", "text"]),
    ("batch_size", {"bool": True}, ["batch_size", "expects a int"]),
    ("use_amp", {"int": 1}, ["use_amp", "expects a bool"]),
    ("optimizer", {"double": 1.0}, ["optimizer", "expects a str"]),
    ("learning_rate", {}, ["learning_rate", "no value given"]),
])
def test_bad_values_are_invalid_argument_naming_variable_value_rule(
        served: Any, stub: pb_grpc.LiveTuneStub, name: str, value: dict, words: list[str]) -> None:
    before = (served.registry.values(), served.registry.version)
    err = _error(stub.SetVariables, _set(name, **value))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in err.details()
    assert (served.registry.values(), served.registry.version) == before


def test_unbounded_int_out_of_int64_range_does_not_break_the_run(
        start_server: Callable[..., Any]) -> None:
    reg = lt.Registry()
    lt.LiveVariable("n", 1, registry=reg)
    server = start_server(reg, journal=False)
    with lt.connect(server.address) as client:
        with pytest.raises(lt.ClientError) as info:
            client.set_text({"n": "9223372036854775808"})
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        client.set_text({"n": "9223372036854775807"})
        assert client.list().state.values() == {"n": 2**63 - 1}  # listing still works


def test_empty_set_request_and_unknown_name(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    err = _error(stub.SetVariables, pb.SetVariablesRequest())
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and "no assignments" in err.details()
    err = _error(stub.SetVariables, _set("batch_sise", int=3))
    assert err.code() is grpc.StatusCode.NOT_FOUND and "did you mean batch_size" in err.details()
    err = _error(stub.SetVariables, _set("", int=3))
    assert err.code() is grpc.StatusCode.NOT_FOUND


def test_atomic_multi_set_over_grpc(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    reg = served.registry
    before = (reg.values(), reg.version)
    request = pb.SetVariablesRequest(assignments=[
        pb.Assignment(name="reward.hungry", value=pb.Value(double=-0.5)),
        pb.Assignment(name="batch_size", value=pb.Value(int=10**6)),
    ])
    err = _error(stub.SetVariables, request)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (reg.values(), reg.version) == before
    request.assignments[1].value.int = 10
    reply = stub.SetVariables(request, timeout=5)
    assert [c.name for c in reply.changes] == ["reward.hungry", "batch_size"]
    assert [c.version for c in reply.changes] == [before[1] + 1, before[1] + 2]
    assert reg.values()["reward.hungry"] == -0.5 and reg.values()["batch_size"] == 10
    dup = pb.SetVariablesRequest(assignments=[
        pb.Assignment(name="batch_size", value=pb.Value(int=1)),
        pb.Assignment(name="batch_size", value=pb.Value(int=2)),
    ])
    assert _error(stub.SetVariables, dup).code() is grpc.StatusCode.INVALID_ARGUMENT


def test_compare_and_set_failed_precondition(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    version = stub.GetVariable(pb.GetVariableRequest(name="batch_size"), timeout=5).version
    ok = pb.SetVariablesRequest(assignments=[pb.Assignment(
        name="batch_size", value=pb.Value(int=5), expected_version=version)])
    new_version = stub.SetVariables(ok, timeout=5).changes[0].version
    err = _error(stub.SetVariables, ok)  # same expected version again: stale
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"expected version {version}" in err.details() and str(new_version) in err.details()
    assert served.registry.variable("batch_size").version == new_version
    zero = pb.SetVariablesRequest(assignments=[pb.Assignment(
        name="use_amp", value=pb.Value(bool=True), expected_version=0)])  # 0 = never set
    stub.SetVariables(zero, timeout=5)
    assert _error(stub.SetVariables, zero).code() is grpc.StatusCode.FAILED_PRECONDITION


def test_fire_trigger(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    trig = served.registry.trigger("checkpoint")
    reply = stub.FireTrigger(pb.FireTriggerRequest(name="checkpoint"), timeout=5)
    assert reply.change.kind == pb.CHANGE_KIND_FIRE and reply.change.new.int == 1
    joined = stub.FireTrigger(pb.FireTriggerRequest(name="checkpoint"), timeout=5)
    assert joined.change.new.int == 1 and joined.change.data["coalesced"]  # fire #1 waits
    assert trig.fired() and not trig.fired()
    stub.FireTrigger(pb.FireTriggerRequest(name="checkpoint"), timeout=5)
    assert trig.fired() and not trig.fired()
    err = _error(stub.FireTrigger, pb.FireTriggerRequest(name="checkpint"))
    assert err.code() is grpc.StatusCode.NOT_FOUND and "did you mean checkpoint" in err.details()
    err = _error(stub.FireTrigger, pb.FireTriggerRequest(name="batch_size"))
    assert err.code() is grpc.StatusCode.NOT_FOUND and "it is a variable" in err.details()
    assert _error(stub.FireTrigger, pb.FireTriggerRequest()).code() is grpc.StatusCode.NOT_FOUND
    listed = stub.ListVariables(pb.ListVariablesRequest(patterns=["checkpoint"]), timeout=5)
    assert listed.triggers[0].fires == 2 and listed.triggers[0].handled == 2


def test_history_and_its_filters(served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    for n in range(1, 6):
        stub.SetVariables(_set("batch_size", int=n), timeout=5)
    stub.SetVariables(_set("reward.hungry", double=-2.0), timeout=5)
    stub.FireTrigger(pb.FireTriggerRequest(name="stop"), timeout=5)
    served.registry.step = 99
    served.registry.record_event("evaluate", {"mean": 1.5})
    full = stub.GetHistory(pb.GetHistoryRequest(), timeout=5)
    kinds = [c.kind for c in full.changes]
    assert kinds[0] == pb.CHANGE_KIND_START and kinds[-2:] == [pb.CHANGE_KIND_FIRE,
                                                               pb.CHANGE_KIND_EVENT]
    assert [c.version for c in full.changes] == list(range(1, 10)) and not full.truncated
    assert full.changes[-1].step == 99 and full.changes[-1].data["mean"] == 1.5
    assert full.changes[1].old.int == 64 and full.changes[1].new.int == 1
    since = stub.GetHistory(pb.GetHistoryRequest(since_version=7), timeout=5)
    assert [c.version for c in since.changes] == [8, 9]
    limited = stub.GetHistory(pb.GetHistoryRequest(limit=2, patterns=["batch_*"]), timeout=5)
    assert [c.new.int for c in limited.changes] == [4, 5] and limited.truncated
    reward = stub.GetHistory(pb.GetHistoryRequest(patterns=["reward.*"]), timeout=5)
    assert [c.name for c in reward.changes] == ["reward.hungry"]


def test_history_without_journal_is_failed_precondition(
        start_server: Callable[..., Any]) -> None:
    server = start_server(make_registry(), journal=False)
    assert server.journal_path is None
    with grpc.insecure_channel(server.address) as channel:
        err = _error(pb_grpc.LiveTuneStub(channel).GetHistory, pb.GetHistoryRequest())
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION and "no journal" in err.details()


def test_watch_snapshot_then_changes_in_order(served: Any) -> None:
    reg = served.registry
    with lt.connect(served.address) as client:
        stream = client.watch(["batch_size", "checkpoint"])
        first = next(stream)
        assert first.snapshot is not None
        assert first.snapshot.state.values() == {"batch_size": 64}
        assert [t.name for t in first.snapshot.state.triggers] == ["checkpoint"]
        base = first.snapshot.state.version

        def writer() -> None:
            for n in range(1, 51):
                reg.set({"batch_size": n, "reward.scale": float(n)})  # reward.* filtered out
            reg.fire("checkpoint")

        thread = threading.Thread(target=writer)
        thread.start()
        got = [next(stream).change for _ in range(51)]
        thread.join()
        assert [e.new for e in got[:50]] == list(range(1, 51))  # type: ignore[union-attr]
        assert got[-1].kind == "fire"  # type: ignore[union-attr]
        versions = [e.v for e in got]  # type: ignore[union-attr]
        assert versions == sorted(versions) and versions[0] > base
        assert all(e.name in ("batch_size", "checkpoint") for e in got)  # type: ignore[union-attr]
        stream.close()


def test_watch_unfiltered_sees_start_and_every_kind(served: Any) -> None:
    with lt.connect(served.address) as client:
        stream = client.watch()
        snap = next(stream).snapshot
        assert snap is not None and len(snap.state.variables) == 7
        served.registry.set({"clip": 0.5})
        served.registry.mark_applied("clip", step=3)
        served.registry.record_event("evaluate", {"r": 1})
        kinds = [next(stream).change.kind for _ in range(3)]  # type: ignore[union-attr]
        assert kinds == ["set", "applied", "event"]
        stream.close()


def test_health_and_reflection(served: Any) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(served.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "livetune.v1.LiveTune"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=5)
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"livetune.v1.LiveTune", "grpc.health.v1.Health"} <= names


def test_oversized_request_is_refused_and_server_keeps_serving(
        served: Any, stub: pb_grpc.LiveTuneStub) -> None:
    err = _error(stub.GetVariable, pb.GetVariableRequest(name="x" * (2 << 20)))
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.GetVariable(pb.GetVariableRequest(name="batch_size"), timeout=5).value.int == 64


def test_training_thread_never_sees_server_errors(served: Any) -> None:
    reg = served.registry
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def training() -> None:
        nonlocal reads
        lr = reg.variable("learning_rate")
        try:
            while not stop.is_set():
                _ = lr.value
                reads += 1
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    thread = threading.Thread(target=training)
    thread.start()
    with lt.connect(served.address) as client:
        for bad in ("nan", "-1", "x", "2"):
            with pytest.raises(lt.ClientError):
                client.set_text({"learning_rate": bad})
        with pytest.raises(lt.ClientError):
            client.set_text({"nope": "1"})
    stop.set()
    thread.join()
    assert not errors and reads > 0 and reg.values()["learning_rate"] == 3e-4


def test_stop_is_graceful_and_idempotent(start_server: Callable[..., Any]) -> None:
    server = start_server(make_registry(), journal=False)
    address = server.address
    with lt.connect(address) as client:
        assert client.health()
        server.stop()
        server.stop()
        assert server.wait(0)
        assert not client.health()
        with pytest.raises(lt.ClientError) as info:
            client.get("batch_size")
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert "cannot reach a livetune run" in str(info.value)


def test_context_manager_and_default_journal(livetune_home: Path) -> None:
    reg = make_registry()
    with lt.serve("127.0.0.1:0", registry=reg, run="ctx", quiet=True) as server:
        assert server.journal_path is not None
        assert server.journal_path.parent == livetune_home / "journals"
        assert server.journal_path.name.startswith("ctx-")
        reg.set({"batch_size": 3})
        assert wait_for(lambda: server.journal_path.read_text().count("\n") == 2)
    assert server.wait(0)


def test_explicit_address_in_use_is_an_error(start_server: Callable[..., Any]) -> None:
    first = start_server(lt.Registry(), journal=False)
    with pytest.raises(ServeError, match="cannot bind"):
        start_server(lt.Registry(), address=first.address, journal=False)


def test_default_port_taken_picks_a_free_one_and_says_so(
        start_server: Callable[..., Any], capfd: pytest.CaptureFixture[str]) -> None:
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 50051))
        blocker.listen()
    except OSError:
        blocker.close()
        blocker = None  # type: ignore[assignment]  # someone else holds it: just as good
    try:
        server = start_server(lt.Registry(), address=None, journal=False, quiet=False,
                              run="fallback")
        assert server.address.startswith("127.0.0.1:") and not server.address.endswith(":50051")
        err = capfd.readouterr().err
        assert "port 50051 is in use, picked a free one" in err
        assert f"run 'fallback' serving on {server.address}" in err
    finally:
        if blocker is not None:
            blocker.close()


def test_bad_serve_arguments(start_server: Callable[..., Any]) -> None:
    with pytest.raises(ServeError, match="invalid run name"):
        start_server(lt.Registry(), run="bad name", journal=False)
    with pytest.raises(ServeError, match="invalid run name"):
        start_server(lt.Registry(), run="demo\n", journal=False)
    with pytest.raises(ServeError, match="both tls_cert and tls_key"):
        start_server(lt.Registry(), tls_cert="/nonexistent.pem", journal=False)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:1", True), ("localhost:1", True), ("[::1]:1", True), ("unix:/tmp/x", True),
    ("0.0.0.0:1", False), ("[::]:1", False), ("10.1.2.3:1", False), ("example.com:1", False),
])
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.timeout(60)
def test_slow_watcher_gets_lagged_then_a_fresh_snapshot(start_server: Callable[..., Any]) -> None:
    reg = lt.Registry()
    var = lt.LiveVariable("n", 0, registry=reg)
    server = start_server(reg, journal=False)
    total = 9000  # well over the per-watcher buffer (4096) plus what HTTP/2 holds in flight
    with lt.connect(server.address) as client:
        stream = client.watch()
        assert next(stream).snapshot is not None
        for i in range(1, total + 1):  # the watcher reads nothing meanwhile
            var.set(i)
        items = []
        for item in stream:
            items.append(item)
            if item.snapshot is not None or len(items) > total + 2:
                break
        stream.close()
    kinds = ["change" if i.change else "lagged" if i.lagged else "snapshot" for i in items]
    assert kinds[-2:] == ["lagged", "snapshot"], kinds[-5:]
    changes = [i.change.v for i in items if i.change is not None]  # type: ignore[union-attr]
    assert changes == list(range(1, len(changes) + 1))  # no gap before the lag notice
    assert items[-1].snapshot.state.values() == {"n": total}  # type: ignore[union-attr]
    assert "fresh snapshot" in items[-2].lagged  # type: ignore[operator]
