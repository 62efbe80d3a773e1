"""Issue 14, export: a run's changes as piecewise-constant schedules keyed by step.

The round trip (export, train with SB3 alone, same parameters as the replay) is in
tests/test_replay.py, next to the run it exports."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from conftest import LIVETUNE

from livetune_rl.export import Export, Schedule
from livetune_rl.replay import Change, ReplayPlan
from livetune_rl.train import TrainConfig

PLAN = ReplayPlan(
    (Change(0, "reward.scale", "set", 2.0, 3),
     Change(512, "learning_rate", "set", 5e-4, 4),
     Change(512, "learning_rate", "set", 4e-4, 5),   # two sets applied together: the last
     Change(700, "evaluate", "fire", None, 6),
     Change(1024, "learning_rate", "set", 2e-4, 8)),
    start_values={"learning_rate": 1e-3, "gamma": 0.99, "reward.a": -1.0,
                  "reward.scale": 1.0})
EXPORT = Export.from_plan(PLAN, run="r", algo="ppo", env="CartPole-v1", total_timesteps=2048)


def test_each_changed_knob_and_every_reward_weight_gets_a_schedule() -> None:
    assert EXPORT.schedules == (
        Schedule("learning_rate", 1e-3, ((512, 4e-4), (1024, 2e-4)), "rollout"),
        Schedule("reward.a", -1.0, (), "step"),
        Schedule("reward.scale", 1.0, ((0, 2.0),), "step"))
    lr = EXPORT.schedules[0]
    assert [lr.value_at(s) for s in (0, 511, 512, 1023, 1024, 5000)] == [
        1e-3, 1e-3, 4e-4, 4e-4, 2e-4, 2e-4]
    assert EXPORT.fires == {"evaluate": (700,)}


def test_json_and_yaml_hold_the_same_table() -> None:
    yaml = pytest.importorskip("yaml")
    from_json = json.loads(EXPORT.to_json())
    from_yaml = yaml.safe_load(EXPORT.to_yaml())
    for table in from_yaml["schedules"].values():  # YAML reads the step keys as numbers
        table["changes"] = {str(k): v for k, v in table["changes"].items()}
    assert from_json == from_yaml == EXPORT.to_dict()
    assert from_json["schedules"]["learning_rate"]["changes"] == {"512": 4e-4, "1024": 2e-4}


def _module(tmp_path: Path, export: Export) -> Any:
    path = tmp_path / "schedules.py"
    path.write_text(export.to_python())
    spec = importlib.util.spec_from_file_location("schedules", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_python_module_gives_sb3_schedules_by_step(tmp_path: Path) -> None:
    module = _module(tmp_path, EXPORT)
    lr = module.schedule("learning_rate")
    # SB3 asks with progress_remaining = 1 - num_timesteps / total_timesteps
    assert [lr(1.0 - s / 2048) for s in (0, 510, 512, 1024, 2048)] == [
        1e-3, 1e-3, 4e-4, 2e-4, 2e-4]
    linear = module.schedule("learning_rate", before=lambda p: p)  # the run's own, at first
    assert (linear(0.9), linear(1.0 - 512 / 2048)) == (0.9, 4e-4)  # step 205, then 512
    assert module.FIRES == {"evaluate": [700]} and module.TOTAL_TIMESTEPS == 2048


def test_the_callback_applies_each_change_at_its_safe_point(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    module = _module(tmp_path, Export.from_plan(
        ReplayPlan((Change(64, "gamma", "set", 0.9, 2), Change(70, "n_epochs", "set", 3, 3),
                    Change(66, "learning_rate", "set", 5e-4, 4))),
        run="r", algo="ppo", env="CartPole-v1", total_timesteps=256))
    seen: list[tuple[int, float, int]] = []

    class Watch(module.ScheduleCallback):  # type: ignore[name-defined,misc]
        def _on_rollout_end(self) -> None:
            super()._on_rollout_end()
            seen.append((self.num_timesteps, self.model.gamma, self.model.n_epochs))

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(192, callback=Watch())
    # applied at the first rollout end at or after each step, the buffer's gamma too
    assert seen == [(64, 0.9, 1), (128, 0.9, 3), (192, 0.9, 3)]
    assert model.rollout_buffer.gamma == 0.9
    assert model.policy.optimizer.param_groups[0]["lr"] == 5e-4


def _run_dir(path: Path) -> Path:
    path.mkdir()
    config = {**asdict(TrainConfig(timesteps=2048, run_name="r")), "token_required": False}
    del config["token"]
    (path / "config.json").write_text(json.dumps(config))
    records = [
        {"v": 1, "t": 1.0, "kind": "start", "name": "",
         "data": {"values": {"learning_rate": 0.001, "reward.scale": 1.0}}},
        {"v": 2, "t": 2.0, "kind": "set", "name": "learning_rate", "old": 0.001, "new": 0.0005,
         "source": "alice", "step": 300},
        {"v": 3, "t": 3.0, "kind": "applied", "name": "learning_rate", "new": 0.0005,
         "source": "training", "step": 512, "applies": 2},
    ]
    (path / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records)
                                        + '{"v": 4, "t"')
    return path


def test_the_command_prints_or_writes_and_leaves_the_run_as_it_was(
        tmp_path: Path, sub_env: dict[str, str]) -> None:
    run = _run_dir(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    out = subprocess.run([str(LIVETUNE), "export", str(run), "--format", "json"],
                         env=sub_env, text=True, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["schedules"]["learning_rate"] == {
        "cadence": "rollout", "start": 0.001, "changes": {"512": 0.0005}}
    assert "warning:" in out.stderr and "its last line is torn" in out.stderr
    target = tmp_path / "lr.yaml"
    out = subprocess.run([str(LIVETUNE), "export", str(run), "-o", str(target)],
                         env=sub_env, text=True, capture_output=True, timeout=60)
    assert out.returncode == 0 and "      512: 0.0005" in target.read_text()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    bad = subprocess.run([str(LIVETUNE), "export", str(tmp_path / "nothing")], env=sub_env,
                         text=True, capture_output=True, timeout=60)
    assert bad.returncode == 1 and "no config.json in" in bad.stderr


def test_diff_names_the_settings_and_the_first_divergence(tmp_path: Path,
                                                          sub_env: dict[str, str]) -> None:
    a = _run_dir(tmp_path / "a")
    b = _run_dir(tmp_path / "b")
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config, "seed": 7, "run_name": "b"}))
    with open(b / "journal.jsonl", "a") as journal:
        journal.write('\n{"v": 5, "t": 5.0, "kind": "fire", "name": "evaluate", "new": 1, '
                      '"step": 600}\n{"v": 6, "t": 6.0, "kind": "applied", "name": "evaluate", '
                      '"new": 1, "step": 602, "applies": 5}\n')
    out = subprocess.run([str(LIVETUNE), "diff", str(a), str(b)], env=sub_env, text=True,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == [
        "settings: seed: 0 -> 7",
        "changes: first divergence at step 602: A: no more changes; B: fire evaluate at step "
        "602 (v5)"]
    same = subprocess.run([str(LIVETUNE), "diff", str(a), str(a)], env=sub_env, text=True,
                          capture_output=True, timeout=60)
    assert same.stdout.splitlines()[1:] == ["settings: the same training settings",
                                            "changes: the same 1 change(s) at the same steps"]
