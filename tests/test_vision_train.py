"""The vision training loop: triggers while it runs, the batch-size boundary, checkpoints that
keep momentum buffers, resume, and the command-line parser (which must not import torch)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from livetune_rl import Registry, read_journal  # noqa: E402
from livetune_rl.vision import cli as vision_cli  # noqa: E402
from livetune_rl.vision.checkpoint import load_checkpoint  # noqa: E402
from livetune_rl.vision.train import VisionConfig, train  # noqa: E402


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))


def _config(tmp_path: Path, **kw: Any) -> VisionConfig:
    base: dict[str, Any] = dict(
        dataset="synthetic", arch="vgg11_bn", width=0.0625, train_size=96, val_size=32,
        num_classes=4, batch_size=8, epochs=50, learning_rate=0.05, runs_root=str(tmp_path),
        run_name="run", serve=False, progress=False, tensorboard=False, iteration_log=True,
        max_steps=300, seed=1)
    base.update(kw)
    return VisionConfig(**base)


def _wait_step(reg: Registry, step: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while (reg.step or 0) < step and time.time() < deadline:
        time.sleep(0.001)


def _user(script: Callable[[], object]) -> threading.Thread:
    """Run ``script`` on another thread, as a user changing the run would."""
    thread = threading.Thread(target=script, daemon=True)
    thread.start()
    return thread


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_triggers_and_batch_size_boundary_while_training(tmp_path: Path) -> None:
    reg = Registry()

    def script() -> None:
        _wait_step(reg, 3)
        reg.set({"batch_size": 5, "learning_rate": 0.02})
        reg.fire("evaluate")
        reg.fire("checkpoint")
        _wait_step(reg, (reg.step or 0) + 6)
        reg.fire("stop")

    user = _user(script)
    result = train(_config(tmp_path), registry=reg)
    user.join(5)
    assert result.stopped == "stop" and 9 <= result.global_step < 300
    run = tmp_path / "run"
    journal = read_journal(run / "journal.jsonl")
    applied = {e.name: e for e in journal if e.kind == "applied"}
    s = applied["batch_size"].step
    assert applied["learning_rate"].step == s and s >= 3
    assert set(applied["batch_size"].data) == {"epoch", "iteration", "apply_s"}
    rows = _rows(run / "iterations.rank0.jsonl")
    # stated boundary (num_workers=0): applied before fetching batch s, so batch s is the first
    # cut with the new size; the epoch's last batch may be shorter
    assert all(r["batch"] == 8 for r in rows if r["step"] < s)
    assert rows[s]["batch"] == 5 and rows[s]["lr"] == pytest.approx(0.02)
    assert all(r["lr"] == pytest.approx(0.05) for r in rows if r["step"] < s)
    assert all(r["batch"] <= 5 for r in rows if r["step"] >= s)
    events = [e for e in journal if e.kind == "event"]
    assert [e.name for e in events].count("evaluate") >= 1
    saved = [Path(e.data["path"]) for e in events if e.name == "checkpoint"]
    assert [p.name.split("_")[0] for p in saved] == ["step", "stop"]  # trigger, then stop
    assert all(p.exists() for p in saved)
    assert saved[1].name == f"stop_step_{result.global_step}.pt"
    assert result.evaluation is not None and 0 <= result.evaluation["acc1"] <= 1


def test_batch_size_boundary_with_loader_workers(tmp_path: Path) -> None:
    """With workers the loader has cut ``workers x prefetch_factor`` batches ahead: the new size
    starts that many batches after the iteration it was applied at; workers are not restarted."""
    reg = Registry()

    def script() -> None:
        _wait_step(reg, 3)
        reg.set({"batch_size": 3})
        _wait_step(reg, (reg.step or 0) + 8)
        reg.fire("stop")

    user = _user(script)
    result = train(_config(tmp_path, workers=1, eval_at_end=False, train_size=400),
                   registry=reg)  # 50 batches of 8 per epoch
    user.join(5)
    assert result.stopped == "stop"
    s = next(e.step for e in read_journal(tmp_path / "run" / "journal.jsonl")
             if e.kind == "applied" and e.name == "batch_size")
    rows = _rows(tmp_path / "run" / "iterations.rank0.jsonl")
    prefetched = 1 * 2  # workers x prefetch_factor (DataLoader default 2)
    assert s + prefetched < 50  # within the first epoch (a new epoch re-primes the loader)
    assert [r["batch"] for r in rows[:s + prefetched]] == [8] * (s + prefetched)
    assert rows[s + prefetched]["batch"] == 3


def test_checkpoint_keeps_momentum_and_resume_continues(tmp_path: Path) -> None:
    reg = Registry()
    first = train(_config(tmp_path, max_steps=6, eval_at_end=False,
                          set_values={"momentum": 0.8}), registry=reg)
    assert first.stopped == "max_steps" and first.global_step == 6
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["position"]["step"] == 6
    assert state["live"]["values"]["momentum"] == 0.8
    buffers = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
    assert buffers and all(b is not None for b in buffers)

    second = train(_config(tmp_path, run_name="resumed", max_steps=9, eval_at_end=False,
                           resume=str(tmp_path / "run" / "checkpoints" / "last.pt"),
                           set_values={"learning_rate": 0.01}), registry=Registry())
    assert second.global_step == 9 and second.values["momentum"] == 0.8
    assert second.values["learning_rate"] == 0.01
    rows = _rows(tmp_path / "resumed" / "iterations.rank0.jsonl")
    assert [r["step"] for r in rows] == [6, 7, 8]
    assert all(r["momentum"] == 0.8 and r["lr"] == 0.01 for r in rows)


def test_max_seconds_fires_stop(tmp_path: Path) -> None:
    result = train(_config(tmp_path, max_seconds=0.5, max_steps=0, epochs=1000,
                           eval_at_end=False, iteration_log=False), registry=Registry())
    assert result.stopped == "stop" and result.elapsed_s < 30


def test_parser_via_add_parser() -> None:
    parser = argparse.ArgumentParser(prog="livetune")
    common = argparse.ArgumentParser(add_help=False)
    vision_cli.add_parser(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["train-vision", "--arch", "vgg16_bn", "--dataset", "cifar100",
                              "--data-root", "/data", "--lr", "0.1", "--set", "dropout=0.2",
                              "--milestones", "3,6", "--schedule", "multistep"])
    assert args.func is vision_cli.run
    config = vision_cli._config(args)
    assert (config.arch, config.learning_rate, config.milestones) == ("vgg16_bn", 0.1, [3, 6])
    assert config.set_values == {"dropout": "0.2"}
    assert config.serve_process and config.max_calls_per_second == 100  # the defaults
    thread = vision_cli._config(parser.parse_args(
        ["train-vision", "--no-serve-process", "--max-calls-per-second", "0"]))
    assert not thread.serve_process and thread.max_calls_per_second == 0


def test_cli_constants_match_the_modules() -> None:
    from livetune_rl.vision import config, data, models, schedule

    assert config.ARCHS == models.ARCHS
    assert config.DATASETS == data.DATASETS
    assert config.SCHEDULES == schedule.SCHEDULES


def test_cli_module_does_not_import_torch() -> None:
    code = ("import sys, argparse; from livetune_rl.vision.cli import add_parser; "
            "add_parser(argparse.ArgumentParser().add_subparsers(), None); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_cli_runs_a_tiny_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = vision_cli.main([
        "--dataset", "fake", "--arch", "vgg11", "--width", "0.0625", "--train-size", "16",
        "--val-size", "8", "--batch-size", "8", "--epochs", "1", "--runs-root", str(tmp_path),
        "--run-name", "cli", "--no-serve", "--no-progress", "--phase-file",
        str(tmp_path / "phases.jsonl")])
    assert code == 0
    result = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert result["global_step"] == 2 and result["stopped"] == "completed"
    phases = [json.loads(line)["phase"] for line in (tmp_path / "phases.jsonl").open()]
    assert phases == ["main", "imports", "setup", "serve", "loader_warmup", "first_step"]
    assert (tmp_path / "cli" / "tb").is_dir()
    err = capsys.readouterr().err
    assert "epoch 1 of 1 done (step 2): acc1=" in err  # overall progress, counted from 1


class _FiresOnFirstEvaluation(Registry):
    """Fires ``evaluate`` while the first evaluation is being journaled, so the fire is
    handled at the very next safe point: the same step as that evaluation."""

    fired = False

    def record_event(self, name: str, data: Any, **kw: Any) -> Any:
        event = super().record_event(name, data, **kw)
        if name == "evaluate" and not self.fired:
            self.fired = True
            self.fire("evaluate")
        return event


def test_a_fire_at_an_epoch_end_evaluates_once(tmp_path: Path) -> None:
    reg = _FiresOnFirstEvaluation()
    result = train(_config(tmp_path, train_size=16, epochs=2, max_steps=0), registry=reg)
    assert result.stopped == "completed" and reg.fired
    steps = [e.step for e in read_journal(tmp_path / "run" / "journal.jsonl")
             if e.kind == "event" and e.name == "evaluate"]
    assert len(steps) == len(set(steps)), f"an evaluation was journaled twice: {steps}"
    handled = [e for e in read_journal(tmp_path / "run" / "journal.jsonl")
               if e.kind == "applied" and e.name == "evaluate"]
    assert len(handled) == 1  # the fire was still handled (and journaled as such)
