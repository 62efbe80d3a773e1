"""Discovery records: private files, dead-run cleanup, lookup by name, two runs at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, Children, read_address

import livetune_rl as lt
from livetune_rl import discovery
from livetune_rl.discovery import RunNotFoundError, RunRecord


def _dead_pid() -> int:
    proc = subprocess.Popen([PYTHON, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_state_home_follows_livetune_home(livetune_home: Path) -> None:
    assert discovery.state_home() == livetune_home
    assert discovery.runs_dir() == livetune_home / "runs"


def test_served_run_writes_private_record_and_removes_it_at_stop(
        livetune_home: Path, start_server: Callable[..., Any]) -> None:
    old = os.umask(0o000)  # a permissive umask must not make the records readable by others
    try:
        server = start_server(lt.Registry(), run="disco", journal=False)
    finally:
        os.umask(old)
    runs_dir = livetune_home / "runs"
    assert stat.S_IMODE(runs_dir.stat().st_mode) == 0o700
    assert server.record_path is not None
    assert stat.S_IMODE(server.record_path.stat().st_mode) == 0o600
    data = json.loads(server.record_path.read_text())
    assert data["run"] == "disco" and data["address"] == server.address
    assert data["pid"] == os.getpid() and data["token_required"] is False
    (run,) = discovery.list_runs()
    assert run.run == "disco" and run.alive() and run.uptime >= 0
    server.stop()
    assert not server.record_path.exists() and discovery.list_runs() == []


def test_existing_runs_dir_is_made_private(livetune_home: Path) -> None:
    (livetune_home / "runs").mkdir(parents=True, mode=0o755)
    os.chmod(livetune_home / "runs", 0o755)
    discovery.write_record(RunRecord("r", "127.0.0.1:1", os.getpid(), time.time()))
    assert stat.S_IMODE((livetune_home / "runs").stat().st_mode) == 0o700


def test_dead_pid_and_reused_pid_records_are_cleaned_junk_is_left(livetune_home: Path) -> None:
    now = time.time()
    dead = discovery.write_record(RunRecord("dead", "127.0.0.1:1", _dead_pid(), now))
    reused = discovery.write_record(RunRecord(
        "reused", "127.0.0.1:2", os.getpid(), now,
        pid_start_ticks=(discovery.process_start_ticks(os.getpid()) or 0) + 1))
    junk = livetune_home / "runs" / "junk.json"
    junk.write_text("{not json")
    alive = discovery.write_record(RunRecord(
        "alive", "127.0.0.1:3", os.getpid(), now,
        pid_start_ticks=discovery.process_start_ticks(os.getpid())))
    assert discovery.list_runs(cleanup=False) != []
    assert dead.exists()
    runs = discovery.list_runs()
    assert [r.run for r in runs] == ["alive"]
    assert not dead.exists() and not reused.exists() and alive.exists()
    assert junk.exists()  # not provably a stale record of ours: skipped, never deleted


def test_find_run(livetune_home: Path) -> None:
    with pytest.raises(RunNotFoundError, match="no live run found"):
        discovery.find_run()
    now = time.time()
    discovery.write_record(RunRecord("a", "127.0.0.1:1", os.getpid(), now))
    assert discovery.find_run().address == "127.0.0.1:1"
    child = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(30)"])
    try:
        discovery.write_record(RunRecord("b", "127.0.0.1:2", child.pid, now + 1))
        discovery.write_record(RunRecord("a", "127.0.0.1:3", child.pid, now + 2))
        with pytest.raises(RunNotFoundError, match="several runs are live"):
            discovery.find_run()
        assert discovery.find_run("b").address == "127.0.0.1:2"
        with pytest.raises(RunNotFoundError, match=r"several live runs are named 'a'"):
            discovery.find_run("a")
        assert discovery.find_run(str(os.getpid())).address == "127.0.0.1:1"
        with pytest.raises(RunNotFoundError, match=r"no live run named 'zz' \(live runs: a, b\)"):
            discovery.find_run("zz")
    finally:
        child.kill()
        child.wait()


@pytest.mark.timeout(60)
def test_two_servers_started_at_once_both_work_and_are_listed(children: Children) -> None:
    # Both use the default address: at most one gets 127.0.0.1:50051, the other picks a port.
    procs = [children.popen([PYTHON, "-c", _CHILD, name], stdin=subprocess.PIPE)
             for name in ("one", "two")]
    addresses = [read_address(p) for p in procs]
    assert addresses[0] != addresses[1]
    runs = {r.run: r for r in discovery.list_runs()}
    assert set(runs) == {"one", "two"}
    assert {runs["one"].address, runs["two"].address} == set(addresses)
    for name, address in zip(("one", "two"), addresses, strict=True):
        with lt.connect(run=name) as client:
            assert client.address == address
            client.set({"x": 7 if name == "one" else 8})
            assert client.get("x").value == (7 if name == "one" else 8)
            assert client.list().run == name
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()  # clean stop: the record goes away
        p.wait(timeout=15)
    assert discovery.list_runs() == []


_CHILD = """
import sys, livetune_rl as lt
reg = lt.Registry()
lt.LiveVariable("x", 0, registry=reg)
server = lt.serve(run=sys.argv[1], registry=reg, journal=False)
print("ADDR", server.address, flush=True)
sys.stdin.read()
server.stop()
"""
