"""Issue 14, fork: a new run from a checkpoint of an old one, and its replay through the parent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import LIVETUNE
from stable_baselines3.common.callbacks import BaseCallback

from livetune_rl.diff import RunDiff
from livetune_rl.fork import ForkConfig, fork
from livetune_rl.journal import read_journal
from livetune_rl.replay import ReplayError
from livetune_rl.replay_cli import OriginalRun, ReplayConfig, replay
from livetune_rl.train import TrainConfig, train


class SetAt(BaseCallback):
    """Sets through the registry at one step, as `livetune set` would."""

    def __init__(self, registry: Any, step: int, values: dict[str, Any]) -> None:
        super().__init__()
        self.registry, self.step, self.values = registry, step, values

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            self.registry.set(self.values, source="alice")
        return True


def test_a_fork_starts_from_the_checkpoint_and_replays_through_its_parent(
        tmp_path: Path) -> None:
    from livetune_rl.registry import Registry

    root = tmp_path / "runs"
    config = TrainConfig(timesteps=512, n_envs=2, vec="dummy", seed=2, run_name="parent",
                         runs_root=str(root), bind="127.0.0.1:0", progress=False,
                         serve_process=False, eval_every=0, checkpoint_every=128,
                         hyper={"n_steps": 64, "batch_size": 64})
    registry = Registry()
    train(config, registry=registry, callbacks=[SetAt(registry, 100, {"learning_rate": 5e-4})])
    parent = root / "parent"
    before = {p: p.read_bytes() for p in parent.rglob("*") if p.is_file()}

    model, run_dir = fork(ForkConfig(str(parent), "step_256", run_name="child",
                                     values={"reward.scale": "2", "n_epochs": "3"},
                                     bind="127.0.0.1:0", progress=False,
                                     serve_process=False))

    assert {p: p.read_bytes() for p in parent.rglob("*") if p.is_file()} == before
    assert model.num_timesteps == 512 and model.n_epochs == 3
    lineage = json.loads((run_dir / "config.json").read_text())["lineage"]
    assert lineage["fork_of"] == str(parent.resolve()) and lineage["step"] == 256
    assert lineage["values"] == {"reward.scale": "2", "n_epochs": "3"}
    journal = read_journal(run_dir / "journal.jsonl")
    assert [e.data["step"] for e in journal if e.kind == "event" and e.name == "fork"] == [256]
    forked = {e.name: e.new for e in journal if e.kind == "set" and e.source == "fork"}
    assert forked == {"reward.scale": 2.0, "n_epochs": 3}
    assert journal[0].kind == "start" and journal[0].data["resumed_from"].endswith("step_256")

    result = replay(ReplayConfig(str(run_dir), run_name="child-replay", bind="127.0.0.1:0",
                                 progress=False, serve_process=False))

    assert result.parent is not None and result.parent.exact and result.exact
    assert result.parent.run_dir == root / "child-replay-parent"
    assert result.parent.model.num_timesteps == 256
    assert result.parent.replayed == 1  # the parent's learning rate at its rollout end
    mine, theirs = model.policy.state_dict(), result.model.policy.state_dict()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == []
    again = json.loads((result.run_dir / "config.json").read_text())["lineage"]
    assert again["replay_of"] == str(run_dir.resolve())
    assert again["fork_of"] == str(result.parent.run_dir.resolve())

    # livetune diff: a fork's history is its parent's up to the fork point, then its own
    found = RunDiff.of(OriginalRun.read(parent), OriginalRun.read(run_dir))
    assert found.divergence is not None and found.divergence.step == 256
    assert found.divergence.a is None and found.divergence.b is not None
    assert found.divergence.b.name == "reward.scale"
    same = RunDiff.of(OriginalRun.read(run_dir), OriginalRun.read(result.run_dir))
    assert same.divergence is None and set(same.settings) == {"resume"}

    with pytest.raises(ReplayError, match=r"nothing-like-it is not a checkpoint of .*; its "
                                          r"checkpoints: final, step_128"):
        fork(ForkConfig(str(parent), "nothing-like-it"))
    with pytest.raises(ReplayError, match="is a checkpoint of another run"):
        fork(ForkConfig(str(parent), str(run_dir / "checkpoints" / "final")))
    assert OriginalRun.read(run_dir).fork is not None and OriginalRun.read(parent).fork is None


def test_a_value_the_run_refuses_leaves_no_fork_behind(tmp_path: Path,
                                                        sub_env: dict[str, str]) -> None:
    from livetune_rl.values import InvalidValueError

    root = tmp_path / "runs"
    train(TrainConfig(timesteps=128, n_envs=1, vec="dummy", run_name="p", runs_root=str(root),
                      bind="127.0.0.1:0", progress=False, serve_process=False, eval_every=0,
                      hyper={"n_steps": 64, "batch_size": 64}))
    with pytest.raises(InvalidValueError, match="n_epochs: 0 is below the minimum 1"):
        fork(ForkConfig(str(root / "p"), "final", values={"n_epochs": "0"}, run_name="bad",
                        bind="127.0.0.1:0", progress=False, serve_process=False))
    assert not (root / "bad").exists()
    # the command: refused before anything is imported or made, in one line
    out = subprocess.run([str(LIVETUNE), "fork", str(root / "p"), "--from", "step_9",
                          "--set", "n_epochs=3"], env=sub_env, text=True, capture_output=True,
                         timeout=60)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"livetune: error: step_9 is not a checkpoint of {root / 'p'} (expected model.zip and "
        "live_values.json in it); its checkpoints: final"]
