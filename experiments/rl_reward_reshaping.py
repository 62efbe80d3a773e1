"""Reward reshaping while the agent learns, on Hungry-Thirsty: fixed vs restart vs live vs oracle.

The LiveTune paper reports that users who change the reward while the agent learns reach 5x the
baseline. This script measures that claim with an *automated* user: ``livetune tune``, run as a
separate process that sees only the run's gRPC watch stream (the ``evaluate`` events and the
values) and acts only with ``SetVariables`` (compare-and-set) through the public API.

Four arms, each trained with the same SB3 PPO settings, the same seeds and the same env-step
budget, on one food/water layout per seed (every env copy and the evaluation env share
``layout_seed=seed``):

* **fixed**: the designer's first reward, :data:`FIXED_REWARD`, for the whole run.
* **live**: the same start; the tuner process changes the four reward weights (within -1..1)
  when the evaluated fitness stalls, keeps what helps and reverts what does not.
* **oracle**: the reward the live run *ended* with, from step 0 (the best case for that reward).
* **restart**: the designer watches the fixed run and, at the check point where the live run's
  tuner set its final reward, stops and restarts from scratch with that reward. It pays the
  steps already spent plus the measured restart time, converted to env steps at the measured
  steps/s of the run it restarts (and also added to its wall time). One restart, with the
  right reward handed over: the best case for restarting, so ``live / restart`` is
  conservative.

A reference row that is not an arm, **aligned**, trains the env's fitness-aligned reward
(:data:`ALIGNED_REWARD`) from step 0: the headroom a corrected reward has on this budget.

The restart arm's fresh run is, step for step, the oracle run of the same seed (same seed, same
reward, from scratch; SB3 on CPU is deterministic and the evaluations do not touch the training
random state), so it is read off the oracle run: a held-out evaluation is taken in the oracle
run at exactly ``budget - restart_step - restart_cost_steps`` steps, and the oracle's curve is
shifted right by ``restart_step + restart_cost_steps``.

Metric: fitness (steps not hungry in a 200-step episode), the designer's true objective,
evaluated with the deterministic policy on held-out episodes (an eval env seeded apart from the
training envs): every ``eval_every`` steps for the curves (these are what the tuner sees), and
on ``final_eval_episodes`` more episodes at the end for the table.

Run::

    python experiments/rl_reward_reshaping.py            # full: 5 seeds x 4 arms
    python experiments/rl_reward_reshaping.py --quick    # CI: checks the pipeline, < 2 min

Outputs (``--out``, default ``experiments/results``; ``_quick`` is added in quick mode):
``rl_reward_reshaping.json`` (every number), ``rl_reward_reshaping.md`` (the table),
``rl_reward_reshaping.png`` (fitness vs env steps, mean and 95% band), and
``rl_reward_reshaping_journals/`` (each run's journal; the live runs' tuner logs), with
TensorBoard logs under ``rl_reward_reshaping_tb/``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COMPONENTS: tuple[str, ...] = (
    "hungry_thirsty", "hungry_not_thirsty", "not_hungry_thirsty", "not_hungry_not_thirsty")
ARMS: tuple[str, ...] = ("fixed", "restart", "live", "oracle")
REFERENCE = "aligned"
"""Not an arm: the fitness-aligned reward (:data:`ALIGNED_REWARD`) from the start, the
headroom a corrected reward has on this budget (the oracle equals it only if the tuner finds
it)."""
ROWS: tuple[str, ...] = (*ARMS, REFERENCE)

FIXED_REWARD: dict[str, float] = {
    "hungry_thirsty": -1.0,
    "hungry_not_thirsty": -0.05,
    "not_hungry_thirsty": -1.0,
    "not_hungry_not_thirsty": 0.0,
}
"""The designer's first reward: "mostly punish thirst".

