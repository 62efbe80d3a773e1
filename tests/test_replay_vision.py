"""Issue 14, replay of ``train-vision`` runs: the same changes at the same epoch and iteration.

The originals are ``train-vision`` runs served out of process, as the command serves them, and
changed through a real gRPC client from another thread while they train: when the loop
*applies* each change depends on how fast it travels. A change made by a callback at the first
safe point of an epoch puts one where the step alone is ambiguous (the last safe point of the
epoch before has the same step). The replay reads only the run directory. On this CPU it ends
with the same parameters and buffers, bit for bit, and the same evaluation numbers.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from livetune_rl import Registry
from livetune_rl.client import connect
from livetune_rl.diff import RunDiff
from livetune_rl.journal import ChangeEvent, read_journal
from livetune_rl.replay import ReplayError, ReplayPlan
from livetune_rl.replay_cli import OriginalRun, ReplayConfig, ReplayResult, replay
from livetune_rl.vision.config import VisionConfig
from livetune_rl.vision.train import Trainer, TrainerCallback

Change = tuple[int, dict[str, Any] | str]
"""Once the run's step reaches this: a set (names to values) or the name of a trigger."""


@dataclass
class Original:
    run_dir: Path
    state: dict[str, torch.Tensor]
    sent: list[ChangeEvent] = field(default_factory=list)


class Paced(TrainerCallback):
    """Gives a client on another thread time to act (a few ms per safe point; at ``hold_at``
    it waits for the client to have sent everything, so that a loaded machine cannot end the
    run first), and makes one change itself at the first safe point of epoch 1, as a user
    there would."""

    def __init__(self, registry: Registry, sent_all: threading.Event, hold_at: int) -> None:
        self.registry, self.sent_all, self.hold_at = registry, sent_all, hold_at
        self.done = False

    def on_safe_point(self, trainer: Trainer) -> None:
        pos = trainer.pos
        if not self.done and pos.epoch == 1 and pos.iteration == 0:
            self.done = True
            self.registry.set({"weight_decay": 1e-3}, source="alice@elsewhere")
        if pos.step >= self.hold_at:
            self.sent_all.wait(60)
        time.sleep(0.004)


def client_thread(run: str, registry: Registry, changes: list[Change],
                  sent: list[ChangeEvent], sent_all: threading.Event) -> threading.Thread:
    """Sends ``changes`` through a gRPC client as the run's step passes each one."""

    def script() -> None:
        client = connect(run=run, timeout=30)
        try:
            for step, change in changes:
                deadline = time.time() + 60
                while (registry.step or 0) < step and time.time() < deadline:
                    time.sleep(0.001)
                if isinstance(change, str):
                    sent.append(client.fire(change))
                else:
                    sent.extend(client.set(change))
        finally:
            client.close()
            sent_all.set()

    thread = threading.Thread(target=script, daemon=True)
    thread.start()
    return thread


def train_original(root: Path, name: str, changes: list[Change], **settings: Any) -> Original:
    config = VisionConfig(**{**BASE, "runs_root": str(root), "run_name": name, **settings})
    registry = Registry()
    sent_all = threading.Event()
    last = changes[-1][0]
    trainer = Trainer(config, registry=registry, callbacks=[Paced(registry, sent_all, last + 2)])
    sent: list[ChangeEvent] = []
    thread = client_thread(name, registry, changes, sent, sent_all)
    trainer.run()
    thread.join(10)
    return Original(root / name, {k: v.clone() for k, v in trainer.model.state_dict().items()},
                    sent)


BASE: dict[str, Any] = dict(
    dataset="synthetic", arch="vgg11_bn", width=0.0625, train_size=96, val_size=32,
    num_classes=4, batch_size=8, epochs=3, learning_rate=0.05, seed=7, progress=False,
    tensorboard=False, bind="127.0.0.1:0", set_values={"dropout": 0.3})
