"""Faults the control plane must survive without hurting the training run."""

from __future__ import annotations

import contextlib
import errno
import os
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

import livetune_rl as lt
from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb
from livetune_rl._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from livetune_rl.server import TokenBucket


@pytest.fixture
def registry() -> lt.Registry:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, deferred=True, registry=reg)
    lt.LiveTrigger("save", registry=reg)
    return reg


@pytest.fixture
def served(registry: lt.Registry, tmp_path: Path) -> Any:
    server = lt.serve("127.0.0.1:0", registry=registry, journal=tmp_path / "journal.jsonl",
                      run="faults", quiet=True, watcher_timeout=1.0)
    yield server
    server.stop(grace=0)


@pytest.fixture(params=["thread", "child"])
def any_served(request: pytest.FixtureRequest, registry: lt.Registry, tmp_path: Path) -> Any:
    """Served from a thread of this process, then from a child process (``livetune train``)."""
    server = lt.serve("127.0.0.1:0", registry=registry, journal=tmp_path / "journal.jsonl",
                      run="faults", quiet=True, watcher_timeout=1.0,
                      out_of_process=request.param == "child")
    yield server
    server.stop(grace=0)


def _alive(address: str) -> bool:
    with lt.connect(address, timeout=5) as client:
        return client.list().run == "faults"


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_killed_mid_watch_frees_its_slot(served: Any) -> None:
    code = ("import sys, livetune_rl as lt\n"
            "c = lt.connect(sys.argv[1])\n"
            "for item in c.watch():\n"
            "    print('got', flush=True)\n")
    watcher = subprocess.Popen([sys.executable, "-c", code, served.address],
                               stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "got"
    assert _wait(lambda: served.servicer.watchers == 1)
    watcher.send_signal(signal.SIGKILL)
    watcher.wait()
    served.registry.set({"lr": 0.2})  # an event for the dead stream
    assert _wait(lambda: served.servicer.watchers == 0)
    assert _alive(served.address)


def test_client_killed_mid_calls_loses_nothing_acknowledged(any_served: Any, tmp_path: Path
                                                            ) -> None:
    served = any_served
    code = ("import sys, livetune_rl as lt\n"
            "c = lt.connect(sys.argv[1])\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1\n"
            "    c.set({'lr': (i % 100) / 100})\n"
            "    print(i, flush=True)\n")
    setter = subprocess.Popen([sys.executable, "-c", code, served.address],
                              stdout=subprocess.PIPE, text=True)
    assert setter.stdout is not None
    for _ in range(20):
        setter.stdout.readline()
    setter.send_signal(signal.SIGKILL)
    setter.wait()
    assert _alive(served.address)
    journal = lt.read_journal(tmp_path / "journal.jsonl")
    versions = [e.v for e in journal]
    assert versions == list(range(1, len(versions) + 1))  # whole and gap-free
    sets = [e for e in journal if e.kind == "set"]
    assert len(sets) >= 20
    assert _wait(lambda: sets[-1].new == served.registry.variable("lr").value)


def test_watcher_that_never_reads_is_dropped_and_memory_is_bounded(served: Any) -> None:
    channel = grpc.insecure_channel(served.address)
    stream = pb_grpc.LiveTuneStub(channel).Watch(pb.WatchRequest())  # never iterated
    try:
        assert _wait(lambda: served.servicer.watchers == 1)
        served.servicer.watch_buffer = 50
        big = "x" * 4000
        lt.LiveVariable("blob", "", registry=served.registry)
        for i in range(2000):  # far more than the watcher's buffer
            served.registry.set({"blob": f"{i}{big}"})
            if i % 200 == 0:
                time.sleep(0.05)  # let the server notice the lag between bursts
        # it fell behind again and again (or its writes stalled): dropped, slot freed
        assert _wait(lambda: served.servicer.watchers == 0, timeout=15)
        assert _alive(served.address)
    finally:
        stream.cancel()
        channel.close()


def test_lagging_watcher_is_told_and_resyncs(served: Any) -> None:
    served.servicer.watch_buffer = 10
    received: list[str] = []
    with lt.connect(served.address) as client:
        stream = client.watch()
        first = next(stream)
        assert first.snapshot is not None
        for i in range(200):
            served.registry.set({"lr": (i % 100) / 100})
        for item in stream:
            kind = "snapshot" if item.snapshot else "lagged" if item.lagged else "change"
            received.append(kind)
            if kind == "snapshot":
                break
    assert "lagged" in received and received[-1] == "snapshot"
    assert received.index("lagged") == len(received) - 2  # lagged, then a fresh snapshot


def test_garbage_bytes_and_half_open_connections(any_served: Any) -> None:
    served = any_served
    host, port = served.address.rsplit(":", 1)
    idle = []
    for _ in range(50):  # half-open: connected, never speak
        s = socket.create_connection((host, int(port)))
        idle.append(s)
    for payload in (b"\x00" * 64, os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(256)):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(payload)
            s.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                s.recv(1024)
    assert _alive(served.address)
    for s in idle:
        s.close()
    assert _alive(served.address)


@pytest.mark.parametrize("out_of_process", [False, True])
def test_unwritable_journal_at_start_is_a_clear_error(registry: lt.Registry, tmp_path: Path,
                                                      out_of_process: bool) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(lt.ServeError, match="cannot write the journal"):
        lt.serve("127.0.0.1:0", registry=registry, journal=blocker / "journal.jsonl",
                 quiet=True, out_of_process=out_of_process)


def test_journal_failing_later_never_reaches_training(registry: lt.Registry, served: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def full(events: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry.journal, "append", full)
    with lt.connect(served.address) as client, pytest.raises(lt.ClientError) as info:
        client.set({"lr": 0.5})
    assert info.value.code.name == "INTERNAL" and "nothing was changed" in str(info.value)
    assert registry.variable("lr").value == 0.1
    monkeypatch.undo()
    registry.set({"lr": 0.3})
    monkeypatch.setattr(registry.journal, "append", full)
    # the training side: applying and reporting go on even though journaling fails
    assert registry.mark_applied("lr", step=7) is not None
    registry.record_event("evaluate", {"mean": 1.0})
    assert registry.variable("lr").applied_version == registry.variable("lr").version


@pytest.mark.parametrize("out_of_process", [False, True])
def test_unwritable_discovery_directory_warns_and_serves(registry: lt.Registry,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture,
                                                         capfd: pytest.CaptureFixture[str],
                                                         out_of_process: bool) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where a directory should be")
    monkeypatch.setenv("LIVETUNE_HOME", str(blocker))
    with lt.serve("127.0.0.1:0", registry=registry, journal=False, run="faults",
                  quiet=True, out_of_process=out_of_process) as server:
        assert _alive(server.address)
    # out of process the child says it on its stderr
    assert "discovery record" in caplog.text + capfd.readouterr().err


@pytest.mark.parametrize("out_of_process", [False, True])
def test_second_run_asking_for_a_port_in_use(served: Any, capfd: pytest.CaptureFixture[str],
                                             out_of_process: bool) -> None:
    with pytest.raises(lt.ServeError, match="in use"):
        lt.serve(served.address, registry=lt.Registry(), journal=False, quiet=True,
                 out_of_process=out_of_process)
    assert "Failed to add port" not in capfd.readouterr().err  # no gRPC noise before it


def test_rate_limiter_paces_a_tight_loop() -> None:
    limiter = TokenBucket(rate=100, burst=10, max_queue=50)
    waits = [limiter.reserve(0.0) for _ in range(60)]
    assert waits[:10] == [0.0] * 10  # the burst goes through
    assert waits[10] == pytest.approx(0.01) and waits[59] == pytest.approx(0.5)
    assert limiter.reserve(0.0) is not None
    for _ in range(100):
        limiter.reserve(0.0)
    assert limiter.reserve(0.0) is None  # too many waiting: refused
    assert limiter.reserve(10.0) == 0.0  # refilled


def test_server_paces_sets_but_loses_none(registry: lt.Registry, tmp_path: Path) -> None:
    with lt.serve("127.0.0.1:0", registry=registry, journal=tmp_path / "j.jsonl", quiet=True,
                  max_calls_per_second=200) as server:
        acked = [0] * 4

        def storm(index: int) -> None:
            with lt.connect(server.address) as client:
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    # a value no other set uses: every acknowledged set is a change
                    client.set({"lr": (index * 1000 + acked[index] + 1) * 1e-6})
                    acked[index] += 1

        threads = [threading.Thread(target=storm, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    total = sum(acked)
    assert total <= 200 * 1.5 + 50 + 20  # the rate plus the burst (and timing slack)
    sets = [e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "set"]
    assert len(sets) == total


def test_default_pacing_is_100_calls_per_second(registry: lt.Registry) -> None:
    assert lt.serve.__kwdefaults__["max_calls_per_second"] == 100.0
    with lt.serve("127.0.0.1:0", registry=registry, journal=False, quiet=True) as server, \
            lt.connect(server.address) as client:
        client.get("lr")  # connected
        acked, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            client.set({"lr": 0.5})
            acked += 1
    assert 50 <= acked <= 100 * 1.0 + 50 + 10  # the burst, then the rate


@pytest.mark.parametrize("rate", [0.0, -5.0, float("nan"), float("inf")])
@pytest.mark.parametrize("out_of_process", [False, True])
def test_a_bad_pacing_rate_is_refused_before_serving(registry: lt.Registry, rate: float,
                                                     out_of_process: bool) -> None:
    with pytest.raises(lt.ServeError, match="max_calls_per_second must be a positive number"):
        lt.serve("127.0.0.1:0", registry=registry, journal=False, quiet=True,
                 max_calls_per_second=rate, out_of_process=out_of_process)


def test_gil_switch_interval_is_set_while_serving_and_restored(registry: lt.Registry) -> None:
    before = sys.getswitchinterval()
    with lt.serve("127.0.0.1:0", registry=registry, journal=False, quiet=True,
                  gil_switch_interval=0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert sys.getswitchinterval() == pytest.approx(before)
