"""The automated tuner: its decision rule, and a run tuned end to end over gRPC."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.tuner import HillClimbPolicy, PolicyConfig


def fitness(values: dict) -> float:
    """A stand-in for training: fitness appears only once eating is rewarded enough."""
    return 150.0 if values["reward.food"] > 0.4 else 0.0


def registry_with_weights() -> lt.Registry:
    reg = lt.Registry()
    lt.LiveVariable("reward.food", 0.0, min=-1.0, max=1.0, registry=reg)
    lt.LiveVariable("reward.water", 0.0, min=-1.0, max=1.0, registry=reg)
    lt.LiveVariable("learning_rate", 3e-4, min=1e-6, max=1.0, registry=reg)
    lt.LiveVariable("mode", "a", choices=["a", "b"], registry=reg)
    return reg


def test_policy_only_tunes_matching_bounded_numbers() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*", "mode")), reg.state().variables)
    assert set(policy.tunables) == {"reward.food", "reward.water"}
    policy = HillClimbPolicy(PolicyConfig(knobs=("learning_rate",)), reg.state().variables)
    assert policy.tunables["learning_rate"].log  # 6 decades: moves are multiplicative


def test_policy_climbs_to_a_working_reward_and_reverts_failures() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, step=0.25, seed=3),
                             reg.state().variables)
    values = reg.values()
    kinds = []
    for _ in range(40):
        action = policy.observe(fitness(values), values)
        if action is not None:
            kinds.append(action.kind)
            values.update(action.values)
            assert all(-1.0 <= v <= 1.0 for k, v in values.items() if k.startswith("reward"))
    assert values["reward.food"] > 0.4
    assert fitness(values) == 150.0
    assert kinds.count("set") >= 1
    # once the target is met the policy stops acting
    assert policy.observe(150.0, values) is None and policy.observe(150.0, values) is None


def test_policy_respects_target_and_max_actions() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, target=0.0),
                             reg.state().variables)
    values = reg.values()
    assert all(policy.observe(0.0, values) is None for _ in range(5))
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, max_actions=2),
                             reg.state().variables)
    actions = [a for a in (policy.observe(0.0, values) for _ in range(20)) if a is not None]
    assert len(actions) == 2


def delayed_learner(values: dict, since: list[int], lag: int) -> float:
    """Fitness that answers a good reward only ``lag`` evaluations after it was set (as an RL
    learner does): ``since`` holds the evaluation count at which food > 0.4 began."""
    return 150.0 if values["reward.food"] > 0.4 and since[0] >= lag else 0.0


def run_delayed(config: PolicyConfig, lag: int, evaluations: int = 60) -> dict:
    reg = registry_with_weights()
    policy = HillClimbPolicy(config, reg.state().variables)
    values = reg.values()
    since = [0]
    for _ in range(evaluations):
        since[0] = since[0] + 1 if values["reward.food"] > 0.4 else 0
        action = policy.observe(delayed_learner(values, since, lag), values)
        if action is not None:
            values.update(action.values)
    return values


def test_policy_judging_the_whole_window_misses_a_delayed_answer() -> None:
    # the answer comes 4 evaluations after the move: a 2-evaluation window reverts it
    values = run_delayed(PolicyConfig(knobs=("reward.*",), patience=1, settle=2, step=0.5,
                                      seed=1), lag=4)
    assert values["reward.food"] <= 0.4


def test_policy_judging_the_end_of_a_long_window_keeps_a_delayed_answer() -> None:
    values = run_delayed(PolicyConfig(knobs=("reward.*",), patience=1, settle=6, judge=2,
                                      step=0.5, seed=1), lag=4)
    assert values["reward.food"] > 0.4


def test_policy_accepts_early_once_the_last_evaluations_beat_the_baseline() -> None:
    reg = registry_with_weights()
    config = PolicyConfig(knobs=("reward.food",), patience=1, settle=10, judge=2,
                          accept_early=True, step=0.5, min_delta=30.0)
    policy = HillClimbPolicy(config, reg.state().variables)
    values = reg.values()
    assert policy.observe(0.0, values) is None
    action = policy.observe(0.0, values)
    assert action is not None and action.kind == "set"
    values.update(action.values)
    assert policy.observe(0.0, values) is None
    assert policy.trial is not None
    assert policy.observe(50.0, values) is None
    assert policy.trial is not None  # mean of the last 2 is 25: not 30 better yet
    assert policy.observe(50.0, values) is None
    assert policy.trial is None  # kept after 3 of 10 evaluations
    assert values == {**reg.values(), **action.values}


def test_policy_starts_no_trial_the_run_would_end_in() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*",), patience=1, settle=4),
                             reg.state().variables)
    values = reg.values()
    assert policy.observe(0.0, values, step=1000, total=10_000) is None
    # stalled, but 4 more evaluations (4000 steps) from step 7000 would pass 10000
    assert policy.observe(0.0, values, step=7000, total=10_000) is None
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*",), patience=1, settle=4),
                             reg.state().variables)
    assert policy.observe(0.0, values, step=1000, total=10_000) is None
    action = policy.observe(0.0, values, step=2000, total=10_000)
    assert action is not None and action.kind == "set"


def test_policy_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="judge"):
        PolicyConfig(settle=2, judge=3)
    with pytest.raises(ValueError, match="settle"):
        PolicyConfig(settle=0)


def test_policy_credit_move_follows_the_terms_that_come_with_the_metric() -> None:
    reg = registry_with_weights()
    config = PolicyConfig(knobs=("reward.*",), patience=1, settle=2, step=0.25,
                          credit="fitness", credit_min=0.3, credit_rule="correlate")
    policy = HillClimbPolicy(config, reg.state().variables)
    values = reg.values()
    # episodes where the agent ate more had more 'food' time and less 'water' time
    episodes = {"fitness": [0.0, 10.0, 20.0, 30.0, 5.0],
                "reward.food": [0.0, 9.0, 21.0, 29.0, 6.0],
                "reward.water": [50.0, 40.0, 31.0, 20.0, 44.0],
                "unrelated": [1.0, 2.0]}  # a key of another length is ignored
    assert policy.observe(0.0, values, episodes=episodes) is None
    corr = policy.correlations()
    assert corr["reward.food"] > 0.9 and corr["reward.water"] < -0.9
    action = policy.observe(0.0, values, episodes=episodes)
    assert action is not None and action.kind == "set"
    assert action.values == {"reward.food": 0.5, "reward.water": -0.5}
    assert "with fitness" in action.reason
    values.update(action.values)
    policy.observe(0.0, values)
    revert = policy.observe(0.0, values)
    assert revert is not None and revert.kind == "revert"
    assert revert.values == {"reward.food": 0.0, "reward.water": 0.0}
    values.update(revert.values)
    # the credit move failed from here: the next move is another one
    action = policy.observe(0.0, values)
    assert action is not None and action.values != {"reward.food": 0.5, "reward.water": -0.5}


def test_policy_credit_fit_sets_the_weights_that_predict_the_metric() -> None:
    reg = registry_with_weights()
    config = PolicyConfig(knobs=("reward.*",), patience=1, settle=2, credit="fitness")
    policy = HillClimbPolicy(config, reg.state().variables)
    values = reg.values()
    # each episode is 100 steps of 'food' or 'water' time; the metric counts food time only
    food = [0.0, 10.0, 30.0, 5.0, 60.0, 25.0]
    episodes = {"reward.food": food, "reward.water": [100.0 - f for f in food],
                "fitness": [f * 2.0 for f in food]}
    assert policy.observe(0.0, values, episodes=episodes) is None
    fitted = policy.fitted_weights()
    assert fitted["reward.food"] == pytest.approx(2.0, abs=1e-6)
    assert fitted["reward.water"] == pytest.approx(0.0, abs=1e-6)
    action = policy.observe(0.0, values, episodes=episodes)
    assert action is not None and action.kind == "set"
    assert action.values == {"reward.food": 1.0}  # scaled to the bound; water stays at 0
    assert "least-squares fit of fitness" in action.reason


@pytest.mark.parametrize("explore", [0.1, 0.4])
def test_credit_fit_on_hungry_thirsty_returns_the_fitness_reward_whatever_the_data(
        explore: float) -> None:
    """The fitness identity: the reward terms are a one-hot of the pre-step state and fitness
    counts the steps after which the agent is not hungry, so per episode
    ``fitness = not_hungry_thirsty + not_hungry_not_thirsty - (sum of all terms) / 200 +
    [ate on the last step]``. A least-squares fit of fitness on the term totals therefore
    returns about the fitness reward (0, 0, 1, 1) (the last-step term is the only misfit),
    whatever policy made the episodes: the credit move writes the objective as the reward;
    it finds nothing in the data."""
    import random

    from livetune_rl.envs import REWARD_COMPONENTS, HungryThirstyEnv
    from livetune_rl.envs.value_iteration import greedy_policy

    layout = ((0, 0), (3, 3))
    good = greedy_policy({"not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0}, layout)
    rng = random.Random(0)
    env = HungryThirstyEnv(layout=layout, noise_std=0.0)
    names = [f"reward.{c}" for c in REWARD_COMPONENTS]
    episodes: dict[str, list[float]] = {n: [] for n in [*names, "fitness"]}
    for i in range(60):
        _, info = env.reset(seed=i)
        totals = dict.fromkeys(REWARD_COMPONENTS, 0.0)
        done = False
        while not done:
            (x, y), h, t = info["position"], info["hungry"], info["thirsty"]
            action = (rng.randrange(6) if rng.random() < explore
                      else int(good[y * 4 + x, int(h), int(t)]))
            _, _, _, done, info = env.step(action)
            for c, v in info["reward_components"].items():
                totals[c] += v
        for c in REWARD_COMPONENTS:
            episodes[f"reward.{c}"].append(totals[c])
        episodes["fitness"].append(float(info["fitness"]))
    reg = lt.Registry()
    for n in names:
        lt.LiveVariable(n, 0.0, min=-1.0, max=1.0, registry=reg)
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*",), credit="fitness"),
                             reg.state().variables)
    policy.observe(0.0, reg.values(), episodes=episodes)
    fitted = policy.fitted_weights()
    top = fitted["reward.not_hungry_not_thirsty"]
    assert fitted["reward.not_hungry_thirsty"] == pytest.approx(top, rel=0.1)
    assert abs(fitted["reward.hungry_thirsty"]) < 0.05 * top
    assert abs(fitted["reward.hungry_not_thirsty"]) < 0.05 * top


def test_policy_moves_width_variables_together() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*",), patience=1, settle=1, width=0),
                             reg.state().variables)
    values = reg.values()
    policy.observe(0.0, values)
    action = policy.observe(0.0, values)
    assert action is not None and set(action.values) == {"reward.food", "reward.water"}


def test_tuner_process_tunes_a_live_run_through_the_public_api(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))
    reg = registry_with_weights()
    server = lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "journal.jsonl",
                      run="tuned", quiet=True)
    stop = threading.Event()

    def training() -> None:  # reports evaluations like LiveTuneCallback does
        step = 0
        while not stop.is_set():
            step += 1000
            reg.step = step
            reg.record_event("evaluate", {"mean_fitness": fitness(reg.values())}, step=step)
            time.sleep(0.1)

    thread = threading.Thread(target=training, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "livetune_rl.cli", "tune", "--addr", server.address,
             "--patience", "1", "--settle", "1", "--seconds", "6", "--target", "100",
             "--log", str(tmp_path / "tuner.jsonl")],
            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    finally:
        stop.set()
        thread.join()
        server.stop(grace=0)
    assert out.returncode == 0, out.stderr
    assert reg.variable("reward.food").value > 0.4, out.stdout
    sets = [e for e in lt.read_journal(tmp_path / "journal.jsonl") if e.kind == "set"]
    assert sets and all("ipv4:127.0.0.1" in e.source for e in sets)  # came over gRPC
    assert all("(claims 'livetune-tune " in e.source for e in sets)  # and says who it was
    assert (tmp_path / "tuner.jsonl").read_text().count('"action"') == len(sets)
    assert "changes made" in out.stdout