"""12 iterations per epoch, 36 in all; served from a child process, ``--set dropout=0.3``."""

CHANGES: list[Change] = [
    (3, {"learning_rate": 0.02, "momentum": 0.8}),
    (7, {"batch_size": 5}),
    (17, {"dropout": 0.1}),
    (19, "evaluate"),
    (21, "lr_drop"),
    (24, "checkpoint"),
    (27, {"learning_rate": 0.03, "batch_size": 8}),
]


def fingerprint(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            + f"@{p.stat().st_mtime_ns}" for p in sorted(directory.rglob("*")) if p.is_file()}


def evaluations(run_dir: Path) -> list[tuple[int | None, dict[str, Any]]]:
    return [(e.step, e.data) for e in read_journal(run_dir / "journal.jsonl")
            if e.kind == "event" and e.name == "evaluate"]


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [key for key in a if not torch.equal(a[key], b[key])]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("replay-vision")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVETUNE_HOME", str(path / "home"))
        yield path


@pytest.fixture(scope="module")
def vgg(home: Path) -> Original:
    return train_original(home / "runs", "vgg", CHANGES)


@pytest.fixture(scope="module")
def vgg_replay(vgg: Original, home: Path) -> tuple[ReplayResult, bool]:
    before = fingerprint(vgg.run_dir)
    result = replay(ReplayConfig(str(vgg.run_dir), run_name="vgg-replay", bind="127.0.0.1:0",
                                 progress=False))
    return result, fingerprint(vgg.run_dir) == before


def test_a_vision_run_changed_live_replays_bit_for_bit(
        vgg: Original, vgg_replay: tuple[ReplayResult, bool]) -> None:
    result, untouched = vgg_replay
    plan = result.original.plan
    # every change arrived while training (the client's 6 sets and 3 fires, alice's set);
    # lr_drop's own set and --set dropout=0.3 are made by the run, so not in the plan
    assert len(vgg.sent) == 9
    assert len(plan.changes) == 10 and not plan.unapplied
    assert all(c.epoch is not None and c.iteration is not None for c in plan.changes)
    (alice,) = [c for c in plan.changes if c.name == "weight_decay"]
    # epoch 0's last safe point had the same step: only the epoch tells them apart
    assert (alice.epoch, alice.iteration) == (1, 0) and alice.step >= 12
    assert result.exact and result.replayed == 10 and not result.start_mismatches
    state = {k: v for k, v in result.model.state_dict().items()}
    assert differing(vgg.state, state) == []
    assert len(evaluations(vgg.run_dir)) >= 4  # one per epoch, the fired one, the last
    assert evaluations(result.run_dir) == evaluations(vgg.run_dir)
    assert untouched
    lineage = json.loads((result.run_dir / "config.json").read_text())["lineage"]
    assert lineage == {"replay_of": str(vgg.run_dir.resolve()), "until": None}


def test_the_replays_journal_places_each_change_where_the_original_did(
        vgg: Original, vgg_replay: tuple[ReplayResult, bool]) -> None:
    result, _ = vgg_replay

    def applied(run_dir: Path) -> list[tuple[str, Any, int | None, int, int]]:
        return [(e.name, e.new, e.step, e.data["epoch"], e.data["iteration"])
                for e in read_journal(run_dir / "journal.jsonl")
                if e.kind == "applied" and "epoch" in e.data]

    assert applied(result.run_dir) == applied(vgg.run_dir)
    diff = RunDiff.of(OriginalRun.read(vgg.run_dir), OriginalRun.read(result.run_dir))
    assert diff.settings == {} and diff.divergence is None
    sources = {e.source for e in read_journal(result.run_dir / "journal.jsonl")
               if e.kind in ("set", "fire")}
    assert sources == {"command line", "lr_drop"} | {
        f"replay of v{c.version}" for c in result.original.plan.changes}


