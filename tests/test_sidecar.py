"""Out-of-process serving (``serve(out_of_process=True)``, ``livetune train --serve-process``).

The gRPC server, journal and watchers run in a child process over a replica registry; the
training process keeps plain attributes that a receiver thread updates, coalesced.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import GRPCURL, PYTHON, Children, read_address, wait_for

import livetune_rl as lt
from livetune_rl import discovery, sidecar

LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]


def serve_process(registry: lt.Registry, tmp_path: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("journal", tmp_path / "journal.jsonl")
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("run", "sidecar")
    server = lt.serve("127.0.0.1:0", registry=registry, out_of_process=True, **kwargs)
    assert isinstance(server, sidecar.ProcessServer)
    return server


@pytest.fixture
def process_served(tmp_path: Path) -> Iterator[tuple[lt.Registry, Any, lt.Client]]:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, registry=reg)
    lt.LiveVariable("clip", 0.2, min=0.0, max=1.0, deferred=True, registry=reg)
    lt.LiveTrigger("evaluate", max_pending=None, registry=reg)  # every fire counted
    server = serve_process(reg, tmp_path)
    client = lt.connect(server.address)
    try:
        yield reg, server, client
    finally:
        client.close()
        server.stop(grace=0)


def journal_of(tmp_path: Path) -> list[lt.ChangeEvent]:
    return lt.read_journal(tmp_path / "journal.jsonl")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_sets_reach_the_training_variable_coalesced_and_all_journaled(
        process_served: tuple[lt.Registry, Any, lt.Client], tmp_path: Path) -> None:
    reg, server, client = process_served
    lr = reg.variable("lr")
    reg.step = 4096
    acked = [client.set({"lr": i / 1000}).pop().v for i in range(1, 201)]
    wait_for(lambda: lr.value == 0.2)
    assert lr.version == acked[-1] and reg.version >= acked[-1]
    assert lr.source.startswith("ipv4:127.0.0.1:")  # the client's peer address
    server.stop()  # flushes whatever the child still had to write
    sets = [e for e in journal_of(tmp_path) if e.kind == "set"]
    assert [e.v for e in sets] == acked  # every acknowledged set, in version order
    assert [e.new for e in sets] == [i / 1000 for i in range(1, 201)]
    assert {e.step for e in sets} == {4096}  # stamped with the training step (shared memory)
    versions = [e.v for e in journal_of(tmp_path)]
    assert versions == list(range(1, len(versions) + 1))


def test_a_storm_wakes_the_training_process_at_most_about_50_times_a_second(
        tmp_path: Path) -> None:
    reg = lt.Registry()
    x = lt.LiveVariable("x", 0, registry=reg)
    wakeups: list[int] = []
    reg.subscribe(lambda e: wakeups.append(e.v))  # called once per published event here
    server = serve_process(reg, tmp_path, journal=False)
    try:
        with lt.connect(server.address) as client:
            start = time.monotonic()
            for i in range(1, 301):
                client.set({"x": i})
            elapsed = time.monotonic() - start
        wait_for(lambda: x.value == 300)
        assert len(wakeups) <= 300 and len(wakeups) <= 5 + elapsed / sidecar.COALESCE_WINDOW
        assert wakeups == sorted(wakeups)
    finally:
        server.stop(grace=0)


def test_definitions_made_after_serving_are_served(
        process_served: tuple[lt.Registry, Any, lt.Client]) -> None:
    reg, _server, client = process_served
    late = lt.LiveVariable("late", "a", choices=["a", "b"], help="made late", registry=reg)
    save = lt.LiveTrigger("save", registry=reg)
    wait_for(lambda: "late" in {v.name for v in client.list().state.variables})
    assert client.get("late").help == "made late"
    client.set({"late": "b"})
    wait_for(lambda: late.value == "b")
    with pytest.raises(lt.ClientError) as bad:
        client.set({"late": "c"})
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
    client.fire("save")
    wait_for(lambda: save.pending == 1)
    reg.remove("late")
    wait_for(lambda: "late" not in {v.name for v in client.list().state.variables})


def test_applied_records_and_events_reach_journal_and_watchers_with_steps(
        process_served: tuple[lt.Registry, Any, lt.Client], tmp_path: Path) -> None:
    reg, server, client = process_served
    clip = reg.variable("clip")
    seen: list[lt.ChangeEvent] = []
    ready = threading.Event()

    def watch() -> None:
        for item in client.watch():
            if item.snapshot is not None:
                ready.set()
            elif item.change is not None:
                seen.append(item.change)
                if item.change.kind == "event":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10)
    set_v = client.set({"clip": 0.3})[0].v
    wait_for(lambda: clip.version == set_v)
    assert clip.pending and client.get("clip").pending
    local = clip.mark_applied(step=2048)
    assert local is not None and local.step == 2048 and local.applies == set_v
    assert clip.mark_applied(step=2048) is None  # already applied: nothing recorded
    reg.record_event("evaluate", {"mean_fitness": 61.5}, step=2048)
    thread.join(10)
    kinds = [(e.kind, e.name) for e in seen]
    assert kinds == [("set", "clip"), ("applied", "clip"), ("event", "evaluate")]
    assert seen[1].step == 2048 and seen[1].applies == set_v and seen[1].new == 0.3
    assert seen[2].data == {"mean_fitness": 61.5} and seen[2].step == 2048
    assert [e.v for e in seen] == sorted(e.v for e in seen)
    assert not client.get("clip").pending
    server.stop()
    journal = journal_of(tmp_path)
    assert [(e.kind, e.name, e.step) for e in journal[-2:]] == [
        ("applied", "clip", 2048), ("event", "evaluate", 2048)]


def test_a_custom_check_runs_in_the_training_process(tmp_path: Path) -> None:
    reg = lt.Registry()
    rollout = [256]
    batch = lt.LiveVariable(
        "batch_size", 64, min=1, registry=reg,
        check=lambda v: None if v <= rollout[0] else f"larger than the rollout {rollout[0]}")
    server = serve_process(reg, tmp_path)
    try:
        with lt.connect(server.address) as client:
            with pytest.raises(lt.ClientError) as refused:
                client.set({"batch_size": 512})
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert "larger than the rollout 256" in str(refused.value)
            rollout[0] = 1024  # the check sees the training process's state
            client.set({"batch_size": 512})
            wait_for(lambda: batch.value == 512)
            with pytest.raises(lt.ClientError) as below:
                client.set({"batch_size": 0})  # bounds are checked in the serving process
            assert below.value.code is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(grace=0)
    assert [e.new for e in journal_of(tmp_path) if e.kind == "set"] == [512]


def test_an_unresponsive_training_process_gives_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar, "CHECK_TIMEOUT", 0.3)
    reg = lt.Registry()
    var = lt.LiveVariable("n", 1, registry=reg, check=lambda v: time.sleep(1.5))
    server = serve_process(reg, tmp_path)
    try:
        with lt.connect(server.address) as client:
            with pytest.raises(lt.ClientError) as slow:
                client.set({"n": 2})
            assert slow.value.code is grpc.StatusCode.ABORTED
            assert "did not answer" in str(slow.value) and "nothing was changed" in str(
                slow.value)
        time.sleep(1.5)
        assert var.value == 1
    finally:
        server.stop(grace=0)


def test_trigger_fire_is_seen_once_and_its_handling_journaled(
        process_served: tuple[lt.Registry, Any, lt.Client], tmp_path: Path) -> None:
    reg, server, client = process_served
    evaluate = reg.trigger("evaluate")
    fire_v = client.fire("evaluate").v
    client.fire("evaluate")
    wait_for(lambda: evaluate.pending == 2)  # two fires, coalesced or not, none lost
    assert evaluate.fired(step=512) and evaluate.fired(step=512) and not evaluate.fired()
    wait_for(lambda: client.list().state.triggers[0].handled == 2)
    server.stop()
    journal = journal_of(tmp_path)
    handled = [e for e in journal if e.kind == "applied" and e.name == "evaluate"]
    assert [(e.new, e.step) for e in handled] == [(1, 512), (2, 512)]
    assert all(e.applies is not None and e.applies >= fire_v for e in handled)


def test_sets_and_fires_made_by_the_training_process_go_through_the_child(
        process_served: tuple[lt.Registry, Any, lt.Client], tmp_path: Path) -> None:
    reg, server, client = process_served
    lr = reg.variable("lr")
    event = lr.set(0.5, source="schedule")
    assert lr.value == 0.5 and lr.version == event.v
    assert client.get("lr").value == 0.5
    with pytest.raises(lt.InvalidValueError):
        lr.set(2.0)  # validated here, nothing sent
    with pytest.raises(lt.VersionConflictError):
        reg.set({"lr": 0.4}, expected={"lr": event.v - 1})
    fire = reg.fire("evaluate")
    assert reg.trigger("evaluate").pending == 1 and fire.v > event.v
    server.stop()
    journal = journal_of(tmp_path)
    assert [(e.kind, e.name, e.source) for e in journal if e.kind in ("set", "fire")] == [
        ("set", "lr", "schedule"), ("fire", "evaluate", "local")]


def test_the_child_dying_never_hurts_training(tmp_path: Path) -> None:
    reg = lt.Registry()
    lr = lt.LiveVariable("lr", 0.1, registry=reg, deferred=True)
    server = serve_process(reg, tmp_path)
    record = server.record_path
    assert record is not None and record.exists()
    with lt.connect(server.address) as client:
        client.set({"lr": 0.2})
    wait_for(lambda: lr.value == 0.2)
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not server.alive)
    wait_for(lambda: not record.exists())  # `livetune runs` no longer lists a dead address
    assert lr.value == 0.2  # values stay as they were
    assert lr.mark_applied(step=10) is not None  # the loop's records: local, no error
    lr.set(0.3)  # a plain local registry again
    lt.LiveVariable("after", 1, registry=reg)
    assert lr.value == 0.3
    server.stop()


TRAINING = textwrap.dedent("""
    import sys, time
    import livetune_rl as lt
    reg = lt.Registry()
    lt.LiveVariable("x", 0, registry=reg)
    server = lt.serve("127.0.0.1:0", run="victim", registry=reg, out_of_process=True,
                      quiet=True, journal=sys.argv[1])
    print("ADDR", server.address, server.pid, flush=True)
    while True:
        time.sleep(0.05)
