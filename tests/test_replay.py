"""Issue 14, replay: a run changed live, at moments nobody planned, rerun from its journal alone.

The originals are ``livetune train`` runs (``train()``, as the command runs it) changed through
a real client while they train: a test callback sends the sets and fires over gRPC when the
run passes chosen steps; when the run *applies* them depends on the safe points and on how
fast the change travels (for PPO it goes through the serving child process). The replay knows
none of that: it reads only the run directory. It must end with the same parameters, bit for
bit, and the same evaluation numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from livetune_rl.client import Client, connect
from livetune_rl.diff import RunDiff
from livetune_rl.journal import ChangeEvent, read_journal
from livetune_rl.replay import REPLAY_EVENT, Change, ReplayError, ReplayPlan, replayed_version
from livetune_rl.replay_cli import OriginalRun, ReplayConfig, ReplayResult, replay
from livetune_rl.train import TrainConfig, train

Step = tuple[int, dict[str, Any] | str]
"""At this step: a set (names to values) or the name of a trigger to fire."""


class ClientAtSteps(BaseCallback):
    """Sets and fires through a real client when ``num_timesteps`` first reaches each step."""

    def __init__(self, run: str, steps: list[Step]) -> None:
        super().__init__()
        self.run, self.steps = run, list(steps)
        self.client: Client | None = None
        self.sent: list[ChangeEvent] = []

    def _on_step(self) -> bool:
        while self.steps and self.num_timesteps >= self.steps[0][0]:
            _, change = self.steps.pop(0)
            if self.client is None:
                self.client = connect(run=self.run)
            if isinstance(change, str):
                self.sent.append(self.client.fire(change))
            else:
                self.sent.extend(self.client.set(change))
        return True

    def _on_training_end(self) -> None:
        if self.client is not None:
            self.client.close()


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the hash of its bytes and its mtime."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            + f"@{p.stat().st_mtime_ns}" for p in sorted(directory.rglob("*")) if p.is_file()}


def differing_parameters(a: Any, b: Any) -> list[str]:
    mine, theirs = a.policy.state_dict(), b.policy.state_dict()
    assert mine.keys() == theirs.keys()
    return [key for key in mine if not torch.equal(mine[key], theirs[key])]


def evaluations(run_dir: Path) -> list[tuple[int | None, dict[str, Any]]]:
    return [(e.step, e.data) for e in read_journal(run_dir / "journal.jsonl")
            if e.kind == "event" and e.name == "evaluate"]


def original_run(root: Path, name: str, config: TrainConfig,
                 steps: list[Step]) -> tuple[Path, Any, list[ChangeEvent]]:
    changes = ClientAtSteps(name, steps)
    model = train(config, callbacks=[changes])
    return root / name, model, changes.sent


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One LIVETUNE_HOME for the module's runs (discovery records stay in it)."""
    path = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVETUNE_HOME", str(path / "home"))
        mp.setenv("LIVETUNE_SERVE", "0")
        yield path


@pytest.fixture(scope="module")
def ppo(home: Path) -> tuple[Path, Any, list[ChangeEvent]]:
    """PPO, 2 subprocess envs, served from a child process (what `livetune train` does)."""
    config = TrainConfig(timesteps=1024, n_envs=2, vec="subproc", seed=3, run_name="ppo",
                         runs_root=str(home / "runs"), bind="127.0.0.1:0", progress=False,
                         eval_every=1000, eval_episodes=2)
    return original_run(home / "runs", "ppo", config, [
        (300, {"learning_rate": 5e-4}),
        (610, {"reward.hungry_thirsty": -0.5}),
        (700, "evaluate"),
        (800, {"learning_rate": 2e-4, "reward.scale": 2.0}),
    ])