Why a designer tries it: the agent can only eat when it is *not thirsty*, so thirst looks like
the real obstacle. Punishing every thirsty step hard (-1) should teach the agent to keep its
thirst away, a small hunger penalty (-0.05) nudges it to eat, and a sated, not thirsty agent
gets 0, the best value. Research.md section 2 warns of exactly this reward: the agent learns to
stay at the water and drink, and fitness (steps not hungry) can stay at 0.
"""

ALIGNED_REWARD: dict[str, float] = {
    "hungry_thirsty": 0.0,
    "hungry_not_thirsty": 0.0,
    "not_hungry_thirsty": 1.0,
    "not_hungry_not_thirsty": 1.0,
}
"""The env's own, fitness-aligned reward: +1 on every step begun not hungry (the reference
row, and the reward the shared PPO settings were tuned on)."""

REWARD_BOUNDS: tuple[float, float] = (-1.0, 1.0)
"""Bounds of each live reward weight (the paper's UI sliders); the tuner moves within them."""

T95: dict[int, float] = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
                         8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}
"""Two-sided 95% Student t quantiles by degrees of freedom (1.96 beyond 30)."""


@dataclass
class Args:
    """Arguments of the experiment (every field is a ``--flag``)."""

    seeds: int = 5
    """number of seeds per arm (seeds 0..seeds-1; seed s also picks layout s)"""
    total_timesteps: int = 300_000
    """env-step budget of every arm"""
    n_envs: int = 4
    """parallel envs (DummyVecEnv) per run"""
    eval_every: int = 4_096
    """evaluate every N env steps (what the tuner sees)"""
    eval_episodes: int = 10
    """episodes per periodic evaluation"""
    final_eval_episodes: int = 50
    """held-out episodes of the end-of-budget evaluation (the table)"""
    threshold: float = 50.0
    """fitness threshold for 'steps / wall time to threshold'"""
    fitness_floor: float = 1.0
    """ratios divide by max(denominator, floor): one not-hungry step in 200"""
    workers: int = 2
    """worker processes (each uses one torch thread)"""
    restart_trials: int = 3
    """fresh-process starts timed to measure the restart cost (median)"""
    # --- the shared PPO settings (tuned once on the oracle reward, see docs/experiments.md)
    learning_rate: float = 1e-3
    ent_coef: float = 0.01
    n_steps: int = 256
    batch_size: int = 128
    n_epochs: int = 10
    gamma: float = 0.99
    # --- the tuner (``livetune tune``) settings
    tuner_patience: int = 2
    tuner_settle: int = 16
    tuner_min_delta: float = 1.0
    tuner_step: float = 0.25
    tuner_judge: int = 3
    tuner_width: int = 1
    tuner_credit: str = "fitness"
    tuner_credit_min: float = 0.1
    tuner_credit_rule: str = "fit"
    tuner_metric: str = "mean_fitness"
    tuner_accept_early: bool = True
    tuner_max_actions: int = 50
    out: str = str(REPO / "experiments" / "results")
    """output folder"""
    quick: bool = False
    """CI mode: 2 seeds, a tiny budget; checks the pipeline and the outputs, not the ratios"""
    hyper_extra: dict[str, Any] = field(default_factory=dict)

    def apply_quick(self) -> None:
        """Shrink everything for the CI check."""
        self.seeds, self.total_timesteps, self.eval_every = 2, 8_192, 1_024
        self.eval_episodes, self.final_eval_episodes, self.restart_trials = 2, 4, 1
        self.tuner_patience, self.tuner_settle, self.tuner_judge = 1, 2, 1
        self.threshold = 5.0

    @property
    def prefix(self) -> str:
        return "rl_reward_reshaping_quick" if self.quick else "rl_reward_reshaping"

    def hyper(self) -> dict[str, Any]:
        """Keyword arguments of PPO shared by every arm."""
        return {"learning_rate": self.learning_rate, "ent_coef": self.ent_coef,
                "n_steps": self.n_steps, "batch_size": self.batch_size,
                "n_epochs": self.n_epochs, "gamma": self.gamma, **self.hyper_extra}


