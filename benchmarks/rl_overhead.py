"""What does making a run live-tunable cost? PPO on Hungry-Thirsty, side by side in one run.

Arms, alternated ``--repeats`` times so drift (thermal, other load) hits both alike:

* **plain**: SB3 PPO on ``livetune/HungryThirsty-v0`` as SB3 users run it (the env's reward).
* **live**: the same, plus the registry served over gRPC, the ``LiveRewardWrapper``, the
  ``LiveTuneCallback`` (every PPO knob and reward weight live), ``--extra-vars`` more live
  variables, and ``--watchers`` clients streaming changes; with ``--storm N``, N client
  processes also set values as fast as they can for the whole run.

Prints environment steps per second of each run and the ratio live/plain (goal >= 0.97
without a storm). Run::

    python benchmarks/rl_overhead.py                 # ~2-3 minutes
    python benchmarks/rl_overhead.py --quick
    python benchmarks/rl_overhead.py --storm 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS, HUNGRY_THIRSTY_ID  # registers the ids
from livetune_rl.sb3 import LiveTuneCallback
from livetune_rl.wrappers import LiveRewardWrapper

ENV_ID = HUNGRY_THIRSTY_ID
WEIGHTS = dict(DEFAULT_REWARD_WEIGHTS)  # the fitness-aligned reward


@dataclass
class Args:
    timesteps: int = 16_384
    repeats: int = 3
    n_envs: int = 1
    extra_vars: int = 20
    watchers: int = 1
    storm: int = 0
    max_calls: float = 0.0  # 0: the server's default pacing
    seed: int = 0


def _plain_env() -> gym.Env:
    return gym.make(ENV_ID, layout_seed=0)


def _live_env() -> gym.Env:
    return LiveRewardWrapper(gym.make(ENV_ID, layout_seed=0), WEIGHTS)


def _model(env_fn: Any, args: Args) -> PPO:
    env = DummyVecEnv([env_fn] * args.n_envs)
    return PPO("MlpPolicy", env, n_steps=1024, batch_size=256, n_epochs=4, seed=args.seed,
               device="cpu")


def run_plain(args: Args) -> float:
    model = _model(_plain_env, args)
    start = time.perf_counter()
    model.learn(args.timesteps)
    return model.num_timesteps / (time.perf_counter() - start)


def _storm_client(address: str, stop_at: float, counter: Any) -> None:
    """Set values as fast as possible until ``stop_at`` (a bounded loop on loopback)."""
    sent = 0
    with lt.connect(address) as client:
        while time.time() < stop_at:
            try:
                client.set({"bench.v0": float(sent % 100)})
                sent += 1
                with counter.get_lock():
                    counter.value += 1
            except lt.ClientError:
                time.sleep(0.001)


def run_live(args: Args) -> tuple[float, dict[str, Any]]:
    registry = lt.Registry()
    for i in range(args.extra_vars):
        lt.LiveVariable(f"bench.v{i}", 0.0, min=-1e9, max=1e9, registry=registry)
    model = _model(_live_env, args)
    callback = LiveTuneCallback(registry)
    pacing = {"max_calls_per_second": args.max_calls} if args.max_calls else {}
    server = lt.serve("127.0.0.1:0", registry=registry, journal=False, run="bench",
                      discoverable=False, quiet=True, **pacing)
    received = [0]
    clients = [lt.connect(server.address) for _ in range(args.watchers)]

    def consume(client: lt.Client) -> None:
        try:
            for _ in client.watch():
                received[0] += 1
        except lt.ClientError:
            pass

    threads = [threading.Thread(target=consume, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    storm: list[mp.Process] = []
    spawn = mp.get_context("spawn")  # never fork a process that runs gRPC threads
    counter = spawn.Value("q", 0)
    if args.storm:
        stop_at = time.time() + 3600
        storm = [spawn.Process(target=_storm_client, args=(server.address, stop_at, counter))
                 for _ in range(args.storm)]
        for p in storm:
            p.start()
        time.sleep(3.0)  # let the storm clients start (spawn) and reach full speed
    start = time.perf_counter()
    counter.value = 0
    model.learn(args.timesteps, callback=callback)
    rate = model.num_timesteps / (time.perf_counter() - start)
    for p in storm:
        p.terminate()
        p.join()
    for c in clients:
        c.close()
    server.stop(grace=0)
    callback.close()
    elapsed = time.perf_counter() - start
    return rate, {"watch_messages": received[0], "storm_sets_per_s":
                  round(counter.value / elapsed) if args.storm else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Args()
    parser.add_argument("--timesteps", type=int, default=d.timesteps)
    parser.add_argument("--repeats", type=int, default=d.repeats)
    parser.add_argument("--n-envs", type=int, default=d.n_envs)
    parser.add_argument("--extra-vars", type=int, default=d.extra_vars)
    parser.add_argument("--watchers", type=int, default=d.watchers)
    parser.add_argument("--storm", type=int, default=d.storm)
    parser.add_argument("--max-calls", type=float, default=d.max_calls,
                        help="server pacing in calls/s (default: serve()'s)")
    parser.add_argument("--quick", action="store_true", help="4k steps, 1 repeat")
    ns = parser.parse_args()
    args = Args(timesteps=4096 if ns.quick else ns.timesteps, repeats=1 if ns.quick
                else ns.repeats, n_envs=ns.n_envs, extra_vars=ns.extra_vars,
                watchers=ns.watchers, storm=ns.storm, max_calls=ns.max_calls)
    torch.set_num_threads(1)  # a small MLP: one thread is fastest and least noisy
    run_plain(Args(timesteps=2048))  # warm-up: imports, torch kernels
    plain, live, extras = [], [], []
    for i in range(args.repeats):
        plain.append(run_plain(args))
        rate, extra = run_live(args)
        live.append(rate)
        extras.append(extra)
        print(f"repeat {i + 1}: plain {plain[-1]:8.0f} steps/s   live {live[-1]:8.0f} steps/s   "
              f"ratio {live[-1] / plain[-1]:.3f}   {extra}", flush=True)
    ratio = statistics.mean(live) / statistics.mean(plain)
    pairs = [lv / pl for lv, pl in zip(live, plain, strict=True)]
    print()
    print(f"| arm   | steps/s (mean of {args.repeats}) |")
    print("|-------|------------------|")
    print(f"| plain | {statistics.mean(plain):16.0f} |")
    print(f"| live  | {statistics.mean(live):16.0f} |")
    print(f"\nratio live/plain = {ratio:.3f} (per-pair min {min(pairs):.3f}, "
          f"max {max(pairs):.3f}); timesteps {args.timesteps} x {args.n_envs} env(s), "
          f"{args.extra_vars} extra vars, "
          f"{args.watchers} watcher(s), storm clients {args.storm}")


if __name__ == "__main__":
    main()
