"""Issue 14, replay of resumed runs: a run stopped, resumed from an earlier checkpoint of its
own and changed again is replayed as it happened. The replay trains up to the checkpoint the
original resumed from (the changes the original made after it were undone by the resume, so
they are not made), resumes from its own copy of that checkpoint in the same run directory,
and makes the changes of the resumed part. It ends with the model the original ended with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from livetune_rl.diff import RunDiff
from livetune_rl.journal import read_journal
from livetune_rl.registry import Registry
from livetune_rl.replay import ReplayPlan
from livetune_rl.replay_cli import OriginalRun, ReplayConfig, replay
from livetune_rl.train import TrainConfig, train
from livetune_rl.vision.config import VisionConfig
from livetune_rl.vision.train import Trainer, TrainerCallback


@pytest.fixture(autouse=True)
def _home(livetune_home: Path) -> None:
    """Discovery records of these runs stay in the test's directory."""


class At(BaseCallback):
    """At given steps: a set (source ``alice``) or a fire, through the registry."""

    def __init__(self, registry: Registry, steps: dict[int, dict[str, Any] | str]) -> None:
        super().__init__()
        self.registry, self.steps = registry, dict(steps)

    def _on_step(self) -> bool:
        change = self.steps.pop(self.num_timesteps, None)
        if isinstance(change, str):
            self.registry.fire(change, source="alice")
        elif change is not None:
            self.registry.set(change, source="alice")
        return True


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_a_ppo_run_resumed_from_a_fired_checkpoint_replays_bit_for_bit(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    config = TrainConfig(timesteps=768, n_envs=2, vec="dummy", seed=4, run_name="ppo",
                         runs_root=str(root), bind="127.0.0.1:0", progress=False,
                         serve_process=False, eval_every=0,
                         hyper={"n_steps": 64, "batch_size": 64})
    registry = Registry()
    train(config, registry=registry, callbacks=[At(registry, {
        100: {"learning_rate": 5e-4}, 200: "checkpoint", 300: {"reward.scale": 2.0},
        400: "stop"})])
    checkpoint = root / "ppo" / "checkpoints" / "step_200"
    assert checkpoint.is_dir()
    # resumed from step 200 with a budget of 1024: the set at 300 is undone by the resume
    registry = Registry()
    model = train(dataclasses.replace(config, resume=str(checkpoint), timesteps=1024),
                  registry=registry, callbacks=[At(registry, {
                      310: {"ent_coef": 0.05}, 600: {"learning_rate": 2e-4}})])
    plan = ReplayPlan.from_journal(root / "ppo" / "journal.jsonl")
    assert [c.name for c in plan.changes] == ["learning_rate", "checkpoint"]  # up to 200
    assert plan.resumed is not None and plan.resumed.step == 200
    assert plan.resumed.checkpoint == str(checkpoint)
    assert [c.name for c in plan.resumed.plan.changes] == ["ent_coef", "learning_rate"]
    assert not plan.warnings

    result = replay(ReplayConfig(str(root / "ppo"), run_name="ppo-replay", bind="127.0.0.1:0",
                                 progress=False, serve_process=False))
    assert result.exact and result.replayed == 4
    assert result.model.num_timesteps == model.num_timesteps == 1096  # 200 + 7 rollouts
    assert _differing(_state(model), _state(result.model)) == []
    starts = [e for e in read_journal(result.run_dir / "journal.jsonl") if e.kind == "start"]
    assert len(starts) == 2 and starts[1].data["num_timesteps"] == 200
    diff = RunDiff.of(OriginalRun.read(root / "ppo"), OriginalRun.read(result.run_dir))
    assert diff.divergence is None


class Stop(TrainerCallback):
    """A vision run's user: sets at given steps, and stops at one."""

    def __init__(self, registry: Registry, steps: dict[int, dict[str, Any] | str]) -> None:
        self.registry, self.steps = registry, dict(steps)

    def on_safe_point(self, trainer: Trainer) -> None:
        change = self.steps.pop(trainer.pos.step, None)
        if isinstance(change, str):
            self.registry.fire(change, source="alice")
        elif change is not None:
            self.registry.set(change, source="alice")


def test_a_vision_run_resumed_from_an_epoch_checkpoint_replays_bit_for_bit(
        tmp_path: Path) -> None:
    root = tmp_path / "runs"
    config = VisionConfig(dataset="synthetic", arch="vgg11_bn", width=0.0625, train_size=64,
                          val_size=16, num_classes=4, batch_size=8, epochs=3, seed=3,
                          runs_root=str(root), run_name="vgg", progress=False,
                          tensorboard=False, bind="127.0.0.1:0", serve_process=False)
    registry = Registry()
    Trainer(config, registry=registry, callbacks=[Stop(registry, {
        3: {"learning_rate": 0.02}, 10: {"momentum": 0.8}, 13: "stop"})]).run()
    checkpoint = root / "vgg" / "checkpoints" / "epoch_1.pt"  # step 8, before the momentum
    registry = Registry()
    trainer = Trainer(dataclasses.replace(config, resume=str(root / "vgg" / "checkpoints" /
                                                             "epoch_1.pt")),
                      registry=registry, callbacks=[Stop(registry, {12: {"batch_size": 4}})])
    trainer.run()
    plan = ReplayPlan.from_journal(root / "vgg" / "journal.jsonl")
    assert plan.resumed is not None and plan.resumed.checkpoint == str(checkpoint.resolve())
    assert [c.name for c in plan.changes] == ["learning_rate"]
    assert [c.name for c in plan.resumed.plan.changes] == ["batch_size"]

    result = replay(ReplayConfig(str(root / "vgg"), run_name="vgg-replay", bind="127.0.0.1:0",
                                 progress=False, serve_process=False))
    assert result.exact and result.replayed == 2
    mine = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert _differing(mine, dict(result.model.state_dict())) == []