@pytest.fixture(scope="module")
def ppo_replay(ppo: tuple[Path, Any, list[ChangeEvent]],
               home: Path) -> tuple[ReplayResult, bool]:
    """The replay of the PPO run (served from a child process too), and whether the
    original's directory was left exactly as it was."""
    run_dir = ppo[0]
    before = fingerprint(run_dir)
    result = replay(ReplayConfig(str(run_dir), run_name="ppo-replay", bind="127.0.0.1:0",
                                 progress=False))
    return result, fingerprint(run_dir) == before


def test_ppo_with_two_subprocess_envs_replays_bit_for_bit(
        ppo: tuple[Path, Any, list[Any]], ppo_replay: tuple[ReplayResult, bool]) -> None:
    run_dir, model, sent = ppo
    journal = read_journal(run_dir / "journal.jsonl")
    applied = {e.applies: e.step for e in journal if e.kind == "applied"}
    # the run took every change the client sent, at steps the test did not choose
    assert all(e.v in applied for e in sent), (sent, applied)
    assert {e.name for e in sent} == {"learning_rate", "reward.hungry_thirsty", "evaluate",
                                      "reward.scale"}

    result, untouched = ppo_replay

    assert untouched  # nothing in the original's directory changed
    assert result.exact and result.replayed == len(sent)
    assert differing_parameters(model, result.model) == []
    assert evaluations(result.run_dir) == evaluations(run_dir)
    assert len(evaluations(run_dir)) == 2  # the fired one and the periodic one
    # the replay's journal: each change, from which original version, applied at the same step
    replayed = read_journal(result.run_dir / "journal.jsonl")
    made = {replayed_version(e.source): e for e in replayed if e.kind in ("set", "fire")}
    assert sorted(made) == sorted(e.v for e in sent)
    steps_then = {e.applies: e.step for e in replayed if e.kind == "applied"}
    for original in sent:
        again = made[original.v]
        assert (again.kind, again.name, again.new) == (original.kind, original.name,
                                                       original.new)
        assert steps_then[again.v] == applied[original.v]
    lineage = json.loads((result.run_dir / "config.json").read_text())["lineage"]
    assert lineage["replay_of"] == str(run_dir.resolve())
    summary = [e.data for e in replayed if e.kind == "event" and e.name == REPLAY_EVENT][-1]
    assert summary["replayed"] == len(sent) and summary["diverged_at"] is None
    same = RunDiff.of(result.original, OriginalRun.read(result.run_dir))  # livetune diff
    assert same.settings == {} and same.divergence is None


def test_the_export_trains_the_same_model_without_livetune(
        ppo_replay: tuple[ReplayResult, bool], tmp_path: Path) -> None:
    """Export as a Python module, train with SB3 alone (the run's env, no registry, no
    server), and end with the replay's parameters."""
    import importlib.util

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS
    from livetune_rl.export import Export
    from livetune_rl.train import FAST_DEFAULTS, _env_factory

    replayed, _ = ppo_replay
    original = replayed.original
    path = tmp_path / "ppo_schedules.py"
    path.write_text(Export.from_run(original).to_python())
    spec = importlib.util.spec_from_file_location("ppo_schedules", path)
    assert spec is not None and spec.loader is not None
    schedules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schedules)
    imports = [line for line in path.read_text().splitlines()
               if line.lstrip().startswith(("import ", "from "))]
    assert imports and not [line for line in imports if "livetune" in line]  # SB3 alone

    config = original.config
    # the env livetune train made for this run: the same factory, weights (in their order:
    # the wrapper sums in it) and seeds; in this process (DummyVecEnv steps the same envs the
    # same way as the run's SubprocVecEnv, without starting processes)
    weights = {**DEFAULT_REWARD_WEIGHTS, **config.reward}
    venv = make_vec_env(_env_factory(config, weights), n_envs=config.n_envs, seed=config.seed,
                        vec_env_cls=DummyVecEnv)
    torch.set_num_threads(config.threads)
    model = PPO("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0,
                **{**FAST_DEFAULTS["ppo"], **config.hyper,
                   "learning_rate": schedules.schedule("learning_rate")})
    try:
        model.learn(schedules.TOTAL_TIMESTEPS,
                    callback=schedules.ScheduleCallback(skip=["learning_rate"]))
    finally:
        venv.close()
    assert differing_parameters(model, replayed.model) == []


