"""Ray Tune's PBT against PBT through livetune (LivePBT), side by side in one run.

Both arms run the same population: ``--trials`` trials (default 4) of PPO on CartPole-v1
(``sb3_trainable``, seeds 1..N, Tune checkpoints with every report), on a local Ray cluster
of 2 CPUs (with 4 trials, 2 run at a time and the other 2 wait; PBT then pauses a trial that
reports to let a waiting one run), with the same PBT settings (perturbation every 1024 steps,
quantile 0.25, or 0.5 for fewer than 4 trials, learning rate and clip range perturbed).
Arms alternate ``--rounds`` times, each for ``--seconds`` of wall time, so a change in the
machine's load falls on both alike.

Per arm it prints:

* **exploits**: PBT's exploit-and-explore steps, and how many were carried out live;
* **wall time per mutation**: from PBT's decision to the trial training again with the new
  weights: to whichever comes first in the trial's journal, the ``pbt.exploit`` event (the
  weights loaded live at the next env step: LivePBT) or the next ``start`` record (written
  when a restarted trial serves again, after its model is rebuilt and the checkpoint loaded:
  Ray's PBT, and LivePBT when Tune pauses the trial before it handled the fire, as PBT does
  to give a pending trial its turn). The count of each is printed;
* **trial-steps per hour**: env steps summed over all trials, per hour of wall time.

Run::

    python benchmarks/ray_pbt.py                    # 2 rounds of 150 s per arm: ~11 minutes
    python benchmarks/ray_pbt.py --rounds 1 --seconds 60
    python benchmarks/ray_pbt.py --trials 2            # every trial runs all the time
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining

from livetune_rl.journal import iter_journal
from livetune_rl.ray.pbt import LivePBT
from livetune_rl.ray.sb3 import sb3_trainable


@dataclass
class Decisions:
    """When PBT decided each exploit: (trial id, wall time)."""

    times: list[tuple[str, float]] = field(default_factory=list)


def timed(scheduler_class: type[PopulationBasedTraining], decisions: Decisions,
          **kwargs: Any) -> PopulationBasedTraining:
    """An instance of a subclass of ``scheduler_class`` that notes each exploit's time."""

    class Timed(scheduler_class):  # type: ignore[misc, valid-type]
        def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
            decisions.times.append((trial.trial_id, time.time()))
            super()._exploit(tune_controller, trial, trial_to_clone)

    return Timed(**kwargs)


@dataclass
class ArmResult:
    exploits: int = 0
    live: int = 0
    mutation_seconds: list[float] = field(default_factory=list)
    loaded_live: int = 0
    restarted: int = 0
    steps: float = 0.0
    seconds: float = 0.0


def run_arm(live: bool, seconds: float, storage: Path, name: str, trials: int) -> ArmResult:
    decisions = Decisions()
    settings = dict(time_attr="timesteps_total", metric="episode_reward_mean", mode="max",
                    perturbation_interval=1024,
                    quantile_fraction=0.25 if trials >= 4 else 0.5,
                    hyperparam_mutations={"learning_rate": [1e-4, 3e-4, 1e-3],
                                          "clip_range": [0.1, 0.2, 0.3]})
    scheduler = timed(LivePBT if live else PopulationBasedTraining, decisions, **settings)
    tuner = tune.Tuner(
        sb3_trainable,
        param_space={"env": "CartPole-v1", "timesteps": 10_000_000, "checkpoint": True,
                     "report_every": 512,
                     "seed": tune.grid_search(list(range(1, trials + 1))),
                     "learning_rate": 3e-4, "algo_kwargs": {"n_steps": 256, "batch_size": 64,
                                                            "n_epochs": 4}},
        tune_config=tune.TuneConfig(scheduler=scheduler, time_budget_s=seconds),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0))
    start = time.time()
    grid = tuner.fit()
    result = ArmResult(seconds=time.time() - start)
    result.exploits = len(decisions.times)
    result.live = getattr(scheduler, "live_exploits", 0)
    result.steps = sum(r.metrics.get("timesteps_total", 0) for r in grid)
    trial_dirs = [Path(r.path) for r in grid]
    for trial_id, decided in decisions.times:
        # a trial's directory is named after its id (its last result may hold no metrics)
        journal = next((d / "journal.jsonl" for d in trial_dirs if trial_id in d.name), None)
        if journal is None or not journal.exists():
            continue
        done = next((e for e in iter_journal(journal) if e.t >= decided and (
            e.kind == "start" or (e.name == "pbt.exploit" and e.data.get("loaded")))), None)
        if done is None:  # an exploit decided as the budget ran out may never finish
            continue
        result.mutation_seconds.append(done.t - decided)
        if done.kind == "start":
            result.restarted += 1
        else:
            result.loaded_live += 1
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds")
    parser.add_argument("--seconds", type=float, default=150.0, help="wall time of each arm")
    parser.add_argument("--trials", type=int, default=4, help="trials in the population")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    results: dict[str, list[ArmResult]] = {"Ray PBT": [], "LivePBT": []}
    with tempfile.TemporaryDirectory() as storage:
        for n in range(args.rounds):
            for arm in ("Ray PBT", "LivePBT"):
                r = run_arm(arm == "LivePBT", args.seconds, Path(storage), f"r{n}-{arm[:3]}",
                            args.trials)
                results[arm].append(r)
                per = (f"{statistics.median(r.mutation_seconds):.3f} s" if r.mutation_seconds
                       else "-")
                print(f"round {n + 1} {arm}: {r.exploits} exploits ({r.live} set live; "
                      f"training again: {r.loaded_live} by a live load, {r.restarted} by a "
                      f"restart), {r.steps:.0f} trial-steps in {r.seconds:.0f} s, per "
                      f"mutation {per} (median)", flush=True)
    ray.shutdown()
    print(f"\n{args.trials} trials of PPO on CartPole-v1, 2 CPUs, {args.rounds} rounds of "
          f"{args.seconds:.0f} s per arm")
    print("| arm | exploits (set live) | training again by live load / restart | "
          "wall time per mutation, median [min, max] s | trial-steps per hour |")
    print("|---|---|---|---|---|")
    for arm, rounds in results.items():
        mutations = [s for r in rounds for s in r.mutation_seconds]
        steps = sum(r.steps for r in rounds)
        hours = sum(r.seconds for r in rounds) / 3600
        spread = (f"{statistics.median(mutations):.3f} [{min(mutations):.3f}, "
                  f"{max(mutations):.3f}] (n={len(mutations)})" if mutations else "-")
        print(f"| {arm} | {sum(r.exploits for r in rounds)} ({sum(r.live for r in rounds)}) | "
              f"{sum(r.loaded_live for r in rounds)} / {sum(r.restarted for r in rounds)} | "
              f"{spread} | {steps / hours:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