def parse_args(argv: list[str] | None = None) -> Args:
    """Build a ``--flag`` per :class:`Args` field (booleans are switches)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = Args()
    for f in dataclasses.fields(Args):
        if f.name == "hyper_extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    ns = parser.parse_args(argv)
    args = Args(**{k: v for k, v in vars(ns).items()})
    if args.quick:
        args.apply_quick()
    return args


# ----------------------------------------------------------------------------- statistics
def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95% Student-t interval over seeds."""
    n = len(values)
    mean = statistics.fmean(values) if values else float("nan")
    if n < 2:
        return {"mean": mean, "low": mean, "high": mean, "n": n, "values": values}
    t = T95.get(n - 1) or (T95[max(k for k in T95 if k <= n - 1)] if n - 1 <= 30 else 1.96)
    half = t * statistics.stdev(values) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "values": values}


def ratio(num: float, den: float, floor: float) -> float:
    """``num / max(den, floor)``: a zero-fitness baseline would make the ratio infinite."""
    return num / max(den, floor)


# ----------------------------------------------------------------------------- one run
def make_env(seed_layout: int, weights: dict[str, float] | None) -> Any:
    """Hungry-Thirsty on layout ``seed_layout``; with ``weights`` its reward is live-shaped."""
    import gymnasium as gym

    import livetune_rl.envs  # noqa: F401  (registers livetune/HungryThirsty-v0)
    from livetune_rl.wrappers import LiveRewardWrapper

    env = gym.make("livetune/HungryThirsty-v0", layout_seed=seed_layout)
    if weights is not None:
        env = LiveRewardWrapper(env, weights, bounds=REWARD_BOUNDS)
    return env