def test_dqn_replayed_by_the_command_is_bit_for_bit(home: Path) -> None:
    import subprocess
    import sys

    from stable_baselines3 import DQN

    config = TrainConfig(algo="dqn", timesteps=1000, n_envs=1, vec="dummy", seed=5,
                         run_name="dqn", runs_root=str(home / "runs"), bind="127.0.0.1:0",
                         progress=False, eval_every=0, eval_episodes=2, serve_process=False,
                         hyper={"learning_starts": 200, "buffer_size": 2000,
                                "target_update_interval": 100})
    run_dir, model, sent = original_run(home / "runs", "dqn", config, [
        (301, {"learning_rate": 3e-4}),
        (455, {"exploration_rate": 0.3}),   # applied at the next step, not a rollout end
        (602, {"reward.hungry_not_thirsty": -2.0}),   # re-labels the replay buffer
        (777, "evaluate"),
        (901, "evaluate"),
    ])
    assert len(evaluations(run_dir)) == 2

    command = [sys.executable, "-m", "livetune_rl.cli", "replay", str(run_dir), "--run-name",
               "dqn-replay", "--bind", "127.0.0.1:0", "--no-progress", "--no-serve-process"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr[-2000:]
    assert f"livetune: replay of {run_dir}: 5 change(s) to make again" in out.stdout
    (explore,) = [e for e in sent if e.name == "exploration_rate"]
    (applied,) = [e for e in read_journal(run_dir / "journal.jsonl")
                  if e.kind == "applied" and e.applies == explore.v]
    assert (f"livetune: replay: step {applied.step}: set exploration_rate = 0.3 (original "
            f"v{explore.v}, step {applied.step})") in out.stdout
    assert "livetune: replay: made 5 of 5 change(s) again (exact: every change at its own " \
        "step)" in out.stdout
    replayed = DQN.load(home / "runs" / "dqn-replay" / "checkpoints" / "final" / "model.zip")
    assert differing_parameters(model, replayed) == []
    assert evaluations(home / "runs" / "dqn-replay") == evaluations(run_dir)
    missing = subprocess.run([*command[:4], str(home / "nothing-here")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1
    assert "livetune: error: no config.json in" in missing.stderr


# ------------------------------------------------------------------ divergence: a new branch
class SetAt(BaseCallback):
    """Sets through the registry, as a user at another terminal would, at one step."""

    def __init__(self, registry: Any, step: int, values: dict[str, Any]) -> None:
        super().__init__()
        self.registry, self.step, self.values = registry, step, values

    def _on_step(self) -> bool:
        if self.step is not None and self.num_timesteps >= self.step:
            self.step = None
            self.registry.set(self.values, source="bob@elsewhere")
        return True


def test_a_change_from_outside_makes_the_replay_a_new_branch(
        ppo: tuple[Path, Any, list[Any]], home: Path) -> None:
    from livetune_rl.registry import Registry
    from livetune_rl.sb3.replay import ReplayCallback

    run_dir, _, _ = ppo
    original = OriginalRun.read(run_dir)
    registry = Registry()
    replaying = ReplayCallback(registry, original.plan, until=700)
    config = TrainConfig(**{**original.config.__dict__, "run_name": "branch",
                            "runs_root": str(home / "runs"), "bind": "127.0.0.1:0",
                            "serve_process": False, "vec": "dummy", "timesteps": 768})
    train(config, registry=registry,
          callbacks=[replaying, SetAt(registry, 660, {"n_epochs": 3})])
    # --until: learn() ends at that step; train() writes the final checkpoint there
    final = home / "runs" / "branch" / "checkpoints" / "final" / "live_values.json"
    assert json.loads(final.read_text())["num_timesteps"] == 700
    # the changes the original applied before 662 are made; none after
    assert replaying.diverged is not None and replaying.diverged.source == "bob@elsewhere"
    assert replaying.diverged_at == 662
    assert replaying.replayed == sum(c.step < 662 for c in original.plan.changes) >= 1
    journal = read_journal(home / "runs" / "branch" / "journal.jsonl")
    said = [e for e in journal if e.kind == "event" and e.name == REPLAY_EVENT
            and e.data.get("diverged")]
    assert len(said) == 1 and said[0].step == 662 and said[0].data["name"] == "n_epochs"
    made = [e for e in journal if e.kind in ("set", "fire") and e.source != "bob@elsewhere"]
    assert len(made) == replaying.replayed
    # livetune diff: the settings changed here, and the first change the branch does not share
    found = RunDiff.of(original, OriginalRun.read(home / "runs" / "branch"))
    assert found.settings == {"timesteps": (1024, 768), "vec": ("subproc", "dummy")}
    assert found.divergence is not None
    first_left_out = original.plan.changes[replaying.replayed]
    assert found.divergence.a == first_left_out
    assert found.divergence.b is None  # its n_epochs waited for the rollout end at 768


# ------------------------------------------------------------------ bad input
def _journal(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


START = {"v": 1, "t": 1.0, "kind": "start", "name": "", "data": {"values": {"lr": 0.1}}}


def test_a_torn_end_and_a_record_of_another_version_are_skipped_with_a_warning(
        tmp_path: Path) -> None:
    path = _journal(tmp_path / "journal.jsonl", [
        START,
        {"v": 2, "t": 2.0, "kind": "set", "name": "lr", "new": 0.2, "step": 10},
        {"v": 3, "t": 2.0, "kind": "undo-of-the-future", "name": "lr"},
        {"v": 4, "t": 3.0, "kind": "applied", "name": "lr", "new": 0.2, "step": 64,
         "applies": 2},
    ], tail='{"v": 5, "t": 4.0, "kind": "set", "na')
    plan = ReplayPlan.from_journal(path)
    assert plan.changes == (Change(64, "lr", "set", 0.2, 2),)
    assert len(plan.warnings) == 2
    assert "line 3" in plan.warnings[0] and "unknown kind" in plan.warnings[0]
    assert "its last line" in plan.warnings[1]


def test_sets_applied_together_are_all_replayed_and_pending_ones_are_not(
        tmp_path: Path) -> None:
    path = _journal(tmp_path / "journal.jsonl", [
        START,
        {"v": 2, "t": 2.0, "kind": "set", "name": "lr", "new": 0.2, "step": 10},
        {"v": 3, "t": 2.0, "kind": "set", "name": "lr", "new": 0.1, "step": 12},  # back
        {"v": 4, "t": 2.0, "kind": "fire", "name": "evaluate", "new": 1, "step": 12},
        {"v": 5, "t": 2.0, "kind": "fire", "name": "evaluate", "new": 1, "step": 12,
         "data": {"coalesced": True}},
        {"v": 6, "t": 3.0, "kind": "applied", "name": "lr", "new": 0.1, "step": 64,
         "applies": 3},
        {"v": 7, "t": 3.0, "kind": "applied", "name": "evaluate", "new": 1, "step": 14,
         "applies": 4},
        {"v": 8, "t": 3.0, "kind": "set", "name": "lr", "new": 0.5, "step": 70},
    ])
    plan = ReplayPlan.from_journal(path)
    assert plan.changes == (Change(14, "evaluate", "fire", None, 4),
                            Change(64, "lr", "set", 0.2, 2), Change(64, "lr", "set", 0.1, 3))
    assert plan.unapplied == (Change(70, "lr", "set", 0.5, 8),)
    assert "never applied" in plan.warnings[0]
    assert ReplayPlan.from_journal(path, until=20).changes == plan.changes[:1]


def test_a_resumed_run_is_read_up_to_its_checkpoint_then_from_the_resume(
        tmp_path: Path) -> None:
    path = _journal(tmp_path / "journal.jsonl", [
        START,
        {"v": 2, "t": 2.0, "kind": "set", "name": "lr", "new": 0.2, "step": 10},
        {"v": 3, "t": 3.0, "kind": "applied", "name": "lr", "new": 0.2, "step": 16,
         "applies": 2},
        {"v": 4, "t": 3.5, "kind": "set", "name": "lr", "new": 0.5, "step": 40},
        {"v": 5, "t": 3.6, "kind": "applied", "name": "lr", "new": 0.5, "step": 64,
         "applies": 4},   # after the checkpoint the run resumed from: undone by the resume
        {"v": 6, "t": 4.0, "kind": "start", "name": "", "step": 32,
         "data": {"values": {"lr": 0.2}, "resumed_from": "runs/x/checkpoints/step_32",
                  "num_timesteps": 32}},
        {"v": 7, "t": 4.1, "kind": "set", "name": "lr", "new": 0.2, "source": "resume"},
        {"v": 8, "t": 5.0, "kind": "set", "name": "lr", "new": 0.3, "step": 40},
        {"v": 9, "t": 6.0, "kind": "applied", "name": "lr", "new": 0.3, "step": 64,
         "applies": 8},
    ])
    plan = ReplayPlan.from_journal(path)
    assert plan.changes == (Change(16, "lr", "set", 0.2, 2),) and plan.end_step == 32
    assert plan.resumed is not None and plan.resumed.step == 32 and plan.resumed.until == 32
    assert plan.resumed.plan.changes == (Change(64, "lr", "set", 0.3, 8),)
    assert plan.history() == (Change(16, "lr", "set", 0.2, 2), Change(64, "lr", "set", 0.3, 8))
    (warning,) = plan.warnings  # this journal's resume names no settings
    assert "does not record the settings it started with" in warning
    early = ReplayPlan.from_journal(path, until=20)  # before the resume: no resume to make
    assert early.resumed is None and early.history() == plan.changes


def test_a_knob_this_code_does_not_have_is_refused_before_training(
        ppo: tuple[Path, Any, list[Any]], home: Path, tmp_path: Path) -> None:
    run_dir, _, _ = ppo
    copy = tmp_path / "edited"
    copy.mkdir()
    settings = json.loads((run_dir / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**settings, "vec": "dummy"}))
    records = [e.to_record() for e in read_journal(run_dir / "journal.jsonl")]
    for record in records:  # as if an older livetune had called it lr
        if record["name"] == "learning_rate":
            record["name"] = "learnin_rate"
    _journal(copy / "journal.jsonl", records)
    with pytest.raises(ReplayError, match="no variable named 'learnin_rate'; did you mean "
                                          "learning_rate"):
        replay(ReplayConfig(str(copy), run_name="refused", runs_root=str(tmp_path),
                            bind="127.0.0.1:0", progress=False, serve_process=False))
    assert not (tmp_path / "refused").exists()  # nothing trained, nothing left behind


def test_an_env_that_is_not_installed_is_refused_by_name(tmp_path: Path) -> None:
    config = TrainConfig(env="nosuchpackage:Nothing-v0", run_name="x")
    (tmp_path / "config.json").write_text(json.dumps({**config.__dict__, "token": None}))
    _journal(tmp_path / "journal.jsonl", [START])
    with pytest.raises(ReplayError, match="'nosuchpackage:Nothing-v0', which this machine "
                                          "cannot make"):
        replay(ReplayConfig(str(tmp_path), run_name="y", runs_root=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_a_config_of_neither_command_or_a_missing_journal_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model": "vgg11", "epochs": 2}))
    with pytest.raises(ReplayError, match=r"names no algo.*no arch and dataset"):
        OriginalRun.read(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"algo": "ppo"}))
    with pytest.raises(ReplayError, match="no journal at"):
        OriginalRun.read(tmp_path)
