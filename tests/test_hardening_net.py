"""What a hostile local user or a buggy client can do over the network side, and what stops it.

Unix-socket binds that fail or would take another run's socket, unauthenticated floods,
unbounded glob patterns, piles of trigger fires, idle connections, a set acknowledged by a
serving child killed before forwarding it, client-claimed identities, corrupt requests,
non-ASCII digits, and a watch whose server crashed. Loopback only; every count is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Children, wait_for

import livetune_rl as lt
from livetune_rl import discovery, sidecar
from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb
from livetune_rl._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from livetune_rl.server import AccessInterceptor
from livetune_rl.values import VarType, coerce

LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _registry() -> lt.Registry:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, registry=reg)
    lt.LiveTrigger("evaluate", registry=reg)
    return reg


def _set(value: float) -> pb.SetVariablesRequest:
    return pb.SetVariablesRequest(assignments=[
        pb.Assignment(name="lr", value=pb.Value(double=value))])


def _alive(address: str) -> bool:
    with lt.connect(address, timeout=5) as client:
        return client.health()


# ------------------------------------------------------------------ 2: unix socket binds
def test_unix_bind_in_a_missing_directory_is_refused() -> None:
    with pytest.raises(lt.ServeError, match="directory does not exist"):
        lt.serve("unix:/nonexistent/livetune-dir/x.sock", registry=_registry(),
                 journal=False, discoverable=False, quiet=True)


def test_unix_socket_another_run_serves_is_not_taken(short_tmp: Path,
                                                     children: Children) -> None:
    path = short_tmp / "run.sock"
    first, address = children.server("first", f"unix:{path}")
    with pytest.raises(lt.ServeError, match="another process is serving on it"):
        lt.serve(f"unix:{path}", registry=_registry(), journal=False, discoverable=False,
                 quiet=True)
    assert _alive(address)  # the first run still has its socket
    # a socket left by a killed run (nobody accepts on it) is replaced
    first.kill()
    first.wait()
    assert path.exists()
    with lt.serve(f"unix:{path}", registry=_registry(), journal=False, discoverable=False,
                  quiet=True) as server:
        assert _alive(server.address)


def test_unix_path_that_is_not_a_socket_is_left_alone(short_tmp: Path) -> None:
    path = short_tmp / "notes.txt"
    path.write_text("mine")
    with pytest.raises(lt.ServeError, match="not a socket"):
        lt.serve(f"unix:{path}", registry=_registry(), journal=False, discoverable=False,
                 quiet=True)
    assert path.read_text() == "mine"


def test_relative_unix_path_is_recorded_absolute(short_tmp: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_tmp)
    with lt.serve("unix:rel.sock", registry=_registry(), journal=False, quiet=True) as server:
        assert server.address == f"unix:{short_tmp / 'rel.sock'}"
        assert _alive(server.address)
        assert [r.address for r in discovery.list_runs()] == [server.address]


def test_abstract_socket_needs_a_token() -> None:
    name = f"unix-abstract:livetune-test-{os.getpid()}"
    with pytest.raises(lt.ServeError, match="without a token"):
        lt.serve(name, registry=_registry(), journal=False, discoverable=False, quiet=True)
    with lt.serve(name, registry=_registry(), token="t0ken", journal=False,
                  discoverable=False, quiet=True) as server:
        assert server.address == name
        with lt.connect(name, token="t0ken") as client:
            assert client.get("lr").value == 0.1


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to hold the name as another user")
def test_abstract_socket_another_user_holds_is_refused(children: Children) -> None:
    name = f"livetune-squat-{os.getpid()}"
    squatter = children.popen([*NOBODY, sys.executable, "-c", (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.bind('\\0{name}'); s.listen()\n"
        "print('ADDR bound', flush=True); sys.stdin.read()\n")], stdin=subprocess.PIPE)
    assert squatter.stdout is not None and squatter.stdout.readline().startswith("ADDR")
    with pytest.raises(lt.ServeError, match="in use"):
        lt.serve(f"unix-abstract:{name}", registry=_registry(), token="t0ken",
                 journal=False, discoverable=False, quiet=True)


# ------------------------------------------------------------------ 3: auth before pacing
def test_unauthenticated_flood_does_not_spend_the_token_holders_budget() -> None:
    with lt.serve("127.0.0.1:0", registry=_registry(), token="t0ken", journal=False,
                  discoverable=False, quiet=True, max_calls_per_second=50) as server:
        answered: list[grpc.StatusCode] = []

        async def flood() -> None:  # 300 calls without the token, all at once
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = pb_grpc.LiveTuneStub(channel)

                async def one() -> None:
                    try:
                        await stub.SetVariables(_set(0.9), timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        answered.append(exc.code())

                await asyncio.gather(*(one() for _ in range(300)))

        flooder = threading.Thread(target=lambda: asyncio.run(flood()))
        flooder.start()
        try:
            time.sleep(0.5)  # the flood is in (before the fix: 250 calls queued, 5 s)
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.LiveTuneStub(channel)
                for i in range(5):  # the token holder is served without waiting for them
                    stub.SetVariables(_set(i / 10), timeout=2,
                                      metadata=[("authorization", "Bearer t0ken")])
        finally:
            flooder.join(timeout=60)
        assert answered and set(answered) == {grpc.StatusCode.UNAUTHENTICATED}
        assert server.registry.variable("lr").value == 0.4


def test_watch_opens_are_paced_and_bad_tokens_spend_their_own_budget() -> None:
    access = AccessInterceptor("t0ken", rate=10.0, burst=1, max_queue=10)

    class Details:
        def __init__(self, method: str, token: str) -> None:
            self.method = f"/livetune.v1.LiveTune/{method}"
            self.invocation_metadata = [("authorization", f"Bearer {token}")]

    async def found(details: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(lambda request, context: iter(()))

    async def scenario() -> None:
        flood = [asyncio.ensure_future(access.intercept_service(found, Details("Watch", "x")))
                 for _ in range(30)]
        await asyncio.sleep(0)  # all 30 have taken their place: 1 + 2 waiting, 27 refused
        assert (access.delayed, access.refused) == (2, 27)
        await access.intercept_service(found, Details("Watch", "t0ken"))
        assert access.delayed == 2  # the token holder's budget was untouched: no wait
        await access.intercept_service(found, Details("Watch", "t0ken"))
        assert access.delayed == 3  # a second open beyond the burst of 1 is paced
        await asyncio.gather(*flood)

    asyncio.run(scenario())


# ------------------------------------------------------------------ 5: glob patterns
def test_too_many_or_too_long_patterns_are_invalid_argument() -> None:
    with lt.serve("127.0.0.1:0", registry=_registry(), quiet=True, discoverable=False) as server, \
            grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.LiveTuneStub(channel)
        many = [f"p{i}.*" for i in range(65)]
        for call, request in ((stub.ListVariables, pb.ListVariablesRequest(patterns=many)),
                              (stub.GetHistory, pb.GetHistoryRequest(patterns=many))):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "at most 64" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            next(iter(stub.Watch(pb.WatchRequest(patterns=many), timeout=5)))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            stub.ListVariables(pb.ListVariablesRequest(patterns=["*" * 300]), timeout=5)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 256" in err.value.details()
        ok = stub.ListVariables(pb.ListVariablesRequest(patterns=[*many[:63], "l?"]),
                                timeout=5)
        assert [v.name for v in ok.variables] == ["lr"]


# ------------------------------------------------------------------ 6: trigger fires
@pytest.mark.parametrize("out_of_process", [False, True])
def test_fires_before_the_previous_is_handled_are_coalesced(tmp_path: Path,
                                                            out_of_process: bool) -> None:
    reg = _registry()
    evaluate = reg.trigger("evaluate")
    with lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "j.jsonl", quiet=True,
                  discoverable=False, out_of_process=out_of_process) as server, \
            lt.connect(server.address) as client:
        events = [client.fire("evaluate") for _ in range(50)]
        wait_for(lambda: evaluate.pending >= 1)
        time.sleep(0.1)  # would any more arrive?
        assert evaluate.pending == 1  # one evaluation to run, not 50
        assert [e.new for e in events] == [1] * 50
        assert sum(bool(e.data.get("coalesced")) for e in events) == 49
        assert evaluate.fired() and not evaluate.fired()
        wait_for(lambda: client.list().state.triggers[0].handled == 1)
        again = client.fire("evaluate")  # handled: the next fire counts again
        assert again.new == 2 and not again.data
        wait_for(lambda: evaluate.pending == 1)
    fires = [e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "fire"]
    assert len(fires) == 51 and sum(bool(e.data.get("coalesced")) for e in fires) == 49


# ------------------------------------------------------------------ 8: idle connections
def test_idle_connections_are_capped_and_closed() -> None:
    reg = _registry()
    server = lt.serve("127.0.0.1:0", registry=reg, journal=False, discoverable=False,
                      quiet=True, out_of_process=True, max_watchers=4)
    host, port = server.address.rsplit(":", 1)
    cap = 4 + 256
    idle: list[socket.socket] = []
    try:
        before = len(os.listdir(f"/proc/{server.pid}/fd"))
        for _ in range(400):  # connected, never speaking
            s = socket.socket()
            s.settimeout(2)
            with contextlib.suppress(OSError):
                s.connect((host, int(port)))
                idle.append(s)
        time.sleep(0.5)
        held = len(os.listdir(f"/proc/{server.pid}/fd")) - before
        assert len(idle) == 400 and held <= cap + 16, f"{held} more fds in the serving child"

        def all_closed() -> bool:  # closed after the handshake timeout, the cap's worth
            return all(_closed(s) for s in idle)  # at a time (the rest wait in the backlog)

        wait_for(all_closed, timeout=25, interval=0.2)
        assert _alive(server.address)
    finally:
        for s in idle:
            s.close()
        server.stop(grace=0)


def _closed(s: socket.socket) -> bool:
    """True once the server closed ``s`` (what it sent before, its HTTP/2 settings, is read
    and dropped)."""
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# ------------------------------------------------------------------ 11: acknowledged sets
def test_set_acknowledged_before_the_child_is_killed_is_applied(tmp_path: Path) -> None:
    reg = _registry()
    lr = reg.variable("lr")
    server = lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "j.jsonl", quiet=True,
                      discoverable=False, out_of_process=True)
    assert isinstance(server, sidecar.ProcessServer)
    try:
        with lt.connect(server.address) as client:
            client.set({"lr": 0.3})  # sent at once: opens the child's 20 ms window
            acked = client.set({"lr": 0.4}).pop()  # waits in the window
            os.kill(server.pid, signal.SIGKILL)
        wait_for(lambda: not server.alive)
        wait_for(lambda: lr.value == 0.4, timeout=5)
        assert lr.version == acked.v
    finally:
        server.stop(grace=0)


# ------------------------------------------------------------------ 14: smaller ones
def test_journal_marks_the_client_name_as_claimed(tmp_path: Path) -> None:
    reg = _registry()
    with lt.serve("127.0.0.1:0", registry=reg, token="t0ken", journal=tmp_path / "j.jsonl",
                  quiet=True, discoverable=False) as server, \
            grpc.insecure_channel(server.address) as channel:
        pb_grpc.LiveTuneStub(channel).SetVariables(_set(0.5), timeout=5, metadata=[
            ("authorization", "Bearer t0ken"), ("x-livetune-client", "root@prod")])
    event = next(e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "set")
    # the peer gRPC saw, that it held the token, then what it claims
    assert event.source.startswith("ipv4:127.0.0.1:")
    assert event.source.endswith("(token; claims 'root@prod')")


@pytest.mark.parametrize("out_of_process", [False, True])
def test_corrupt_request_bytes_are_invalid_argument(out_of_process: bool) -> None:
    with lt.serve("127.0.0.1:0", registry=_registry(), journal=False, discoverable=False,
                  quiet=True, out_of_process=out_of_process) as server, \
            grpc.insecure_channel(server.address) as channel:
        for method in ("SetVariables", "FireTrigger", "GetHistory"):
            call = channel.unary_unary(f"/livetune.v1.LiveTune/{method}")
            with pytest.raises(grpc.RpcError) as err:
                call(b"\xff\xff\xff\xff not protobuf", timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value
            assert "malformed request" in err.value.details()
            assert "Unexpected" not in err.value.details()
        watch = channel.unary_stream("/livetune.v1.LiveTune/Watch")
        with pytest.raises(grpc.RpcError) as err:
            next(iter(watch(b"\xff\xff\xff", timeout=5)))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert _alive(server.address)


@pytest.mark.parametrize("text", ["٥", "١٢", "５", "1e٣", "²"])
def test_non_ascii_digits_are_not_numbers(text: str) -> None:
    for vtype in (VarType.INT, VarType.FLOAT):
        with pytest.raises(lt.InvalidValueError):
            coerce(vtype, text, "x")
    assert coerce(VarType.INT, " 1_000 ", "x") == 1000 and coerce(VarType.FLOAT, "1e3") == 1e3


def test_watch_fails_when_the_server_crashes_and_not_when_the_run_ends(
        children: Children, sub_env: dict[str, str]) -> None:
    for crash in (True, False):
        proc, address = children.server("watched")
        watch = children.popen([*LIVETUNE, "watch", "--addr", address])
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("watching run watched")
        if crash:
            proc.kill()
        else:
            assert proc.stdin is not None
            proc.stdin.close()  # the run stops serving on purpose
        _, err = watch.communicate(timeout=30)
        if crash:
            assert watch.returncode != 0 and "crashed or went away" in err, err
        else:
            assert watch.returncode == 0 and "the run ended the stream" in err, err