def test_replay_until_an_iteration_ends_there(vgg: Original, home: Path) -> None:
    plan = ReplayPlan.from_journal(vgg.run_dir / "journal.jsonl", until=15)
    result = replay(ReplayConfig(str(vgg.run_dir), run_name="vgg-until", until=15,
                                 bind="127.0.0.1:0", progress=False, serve_process=False))
    assert result.exact and result.replayed == len(plan.changes)
    assert json.loads((result.run_dir / "result.json").read_text())["global_step"] == 15


def test_the_command_replays_a_vision_run_with_a_loader_worker(home: Path) -> None:
    """Random crops and flips drawn in a worker process, batches cut ahead by it, and the
    original on one torch thread: the command's process (torch's default, 2 threads here)
    takes the count from the journal, since another count sums in another order."""
    threads = torch.get_num_threads()
    try:
        original = train_original(home / "runs", "vgg-workers", [
            (4, {"batch_size": 6}), (9, {"learning_rate": 0.01}), (15, "evaluate")],
            dataset="fake", num_classes=4, workers=1, augment=True, epochs=2, threads=1)
    finally:
        torch.set_num_threads(threads)
    start = ReplayPlan.from_journal(original.run_dir / "journal.jsonl").start_data
    assert start["threads"] == 1
    command = [sys.executable, "-m", "livetune_rl.cli", "replay", str(original.run_dir),
               "--run-name", "vgg-workers-replay", "--bind", "127.0.0.1:0", "--no-progress"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(exact: every change at its own step)" in out.stdout
    (lr,) = [e for e in original.sent if e.name == "learning_rate"]
    (applied,) = [e for e in read_journal(original.run_dir / "journal.jsonl")
                  if e.kind == "applied" and e.applies == lr.v]
    assert (f"set learning_rate = 0.01 (original v{lr.v}, step {applied.step} (epoch "
            f"{applied.data['epoch']} iteration {applied.data['iteration']}))") in out.stdout
    replayed = home / "runs" / "vgg-workers-replay"
    last = torch.load(replayed / "checkpoints" / "epoch_2.pt", weights_only=False)
    assert differing(original.state, last["model"]) == []
    assert evaluations(replayed) == evaluations(original.run_dir)


def test_a_run_on_several_ranks_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    run.mkdir()
    config = {k: v for k, v in BASE.items() if k != "set_values"}
    (run / "config.json").write_text(json.dumps({**config, "token_required": False}))
    (run / "journal.jsonl").write_text(json.dumps(
        {"v": 1, "t": 1.0, "kind": "start", "name": "",
         "data": {"values": {"learning_rate": 0.05}, "world_size": 2}}) + "\n")
    original = OriginalRun.read(run)
    assert original.vision and original.config.arch == "vgg11_bn"
    with pytest.raises(ReplayError, match="trained on 2 ranks"):
        replay(ReplayConfig(str(run), run_name="again", runs_root=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("tag", ["epoch_2", "fired"])
def test_a_fork_of_a_vision_run_replays_through_its_parent(vgg: Original, home: Path,
                                                           tag: str) -> None:
    """A fork from the end of an epoch, or from a checkpoint fired mid-epoch, with a value
    set; its replay replays the parent up to there first and ends with the fork's model."""
    from livetune_rl.fork import ForkConfig, fork
    from livetune_rl.lineage import Lineage

    if tag == "fired":
        (fired,) = [e for e in read_journal(vgg.run_dir / "journal.jsonl")
                    if e.kind == "event" and e.name == "checkpoint"
                    and Path(e.data["path"]).name.startswith("step_")]
        tag = Path(fired.data["path"]).stem
    name = f"vgg-fork-{tag}"
    model, run_dir = fork(ForkConfig(str(vgg.run_dir), checkpoint=tag, run_name=name,
                                     values={"learning_rate": "0.01"}, epochs=4,
                                     bind="127.0.0.1:0", progress=False))
    lineage = Lineage.of_run(run_dir)
    assert lineage is not None and lineage.fork is not None
    assert Path(lineage.fork.checkpoint).name == f"{tag}.pt"
    sets = [e for e in read_journal(run_dir / "journal.jsonl") if e.kind == "set"]
    assert ("learning_rate", 0.01, "fork") in [(e.name, e.new, e.source) for e in sets]
    result = replay(ReplayConfig(str(run_dir), run_name=f"{name}-replay", bind="127.0.0.1:0",
                                 progress=False, serve_process=False))
    assert result.parent is not None and result.parent.exact
    assert result.exact, (result, result.parent)
    assert differing({k: v for k, v in model.state_dict().items()},
                     dict(result.model.state_dict())) == []
    assert evaluations(result.run_dir) == evaluations(run_dir)


def test_fork_names_its_budget_and_diff_compares_vision_runs(
        vgg: Original, capsys: pytest.CaptureFixture[str]) -> None:
    from livetune_rl.cli import main
    from livetune_rl.fork import ForkConfig, fork

    with pytest.raises(ReplayError, match="give its budget with --epochs"):
        fork(ForkConfig(str(vgg.run_dir), checkpoint="epoch_1", timesteps=100))
    with pytest.raises(ReplayError, match="epoch_1, epoch_2, epoch_3, last"):
        fork(ForkConfig(str(vgg.run_dir), checkpoint="epoch_9"))
    with pytest.raises(SystemExit, match="is a train-vision run; export writes the schedules"):
        main(["export", str(vgg.run_dir)])
    assert main(["diff", str(vgg.run_dir), str(vgg.run_dir)]) == 0
    assert "changes: the same 10 change(s) at the same steps" in capsys.readouterr().out
    assert main(["history", "--file", str(vgg.run_dir / "journal.jsonl"), "weight_decay"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if " applied " in x]
    assert line.endswith("at epoch 1 iteration 0")  # alice's set, at an epoch's first point


def test_a_knob_the_vision_loop_lacks_is_refused_before_training(
        vgg: Original, tmp_path: Path) -> None:
    copy = tmp_path / "edited"
    copy.mkdir()
    (copy / "config.json").write_text((vgg.run_dir / "config.json").read_text())
    records = [e.to_record() for e in read_journal(vgg.run_dir / "journal.jsonl")]
    for record in records:  # as if another version had called it lr
        if record["name"] == "learning_rate":
            record["name"] = "lr"
    (copy / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ReplayError, match="no variable named 'lr'"):
        replay(ReplayConfig(str(copy), run_name="refused", runs_root=str(tmp_path / "r"),
                            bind="127.0.0.1:0", progress=False))
    assert not (tmp_path / "r" / "refused").exists()  # nothing trained, nothing left


def test_a_set_from_outside_makes_a_vision_replay_a_new_branch(vgg: Original,
                                                               home: Path) -> None:
    from livetune_rl.vision.replay import VisionReplay

    original = OriginalRun.read(vgg.run_dir)
    registry = Registry()
    replaying = VisionReplay(registry, original.plan)

    class Bob(TrainerCallback):
        done = False

        def on_safe_point(self, trainer: Trainer) -> None:
            if trainer.pos.step == 10 and not self.done:
                self.done = True
                registry.set({"weight_decay": 2e-3}, source="bob@elsewhere")

    config = VisionConfig(**{**BASE, "runs_root": str(home / "runs"), "run_name": "branch",
                             "serve": False})
    Trainer(config, registry=registry, callbacks=[replaying, Bob()]).run()
    made_before = sum(c.step <= 10 for c in original.plan.changes)
    assert replaying.replayer.diverged_at == 11  # noticed at the next safe point
    assert replaying.replayer.replayed == made_before >= 1
    said = [e for e in read_journal(home / "runs" / "branch" / "journal.jsonl")
            if e.kind == "event" and e.name == "replay" and e.data.get("diverged")]
    assert len(said) == 1 and said[0].data["by"] == "bob@elsewhere"