def held_out_fitness(model: Any, seed: int, episodes: int) -> float:
    """Mean fitness of the deterministic policy on ``episodes`` fresh episodes (own env seed)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    env = make_vec_env(lambda: make_env(seed, None), n_envs=1, seed=seed + 20_000)
    fitness: list[float] = []

    def collect(locals_: dict[str, Any], _globals: dict[str, Any]) -> None:
        if locals_.get("done"):
            fitness.append(float(locals_["info"]["fitness"]))

    evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, callback=collect)
    env.close()
    return statistics.fmean(fitness)


def tuner_command(args: Args, address: str, log: Path, seed: int) -> list[str]:
    """``livetune tune`` against one run: watches ``mean_fitness``, moves the reward weights
    (its random order of moves is seeded with the run's seed)."""
    exe = Path(sys.executable).parent / "livetune"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "livetune_rl.cli"]
    return [*base, "--addr", address, "tune", "--metric", args.tuner_metric,
            "--knobs", *[f"reward.{c}" for c in COMPONENTS],
            "--patience", str(args.tuner_patience), "--settle", str(args.tuner_settle),
            "--min-delta", str(args.tuner_min_delta), "--step", str(args.tuner_step),
            "--judge", str(args.tuner_judge), "--width", str(args.tuner_width),
            *(["--credit", args.tuner_credit, "--credit-min", str(args.tuner_credit_min),
               "--credit-rule", args.tuner_credit_rule]
              if args.tuner_credit else []),
            *(["--accept-early"] if args.tuner_accept_early else []),
            "--max-actions", str(args.tuner_max_actions), "--seed", str(seed), "--log", str(log)]


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a child that should exit on its own (the tuner, once the stream ends)."""
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL journal."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (arm, seed) in this worker process and return its measurements.

    ``job``: ``args`` (an :class:`Args` as a dict), ``arm``, ``seed``, ``weights`` (the reward
    to start from) and ``snapshot_at`` (env step of an extra held-out evaluation, or None).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.env_util import make_vec_env

    from livetune_rl.registry import Registry
    from livetune_rl.sb3 import LiveTuneCallback
    from livetune_rl.server import serve

    torch.set_num_threads(1)
    args = Args(**job["args"])
    arm, seed, weights = job["arm"], int(job["seed"]), dict(job["weights"])
    out = Path(args.out)
    journals = out / f"{args.prefix}_journals"
    name = f"{arm}_seed{seed}"
    journal = journals / f"{name}.jsonl"
    journal.unlink(missing_ok=True)

    venv = make_vec_env(lambda: make_env(seed, weights), n_envs=args.n_envs, seed=seed)
    eval_env = make_vec_env(lambda: make_env(seed, None), n_envs=1, seed=seed + 10_000)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
                tensorboard_log=str(out / f"{args.prefix}_tb"), **args.hyper())

    registry = Registry()
    live = LiveTuneCallback(registry, run_dir=journals / "checkpoints" / name,
                            eval_env=eval_env, n_eval_episodes=args.eval_episodes,
                            eval_every=args.eval_every, episode_info_keys=("fitness",))
    live.attach(model)
    server = serve("127.0.0.1:0", run=f"rlrs-{name}-{os.getpid()}", registry=registry,
                   journal=journal, quiet=True)

    snapshot: dict[str, Any] = {}

    class Snapshot(BaseCallback):
        """A held-out evaluation at one exact env step (the restart arm's end of budget)."""

        def _on_step(self) -> bool:
            at = job.get("snapshot_at")
            if at is not None and not snapshot and self.num_timesteps >= at:
                snapshot.update(step=self.num_timesteps, wall=time.monotonic() - started,
                                fitness=held_out_fitness(model, seed, args.final_eval_episodes))
            return True

    with contextlib.ExitStack() as stack:
        stack.callback(eval_env.close)
        stack.callback(venv.close)
        tuner = None
        if arm == "live":  # the tuner: a separate process that only talks gRPC to this one
            log = journals / f"{name}_tuner.jsonl"
            log.unlink(missing_ok=True)
            tuner_out = stack.enter_context(open(journals / f"{name}_tuner.out", "w"))
            tuner = subprocess.Popen(tuner_command(args, server.address, log, seed),
                                     stdout=tuner_out, stderr=subprocess.STDOUT,
                                     env=os.environ.copy())
            stack.callback(_reap, tuner)
        stack.callback(server.stop)  # first on exit: ends the tuner's watch stream
        if tuner is not None:
            deadline = time.monotonic() + 60
            while not server.watchers and time.monotonic() < deadline:  # tuner connected
                if tuner.poll() is not None:
                    raise RuntimeError(f"the tuner exited early; see {name}_tuner.out")
                time.sleep(0.05)
        started = time.monotonic()
        t0 = time.time()
        model.learn(args.total_timesteps, callback=CallbackList([live, Snapshot()]),
                    tb_log_name=name)
        wall = time.monotonic() - started
        final = held_out_fitness(model, seed, args.final_eval_episodes)
    final_weights = {c: float(registry.variable(f"reward.{c}").value) for c in COMPONENTS}

    records = read_journal(journal)
    curve = [{"step": int(r["step"]), "wall": r["t"] - t0,
              "fitness": float(r["data"]["mean_fitness"])}
             for r in records if r["kind"] == "event" and r["name"] == "evaluate"]
    reward_sets = [{"step": r.get("step"), "wall": r["t"] - t0, "name": r["name"],
                    "old": r.get("old"), "new": r.get("new"), "source": r.get("source", "")}
                   for r in records if r["kind"] == "set" and r["name"].startswith("reward.")]
    decisions = []
    if arm == "live":
        tlog = journals / f"{name}_tuner.jsonl"
        decisions = [d for d in (read_journal(tlog) if tlog.exists() else []) if d.get("action")]
    return {"arm": arm, "seed": seed, "weights": weights, "final_weights": final_weights,
            "steps": int(model.num_timesteps), "wall": wall,
            "steps_per_second": model.num_timesteps / wall, "final_fitness": final,
            "curve": curve, "reward_sets": reward_sets, "tuner_decisions": decisions,
            "snapshot": snapshot or None, "journal": str(journal.relative_to(out))}


# ----------------------------------------------------------------------------- restart cost
RESTART_SNIPPET = """
import torch
torch.set_num_threads(1)
import gymnasium as gym
import livetune_rl.envs
from livetune_rl.wrappers import LiveRewardWrapper
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
w = {w!r}
venv = make_vec_env(lambda: LiveRewardWrapper(gym.make("livetune/HungryThirsty-v0",
                    layout_seed=0), w, bounds=(-1.0, 1.0)), n_envs={n_envs}, seed=0)
model = PPO("MlpPolicy", venv, seed=0, device="cpu", **{hyper!r})
obs = venv.reset()
action, _ = model.predict(obs)
venv.step(action)
"""


def measure_restart_seconds(args: Args) -> list[float]:
    """Wall time of a fresh Python process that imports torch and SB3, builds the env and the
    model and takes its first env step (what a restart costs before training resumes)."""
    code = RESTART_SNIPPET.format(w=FIXED_REWARD, n_envs=args.n_envs, hyper=args.hyper())
    times = []
    for _ in range(args.restart_trials):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
        times.append(time.monotonic() - start)
    return times


# ----------------------------------------------------------------------------- analysis
def corrected_reward(live: dict[str, Any], settle: int) -> tuple[dict[str, float], int | None]:
    """The reward the live run ended with and the env step from which it held (None: the
    run ended on its starting reward). A last tuner move the run ended before judging (fewer
    than ``settle`` evaluations after it) is a trial, not a correction: it is left out."""
    sets = list(live["reward_sets"])
    decisions = live["tuner_decisions"]
    if sets and decisions and decisions[-1]["action"] == "set" and not decisions[-1].get("error"):
        after = sum(1 for p in live["curve"] if p["step"] > decisions[-1]["step"])
        if after < settle and sets[-1]["step"] == decisions[-1]["step"]:
            sets.pop()
    current = dict(live["weights"])
    step = None
    history = []
    for s in sets:
        current[s["name"].removeprefix("reward.")] = float(s["new"])
        history.append((dict(current), int(s["step"])))
    for weights, at in history:  # the first step after which the weights stayed final
        if weights == current and step is None:
            step = at
        elif weights != current:
            step = None
    return current, (None if current == live["weights"] else step)


def first_reaching(curve: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    """First evaluation at or above ``threshold`` (its step and wall time), else None."""
    for point in curve:
        if point["fitness"] >= threshold:
            return {"step": point["step"], "wall": point["wall"]}
    return None


def on_grid(curve: list[dict[str, Any]], grid: list[int]) -> list[float | None]:
    """The curve read at each grid step: the latest evaluation at or before it."""
    values: list[float | None] = []
    for g in grid:
        before = [p["fitness"] for p in curve if p["step"] <= g]
        values.append(before[-1] if before else None)
    return values


def restart_cost_steps(live: dict[str, Any], restart_seconds: float) -> int:
    """The restart time in env steps, at the measured steps/s of the run being restarted
    (the live run of that seed: the same reward and the same settings until the tuner acts)."""
    return math.ceil(restart_seconds * live["steps_per_second"])


def restart_snapshot_step(live: dict[str, Any], restart_seconds: float,
                          budget: int) -> int | None:
    """Steps the restart arm's fresh run gets: the budget less the steps spent before the
    restart and the restart cost (None: no restart, or no budget left for one)."""
    step = live["corrected_step"]
    if step is None:
        return None
    left = budget - step - restart_cost_steps(live, restart_seconds)
    return left if left > 0 else None


def restart_result(fixed: dict[str, Any], live: dict[str, Any], oracle: dict[str, Any],
                   restart_seconds: float, budget: int) -> dict[str, Any]:
    """The restart arm of one seed, assembled from the fixed run (before the restart) and the
    oracle run (after it, shifted by the steps spent and the restart cost)."""
    step = live["corrected_step"]
    if step is None:  # nothing to restart for: the designer keeps the fixed run
        return {**fixed, "arm": "restart", "restart_step": None, "restart_cost_steps": 0}
    cost_steps = restart_cost_steps(live, restart_seconds)
    shift = step + cost_steps
    fixed_wall = max([p["wall"] for p in fixed["curve"] if p["step"] <= step], default=0.0)
    offset_wall = fixed_wall + restart_seconds
    curve = [p for p in fixed["curve"] if p["step"] <= step]
    curve += [{"step": p["step"] + shift, "wall": p["wall"] + offset_wall,
               "fitness": p["fitness"]}
              for p in oracle["curve"] if p["step"] + shift <= budget]
    snap = oracle["snapshot"]
    if snap is None:  # the restart came too late to train at all: keep the last fixed score
        final, wall = (curve[-1]["fitness"] if curve else 0.0), offset_wall
    else:
        final, wall = snap["fitness"], offset_wall + snap["wall"]
    return {"arm": "restart", "seed": fixed["seed"], "weights": oracle["weights"],
            "final_weights": oracle["weights"], "steps": budget, "wall": wall,
            "final_fitness": final, "curve": curve, "restart_step": step,
            "restart_cost_steps": cost_steps, "restart_seconds": restart_seconds,
            "snapshot_step_in_fresh_run": None if snap is None else snap["step"]}


def summarize(args: Args, runs: dict[str, list[dict[str, Any]]],
              restart_times: list[float], wall_total: float) -> dict[str, Any]:
    """Every number of the experiment, ready for JSON."""
    finals = {arm: mean_ci([r["final_fitness"] for r in runs[arm]]) for arm in ROWS}
    m = {arm: finals[arm]["mean"] for arm in ROWS}
    grid = sorted({p["step"] for r in runs["fixed"] for p in r["curve"]})
    curves = {}
    for arm in ROWS:
        per_seed = [on_grid(r["curve"], grid) for r in runs[arm]]
        points = []
        for i, g in enumerate(grid):
            vals = [v[i] for v in per_seed if v[i] is not None]
            if vals:
                points.append({"step": g, **{k: v for k, v in mean_ci(vals).items()
                                             if k != "values"}})
        curves[arm] = points
    reach = {}
    for arm in ROWS:
        hits = [first_reaching(r["curve"], args.threshold) for r in runs[arm]]
        got = [h for h in hits if h is not None]
        reach[arm] = {
            "reached": len(got), "of": len(hits),
            "steps_mean": statistics.fmean(h["step"] for h in got) if got else None,
            "wall_mean": statistics.fmean(h["wall"] for h in got) if got else None,
            "per_seed": hits}
    floor = args.fitness_floor
    ratios = {
        "live_over_fixed": ratio(m["live"], m["fixed"], floor),
        "live_over_restart": ratio(m["live"], m["restart"], floor),
        "live_fraction_of_oracle": ratio(m["live"], m["oracle"], floor),
        "oracle_over_fixed": ratio(m["oracle"], m["fixed"], floor),
        "aligned_over_fixed": ratio(m["aligned"], m["fixed"], floor),
        "live_fraction_of_aligned": ratio(m["live"], m["aligned"], floor),
        "per_seed_live_over_fixed": [ratio(a["final_fitness"], b["final_fitness"], floor)
                                     for a, b in zip(runs["live"], runs["fixed"], strict=True)],
        "floor": floor,
        "note": "ratio of the arms' mean final fitness; the denominator is max(mean, floor)",
    }
    tuner = []
    for r in runs["live"]:
        tuner.append({"seed": r["seed"], "final_weights": r["final_weights"],
                      "corrected_weights": r["corrected_weights"],
                      "corrected_step": r["corrected_step"],
                      "decisions": [{"step": d.get("step"), "action": d["action"],
                                     "values": d["values"], "reason": d["reason"]}
                                    for d in r["tuner_decisions"]],
                      "sets_over_grpc": [s for s in r["reward_sets"]
                                         if any(f"{scheme}:" in s["source"]
                                                for scheme in ("ipv4", "ipv6", "unix"))]})
    return {
        "experiment": "rl_reward_reshaping",
        "command": " ".join(["python", "experiments/rl_reward_reshaping.py",
                             *(["--quick"] if args.quick else [])]),
        "args": dataclasses.asdict(args),
        "algorithm": {"name": "PPO", "policy": "MlpPolicy", **args.hyper()},
        "fixed_reward": FIXED_REWARD, "aligned_reward": ALIGNED_REWARD,
        "reward_bounds": list(REWARD_BOUNDS),
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "restart": {"seconds_trials": restart_times,
                    "seconds": statistics.median(restart_times),
                    "accounted": "converted to env steps at the live run's measured steps/s "
                                 "(subtracted from the restart arm's budget) and added to its "
                                 "wall time",
                    "per_seed": [{"seed": r["seed"], "restart_step": r["restart_step"],
                                  "cost_steps": r["restart_cost_steps"]}
                                 for r in runs["restart"]]},
        "final_fitness": finals,
        "ratios": ratios,
        "threshold": {"fitness": args.threshold, **reach},
        "curves": curves,
        "tuner": tuner,
        "runs": {arm: [{k: v for k, v in r.items() if k not in ("curve", "tuner_decisions")}
                       | {"curve": r["curve"]} for r in runs[arm]] for arm in ROWS},
        "wall_seconds_total": wall_total,
    }


# ----------------------------------------------------------------------------- outputs
def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    """The results table."""
    args, fin, th, rat = (summary["args"], summary["final_fitness"], summary["threshold"],
                          summary["ratios"])
    lines = [
        f"# Reward reshaping while learning: Hungry-Thirsty, PPO, {args['seeds']} seeds, "
        f"{args['total_timesteps']:,} env steps per run",
        "",
        f"Command: `{summary['command']}` ({summary['wall_seconds_total'] / 60:.1f} min on "
        f"{summary['environment']['cpus']} CPUs). Fitness = steps not hungry per 200-step "
        f"episode, {args['final_eval_episodes']} held-out episodes per seed at the end of the "
        "budget; mean and 95% t-interval over seeds.",
        "",
        f"| arm | final fitness (mean) | 95% interval | per seed | reached {th['fitness']:g} "
        "| mean steps to it | mean wall s to it |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ROWS:
        f, r = fin[arm], th[arm]
        per_seed = ", ".join(f"{v:.1f}" for v in f["values"])
        label = "aligned (reference, not an arm)" if arm == REFERENCE else arm
        lines.append(f"| {label} | {f['mean']:.1f} | [{f['low']:.1f}, {f['high']:.1f}] | "
                     f"{per_seed} | {r['reached']}/{r['of']} | {fmt(r['steps_mean'], 0)} | "
                     f"{fmt(r['wall_mean'])} |")
    lines += [
        "",
        f"Ratios of mean final fitness (denominator floored at {rat['floor']:g}): "
        f"live/fixed **{rat['live_over_fixed']:.2f}x**, live/restart "
        f"**{rat['live_over_restart']:.2f}x**, live as a fraction of oracle "
        f"**{rat['live_fraction_of_oracle']:.2f}**, oracle/fixed {rat['oracle_over_fixed']:.2f}x; "
        f"reference: aligned/fixed {rat['aligned_over_fixed']:.2f}x, live as a fraction of "
        f"aligned {rat['live_fraction_of_aligned']:.2f}.",
        "",
        f"Restart cost: {summary['restart']['seconds']:.1f} s per fresh process (median of "
        f"{len(summary['restart']['seconds_trials'])}), "
        f"{summary['restart']['accounted']}.",
        "",
        "Tuner actions in the live runs (env step: action):",
        "",
    ]
    for t in summary["tuner"]:
        acts = "; ".join(f"{d['step']}: {d['action']} "
                         + ", ".join(f"{k}={v:.2f}" for k, v in d["values"].items())
                         for d in t["decisions"]) or "none"
        final = ", ".join(f"{k}={v:g}" for k, v in t["corrected_weights"].items())
        lines.append(f"- seed {t['seed']}: {acts}. Corrected reward (oracle's; a last "
                     f"unjudged trial left out): {final}.")
    path.write_text("\n".join(lines) + "\n")


def write_plot(summary: dict[str, Any], path: Path) -> None:
    """Fitness against env steps, mean and 95% band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"fixed": "tab:red", "restart": "tab:orange", "live": "tab:blue",
              "oracle": "tab:green", REFERENCE: "tab:grey"}
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for arm in ROWS:
        pts = summary["curves"][arm]
        x = [p["step"] for p in pts]
        label = "aligned reward (reference)" if arm == REFERENCE else arm
        ax.plot(x, [p["mean"] for p in pts], label=label, color=colors[arm],
                ls="--" if arm == REFERENCE else "-")
        ax.fill_between(x, [max(0.0, p["low"]) for p in pts], [p["high"] for p in pts],
                        color=colors[arm], alpha=0.2)
    ax.axhline(summary["args"]["threshold"], color="black", lw=0.8, ls=":",
               label="threshold")
    acts = sorted({d["step"] for t in summary["tuner"] for d in t["decisions"]})
    if acts:  # when the live runs' tuner acted (any seed)
        ax.plot(acts, [0.0] * len(acts), "|", color="tab:blue", ms=12, label="tuner actions")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("fitness (steps not hungry / 200)")
    ax.set_title(f"Hungry-Thirsty, PPO: {summary['args']['seeds']} seeds, mean and 95% band")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the four arms and write the JSON, the table, the plot and the journals."""
    args = parse_args(argv)
    out = Path(args.out)
    journals = out / f"{args.prefix}_journals"
    for old in (journals, out / f"{args.prefix}_tb"):
        shutil.rmtree(old, ignore_errors=True)
    journals.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    restart_times = measure_restart_seconds(args)
    print(f"restart cost: {restart_times} s", flush=True)

    base = dataclasses.asdict(args)
    seeds = list(range(args.seeds))
    ctx = mp.get_context("spawn")
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ROWS}
    with cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        # fixed and live first; as soon as a live run ends it decides that seed's oracle
        # reward and restart point, and the oracle run (which also yields the restart arm's
        # end-of-budget evaluation) is queued behind the remaining fixed/live runs
        restart_seconds = statistics.median(restart_times)
        pending = {pool.submit(run_arm, {"args": base, "arm": arm, "seed": s,
                                         "weights": FIXED_REWARD, "snapshot_at": None})
                   for s in seeds for arm in ("live", "fixed")}
        pending |= {pool.submit(run_arm, {"args": base, "arm": REFERENCE, "seed": s,
                                          "weights": ALIGNED_REWARD, "snapshot_at": None})
                    for s in seeds}
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                result = future.result()
                runs[result["arm"]].append(result)
                print(f"{result['arm']} seed {result['seed']}: fitness "
                      f"{result['final_fitness']:.1f} in {result['wall']:.0f}s "
                      f"({result['steps_per_second']:.0f} steps/s)", flush=True)
                if result["arm"] == "live":
                    result["corrected_weights"], result["corrected_step"] = corrected_reward(
                        result, args.tuner_settle)
                    pending.add(pool.submit(run_arm, {
                        "args": base, "arm": "oracle", "seed": result["seed"],
                        "weights": result["corrected_weights"],
                        "snapshot_at": restart_snapshot_step(result, restart_seconds,
                                                             args.total_timesteps)}))
    for arm in ROWS:
        runs[arm].sort(key=lambda r: r["seed"])
    runs["restart"] = [restart_result(f, lv, o, restart_seconds, args.total_timesteps)
                       for f, lv, o in zip(runs["fixed"], runs["live"], runs["oracle"],
                                           strict=True)]

    summary = summarize(args, runs, restart_times, time.monotonic() - started)
    (out / f"{args.prefix}.json").write_text(json.dumps(summary, indent=1))
    write_markdown(summary, out / f"{args.prefix}.md")
    write_plot(summary, out / f"{args.prefix}.png")
    print((out / f"{args.prefix}.md").read_text(), flush=True)
    return summary


if __name__ == "__main__":
    main()
