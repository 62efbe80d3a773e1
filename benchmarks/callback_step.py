"""What does LiveTuneCallback cost per env step, by itself? No env, no policy: only the calls SB3
makes to a callback at every step (``update_locals`` with the rollout's locals, ``on_step``),
timed on a real PPO model on Hungry-Thirsty with every knob and reward weight registered.

Two cases: nothing set (the hot path: one registry version read per safe point) and a set every
``--set-every`` steps (the apply path: a reward weight pushed to the env, journaled). Prints the
best and the median of ``--repeats`` timings in microseconds of this thread's CPU time per step
(CPU time, not wall time: time the process waits for a core while other jobs run does not
count; compare two checkouts by running this same script with each one's venv). Run::

    python benchmarks/callback_step.py
    python benchmarks/callback_step.py --steps 50000 --repeats 7
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS, HUNGRY_THIRSTY_ID
from livetune_rl.sb3 import LiveTuneCallback
from livetune_rl.wrappers import LiveRewardWrapper


def _env() -> gym.Env:
    return LiveRewardWrapper(gym.make(HUNGRY_THIRSTY_ID, layout_seed=0),
                             dict(DEFAULT_REWARD_WEIGHTS))


def _rollout_locals(model: PPO) -> dict[str, Any]:
    """A dict shaped like the locals SB3's collect_rollouts hands to update_locals."""
    return {"self": model, "env": model.get_env(), "callback": None, "n_steps": 0,
            "obs_tensor": torch.zeros(1, 18), "actions": np.zeros(1, dtype=np.int64),
            "values": torch.zeros(1, 1), "log_probs": torch.zeros(1),
            "clipped_actions": np.zeros(1), "new_obs": np.zeros((1, 18), dtype=np.float32),
            "rewards": np.zeros(1, dtype=np.float32), "dones": np.zeros(1, dtype=bool),
            "infos": [{"reward_components": {}, "fitness": 0}], "n_rollout_steps": 2048,
            "rollout_buffer": model.rollout_buffer}


def _time(callback: LiveTuneCallback, model: PPO, registry: lt.Registry, steps: int,
          set_every: int) -> float:
    frame = _rollout_locals(model)
    weight = "reward.hungry_thirsty"
    started = time.thread_time()
    for i in range(steps):
        model.num_timesteps += 1
        if set_every and i % set_every == 0:
            registry.set({weight: -1.0 if i % (2 * set_every) else -0.5})
        frame["n_steps"] = i
        callback.update_locals(frame)
        callback.on_step()
    return (time.thread_time() - started) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set-every", type=int, default=100)
    ns = parser.parse_args()
    torch.set_num_threads(1)
    registry = lt.Registry()
    model = PPO("MlpPolicy", DummyVecEnv([_env]), n_steps=2048, device="cpu")
    model.set_logger(Logger(None, []))  # what learn() sets up: records go nowhere
    callback = LiveTuneCallback(registry)
    callback.init_callback(model)
    callback.on_training_start(_rollout_locals(model), {})
    for _ in range(20):
        lt.LiveVariable(f"extra.v{_}", 0.0, registry=registry)  # as in rl_overhead.py
    idle = [_time(callback, model, registry, ns.steps, 0) for _ in range(ns.repeats)]
    busy = [_time(callback, model, registry, ns.steps // 10, ns.set_every)
            for _ in range(ns.repeats)]
    print(f"per step, best of {ns.repeats}: nothing set {min(idle):.2f} us "
          f"(median {np.median(idle):.2f}); a set every {ns.set_every} steps "
          f"{min(busy):.2f} us (median {np.median(busy):.2f})")


if __name__ == "__main__":
    main()
