"""DDP with 2 CPU processes (gloo, launched by torchrun): a value set over gRPC while training
runs is in effect on both ranks from the same iteration on, and ``stop`` ends both together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from livetune_rl import read_journal
from livetune_rl.client import Client


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[str]) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) while waiting for {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(180)
def test_two_ranks_apply_a_live_change_at_the_same_iteration(tmp_path: Path) -> None:
    env = {**os.environ, "LIVETUNE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "livetune_rl.vision.cli", "--dataset", "synthetic", "--arch", "vgg11",
           "--width", "0.0625", "--train-size", "64", "--val-size", "16", "--num-classes",
           "4", "--batch-size", "4", "--epochs", "1000", "--lr", "0.05", "--momentum", "0.9",
           "--sync-every", "2", "--runs-root", str(tmp_path), "--run-name", "ddp",
           "--bind", "127.0.0.1:0", "--no-progress", "--no-tensorboard", "--iteration-log",
           "--no-eval-each-epoch", "--no-checkpoint-each-epoch", "--max-steps", "100000"]
    log = open(tmp_path / "torchrun.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "ddp"
    try:
        server = _wait(lambda: (run / "server.json").exists()
                       and json.loads((run / "server.json").read_text()), 120, "the server",
                       proc)
        with Client(server["address"]) as client:
            _wait(lambda: (client.list().state.step or 0) >= 5, 60, "training", proc)
            event = client.set({"learning_rate": 0.01, "momentum": 0.5})[0]
            _wait(lambda: client.get("learning_rate").applied_version >= event.v, 60,
                  "the change to be applied", proc)
            applied = client.get("learning_rate").applied_step
            _wait(lambda: (client.list().state.step or 0) >= applied + 6, 60, "more steps",
                  proc)
            client.fire("stop")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "torchrun.log").read_text()
    ranks = [_rows(run / f"iterations.rank{r}.jsonl") for r in (0, 1)]
    firsts = []
    for rows in ranks:
        first = next(r["step"] for r in rows if r["lr"] == pytest.approx(0.01))
        firsts.append(first)
        assert all(r["lr"] == pytest.approx(0.05) and r["momentum"] == 0.9
                   for r in rows if r["step"] < first), output
        assert all(r["lr"] == pytest.approx(0.01) and r["momentum"] == 0.5
                   for r in rows if r["step"] >= first), output
    assert firsts[0] == firsts[1] == applied  # same iteration on both ranks, as journaled
    assert applied % 2 == 0  # --sync-every 2: ranks agree at even iterations
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]]  # stopped together
    journal = read_journal(run / "journal.jsonl")
    record = next(e for e in journal if e.kind == "applied" and e.name == "momentum")
    assert record.step == applied and set(record.data) == {"epoch", "iteration", "apply_s"}

    # replayed under torchrun with as many ranks: rank 0 makes each change again where the
    # original applied it and broadcasts it like any change; the same iterations, losses and
    # weights on CPU (gloo sums two ranks' gradients, an order-free sum)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "livetune_rl.cli", "replay", str(run),
               "--run-name", "ddp-replay", "--bind", "127.0.0.1:0", "--no-progress"]
    replayed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    assert replayed.stdout.count("livetune: replay: made 3 of 3 change(s) again (exact") == 1
    again = tmp_path / "ddp-replay"
    for r in (0, 1):
        mine, theirs = _rows(run / f"iterations.rank{r}.jsonl"), \
            _rows(again / f"iterations.rank{r}.jsonl")
        assert mine == theirs
    (checkpoint,) = (run / "checkpoints").glob("stop_step_*.pt")
    import torch

    a = torch.load(checkpoint, weights_only=False)["model"]
    b = torch.load(again / "checkpoints" / checkpoint.name, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    alone = subprocess.run([sys.executable, "-m", "livetune_rl.cli", "replay", str(run),
                            "--run-name", "x"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert alone.returncode == 1
    assert "trained on 2 ranks (torchrun): its replay needs as many" in alone.stderr
