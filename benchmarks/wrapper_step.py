"""What does ``LiveRewardWrapper`` add to one env step? Microseconds, side by side in one run.

Steps Hungry-Thirsty with random actions, bare (``gym.make``) and wrapped, and times SB3's
``DummyVecEnv`` habit of deep-copying every step's info list (``deepcopy(self.buf_infos)``) on
the infos each produces. Both sides alternate ``--repeats`` times; the table gives the median.
Run::

    python benchmarks/wrapper_step.py
    python benchmarks/wrapper_step.py --steps 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS, HUNGRY_THIRSTY_ID
from livetune_rl.wrappers import LiveRewardWrapper


def step_us(env: gym.Env, steps: int, seed: int = 0) -> tuple[float, dict[str, Any]]:
    """Mean microseconds per ``env.step`` over ``steps`` random actions, and the info of an
    ordinary (not episode-ending) step."""
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 6, steps).tolist()
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.reset(seed=seed)
    return elapsed / steps * 1e6, env.step(0)[4]


def deepcopy_us(info: dict[str, Any], copies: int) -> float:
    """Mean microseconds of ``deepcopy([info])``, what DummyVecEnv does every step."""
    start = time.perf_counter()
    for _ in range(copies):
        copy.deepcopy([info])
    return (time.perf_counter() - start) / copies * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    ns = parser.parse_args()
    bare = gym.make(HUNGRY_THIRSTY_ID, layout_seed=0)
    wrapped = LiveRewardWrapper(gym.make(HUNGRY_THIRSTY_ID, layout_seed=0),
                                dict(DEFAULT_REWARD_WEIGHTS))
    rows: dict[str, list[float]] = {k: [] for k in ("bare", "wrapped", "copy_bare",
                                                    "copy_wrapped")}
    for _ in range(ns.repeats):
        us, info = step_us(bare, ns.steps)
        rows["bare"].append(us)
        rows["copy_bare"].append(deepcopy_us(info, ns.steps // 2))
        us, info = step_us(wrapped, ns.steps)
        rows["wrapped"].append(us)
        rows["copy_wrapped"].append(deepcopy_us(info, ns.steps // 2))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("| | bare env | wrapped | added by the wrapper |")
    print("|---|---|---|---|")
    print(f"| env.step, us | {med['bare']:.2f} | {med['wrapped']:.2f} | "
          f"{med['wrapped'] - med['bare']:.2f} |")
    print(f"| deepcopy of its info, us | {med['copy_bare']:.2f} | {med['copy_wrapped']:.2f} | "
          f"{med['copy_wrapped'] - med['copy_bare']:.2f} |")
    print(f"\nmedian of {ns.repeats} repeats of {ns.steps} steps")


if __name__ == "__main__":
    main()