""")


def test_kill_9_of_the_training_process_ends_the_child_and_its_record(
        children: Children, tmp_path: Path) -> None:
    trainer = children.popen([PYTHON, "-c", TRAINING, str(tmp_path / "j.jsonl")])
    address = read_address(trainer)
    assert trainer.stdout is not None
    runs = discovery.list_runs()
    assert [(r.run, r.pid, r.address) for r in runs] == [("victim", trainer.pid, address)]
    record = Path(runs[0].path)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "j.jsonl").stat().st_mode) == 0o600
    with lt.connect(address) as client:
        client.set({"x": 5})
        info = client.list()
    assert info.pid == trainer.pid  # clients are told about the training process
    child = [p for p in map(int, _children_of(trainer.pid))]
    assert len(child) == 1
    trainer.kill()
    trainer.wait()
    wait_for(lambda: gone(child[0]), timeout=15)
    assert not record.exists()
    assert [e.new for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "set"] == [5]


def _children_of(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def test_cli_works_the_same_against_a_process_served_run(
        process_served: tuple[lt.Registry, Any, lt.Client], sub_env: dict[str, str]) -> None:
    reg, server, _client = process_served

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LIVETUNE, "--addr", server.address, *args],
                              capture_output=True, text=True, timeout=60, env=sub_env)

    assert cli("set", "lr", "0.25").returncode == 0
    wait_for(lambda: reg.variable("lr").value == 0.25)
    assert "0.25" in cli("get", "lr").stdout
    assert cli("fire", "evaluate").returncode == 0
    listing = cli("ls").stdout
    assert "lr" in listing and "evaluate" in listing
    history = cli("history").stdout
    assert "set lr" in history and "fire evaluate" in history
    runs = subprocess.run([*LIVETUNE, "runs", "--json"], capture_output=True, text=True,
                          timeout=60, env=sub_env)
    assert [r["run"] for r in json.loads(runs.stdout)] == ["sidecar"]


def test_token_is_required_and_checked_in_the_child(tmp_path: Path) -> None:
    reg = lt.Registry()
    lt.LiveVariable("x", 0, registry=reg)
    server = serve_process(reg, tmp_path, token="s3cret-token")
    try:
        with lt.connect(server.address) as anonymous, pytest.raises(lt.ClientError) as denied:
            anonymous.list()
        assert denied.value.code is grpc.StatusCode.UNAUTHENTICATED
        with lt.connect(server.address, token="s3cret-token") as client:
            client.set({"x": 3})
        wait_for(lambda: reg.variable("x").value == 3)
    finally:
        server.stop(grace=0)
    with pytest.raises(lt.ServeError, match="without a token"):
        lt.serve("0.0.0.0:0", registry=lt.Registry(), out_of_process=True, quiet=True)


def test_train_serve_process_applies_a_cli_set_and_resumes(tmp_path: Path,
                                                           sub_env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    cmd = [*LIVETUNE, "train", "--serve-process", "--timesteps", "200000", "--n-envs", "1",
           "--vec", "dummy", "--run-name", "sp", "--runs-root", str(runs), "--eval-every",
           "0", "--no-progress", "--hyper", "n_steps=64", "--hyper", "batch_size=64"]
    trainer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=sub_env)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LIVETUNE, *args], capture_output=True, text=True, timeout=60,
                              env=sub_env)

    try:
        wait_for(lambda: "sp" in cli("runs").stdout, timeout=90, interval=0.3)
        out = cli("set", "--run", "sp", "learning_rate", "1e-4")
        assert out.returncode == 0, out.stderr
        refused = cli("set", "--run", "sp", "batch_size", "100000")  # its check: > rollout
        assert refused.returncode == 1 and "batch_size" in refused.stderr

        def applied() -> bool:
            history = lt.read_journal(runs / "sp" / "journal.jsonl")
            return any(e.kind == "applied" and e.name == "learning_rate" and e.new == 1e-4
                       for e in history)

        wait_for(applied, timeout=60, interval=0.2)
        assert cli("fire", "--run", "sp", "stop").returncode == 0
        output, _ = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 0, output
    assert "served from pid" in output
    journal = lt.read_journal(runs / "sp" / "journal.jsonl")
    step = next(e.step for e in journal if e.kind == "applied" and e.name == "learning_rate")
    assert isinstance(step, int) and step > 0
    final = runs / "sp" / "checkpoints" / "final"
    resumed = subprocess.run(
        [*LIVETUNE, "train", "--resume", str(final), "--serve-process", "--timesteps",
         str(json.loads((final / "live_values.json").read_text())["num_timesteps"] + 64),
         "--no-progress", "--eval-every", "0"],
        capture_output=True, text=True, timeout=180, env=sub_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    journal = lt.read_journal(runs / "sp" / "journal.jsonl")
    versions = [e.v for e in journal]
    assert versions == list(range(1, len(versions) + 1))  # one run, versions continued
    assert [e.kind for e in journal].count("start") == 2


def test_grpcurl_against_a_process_served_run(
        process_served: tuple[lt.Registry, Any, lt.Client], sub_env: dict[str, str]) -> None:
    reg, server, _client = process_served

    def grpcurl(*args: str, data: object = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(GRPCURL), "-plaintext"]
        if data is not None:
            cmd += ["-d", json.dumps(data)]
        return subprocess.run([*cmd, server.address, *args], env=sub_env, text=True,
                              capture_output=True, timeout=30)

    listing = grpcurl("list")
    assert listing.returncode == 0, listing.stderr
    assert "livetune.v1.LiveTune" in listing.stdout.split()
    done = grpcurl("livetune.v1.LiveTune/SetVariables", data={"assignments": [
        {"name": "lr", "value": {"text": "0.125"}}]})
    assert done.returncode == 0, done.stderr
    wait_for(lambda: reg.variable("lr").value == 0.125)


def test_tls_and_unix_sockets_out_of_process(tmp_path: Path, short_tmp: Path) -> None:
    from test_auth import _make_cert

    cert, key = _make_cert(tmp_path)
    reg = lt.Registry()
    lt.LiveVariable("x", 0, registry=reg)
    server = serve_process(reg, tmp_path, tls_cert=cert, tls_key=key, token="tok",
                           journal=False)
    try:
        with lt.Client(server.address, tls_ca=cert, token="tok") as client:
            client.set({"x": 4})
        wait_for(lambda: reg.variable("x").value == 4)
        (run,) = discovery.list_runs()
        assert run.tls and run.token_required
    finally:
        server.stop(grace=0)
    with pytest.raises(lt.ServeError, match="cannot read TLS files"):
        serve_process(lt.Registry(), tmp_path, tls_cert=tmp_path / "none.pem", tls_key=key)
    path = short_tmp / "sp.sock"
    unix = lt.serve(f"unix:{path}", registry=reg, out_of_process=True, journal=False,
                    quiet=True)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with lt.Client(unix.address) as client:
            client.set({"x": 9})
        wait_for(lambda: reg.variable("x").value == 9)
    finally:
        unix.stop()


def test_a_failed_start_gives_the_registry_its_journal_back(tmp_path: Path) -> None:
    """A resumed run's registry journals before serving; if the serving process cannot
    start, the registry commits and journals locally again, in the same journal."""
    from test_auth import _make_cert

    _, key = _make_cert(tmp_path)
    reg = lt.Registry(journal=tmp_path / "own.jsonl")
    lt.LiveVariable("x", 0, registry=reg)
    journal = reg.journal
    with pytest.raises(lt.ServeError, match="cannot read TLS files"):
        lt.serve("127.0.0.1:0", registry=reg, out_of_process=True, quiet=True,
                 discoverable=False, tls_cert=tmp_path / "none.pem", tls_key=key)
    assert reg.journal is journal and not reg.remote
    reg.set({"x": 3})
    assert [(e.kind, e.name, e.new) for e in lt.read_journal(tmp_path / "own.jsonl")][-1] == (
        "set", "x", 3)
