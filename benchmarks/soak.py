"""Soak: a live-tunable training run poked by random clients for N minutes.

PPO trains on Hungry-Thirsty in this process with the registry served (from a child process,
as ``livetune train`` does, or with ``--no-serve-process`` from a thread here), the reward
wrapper and the SB3 callback. Client processes connect and disconnect at random: they set knobs
(valid and invalid values), read, watch for a while, fire ``evaluate`` and ``checkpoint``, and
log every acknowledged set. Every ``--every`` seconds the script samples the memory (RSS),
threads and open file descriptors of this process and of the serving one; at the end it
compares the acknowledged sets with the journal (the lost-update count must be 0) and prints
the samples (they must stay flat).

Run::

    python benchmarks/soak.py --minutes 15                    # served from a child process
    python benchmarks/soak.py --minutes 1 --clients 2         # a quick look
    python benchmarks/soak.py --minutes 5 --no-serve-process  # served from a thread here
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS, HUNGRY_THIRSTY_ID
from livetune_rl.sb3 import LiveTuneCallback
from livetune_rl.wrappers import LiveRewardWrapper

ENV_ID = HUNGRY_THIRSTY_ID


@dataclass
class Args:
    minutes: float = 15.0
    clients: int = 3
    every: float = 30.0
    seed: int = 0
    serve_process: bool = True


def _env() -> gym.Env:
    return LiveRewardWrapper(gym.make(ENV_ID, layout_seed=0), DEFAULT_REWARD_WEIGHTS)


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def os_threads(pid: int | str = "self") -> int:
    """Threads of a process as the kernel counts them (gRPC's C threads included)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def client_process(address: str, stop_at: float, seed: int, log_path: str) -> None:
    """One random client: sessions of random actions; logs each acknowledged set."""
    rng = random.Random(seed)
    with open(log_path, "a") as log:
        while time.time() < stop_at:
            try:
                with lt.connect(address, timeout=10) as client:
                    for _ in range(rng.randint(5, 50)):
                        if time.time() >= stop_at:
                            break
                        roll = rng.random()
                        if roll < 0.45:
                            name = rng.choice(["reward.hungry_thirsty", "reward.scale",
                                               "ent_coef", "learning_rate"])
                            value = {"reward.scale": rng.uniform(0.5, 2.0),
                                     "learning_rate": rng.uniform(1e-4, 1e-3),
                                     "ent_coef": rng.uniform(0.0, 0.02)}.get(
                                         name, rng.uniform(-1.0, 0.0))
                            for change in client.set({name: value}):
                                log.write(json.dumps({"v": change.v, "name": change.name,
                                                      "new": change.new}) + "\n")
                        elif roll < 0.55:
                            with contextlib.suppress(lt.ClientError):
                                client.set({"learning_rate": -1.0})  # invalid on purpose
                        elif roll < 0.75:
                            client.list()
                        elif roll < 0.85:
                            deadline = time.time() + rng.uniform(0.5, 3.0)
                            for _ in client.watch(timeout=deadline - time.time()):
                                if time.time() > deadline:
                                    break
                        elif roll < 0.95:
                            client.fire("evaluate")
                        else:
                            client.fire("checkpoint")
                        log.flush()
                        time.sleep(rng.uniform(0.0, 0.5))
            except lt.ClientError:
                time.sleep(0.5)


class Sampler(BaseCallback):
    """Samples memory, threads and fds every ``every`` seconds of wall time."""

    def __init__(self, every: float, child: int | None = None) -> None:
        super().__init__()
        self.every = every
        self.child = child  # the serving process (out-of-process serving)
        self.next = time.time()
        self.started = time.time()
        self.samples: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        now = time.time()
        if now >= self.next:
            self.next = now + self.every
            self.samples.append({"minute": (now - self.started) / 60, "rss_mb": rss_bytes() / 2**20,
                                 "threads": os_threads(), "fds": open_fds(),
                                 "steps": self.num_timesteps})
            s = self.samples[-1]
            extra = ""
            if self.child is not None:
                with contextlib.suppress(OSError):
                    s["child_rss_mb"] = rss_bytes(self.child) / 2**20
                    s["child_threads"] = os_threads(self.child)
                    s["child_fds"] = open_fds(self.child)
                    extra = (f"  | serving process rss {s['child_rss_mb']:6.1f} MB  threads "
                             f"{s['child_threads']:3d}  fds {s['child_fds']:4d}")
            print(f"{s['minute']:6.1f} min  rss {s['rss_mb']:7.1f} MB  threads {s['threads']:3d}  "
                  f"fds {s['fds']:4d}  steps {s['steps']}{extra}", flush=True)
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Args()
    parser.add_argument("--minutes", type=float, default=d.minutes)
    parser.add_argument("--clients", type=int, default=d.clients)
    parser.add_argument("--every", type=float, default=d.every)
    parser.add_argument("--serve-process", action=argparse.BooleanOptionalAction,
                        default=d.serve_process,
                        help="serve(out_of_process=True), the default: the server runs in a "
                             "child process; --no-serve-process: in a thread of this one")
    ns = parser.parse_args()
    args = Args(minutes=ns.minutes, clients=ns.clients, every=ns.every,
                serve_process=ns.serve_process)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="livetune-soak-"))
    registry = lt.Registry()
    env = DummyVecEnv([_env])
    eval_env = DummyVecEnv([lambda: gym.make(ENV_ID, layout_seed=0)])
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=256, n_epochs=4, device="cpu")
    callback = LiveTuneCallback(registry, run_dir=work, eval_env=eval_env, n_eval_episodes=2)
    callback.attach(model)
    server = lt.serve("127.0.0.1:0", registry=registry, journal=work / "journal.jsonl",
                      run="soak", quiet=True, discoverable=False,
                      out_of_process=args.serve_process)
    stop_at = time.time() + args.minutes * 60
    logs = [str(work / f"client-{i}.jsonl") for i in range(args.clients)]
    spawn = mp.get_context("spawn")  # never fork a process that runs gRPC threads
    procs = [spawn.Process(target=client_process, args=(server.address, stop_at, i, logs[i]))
             for i in range(args.clients)]
    for p in procs:
        p.start()
    sampler = Sampler(args.every, getattr(server, "pid", None) if args.serve_process else None)

    class Until(BaseCallback):
        def _on_step(self) -> bool:
            return time.time() < stop_at

    model.learn(10**9, callback=CallbackList([callback, sampler, Until()]))
    for p in procs:
        p.join(timeout=30)
    server.stop()
    acked = [json.loads(line) for path in logs if Path(path).exists()
             for line in Path(path).read_text().splitlines() if line.strip()]
    journal = {e.v: e for e in lt.read_journal(work / "journal.jsonl")}
    lost = [a for a in acked if a["v"] not in journal or journal[a["v"]].new != a["new"]]
    versions = sorted(journal)
    gaps = [v for v in range(1, versions[-1] + 1) if v not in journal] if versions else []
    first, last = sampler.samples[1] if len(sampler.samples) > 1 else sampler.samples[0], \
        sampler.samples[-1]
    print()
    print(f"soak {args.minutes:g} min, {args.clients} client processes, "
          f"{'out-of-process' if args.serve_process else 'in-process'} server, "
          f"{model.num_timesteps} "
          f"env steps, {len(acked)} acknowledged sets, {len(journal)} journal records")
    print(f"lost updates: {len(lost)}   journal version gaps: {len(gaps)}")
    print(f"rss {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB, threads {first['threads']} -> "
          f"{last['threads']}, fds {first['fds']} -> {last['fds']} (from the second sample on)")
    if "child_rss_mb" in first and "child_rss_mb" in last:
        print(f"serving process: rss {first['child_rss_mb']:.1f} -> {last['child_rss_mb']:.1f} "
              f"MB, threads {first['child_threads']} -> {last['child_threads']}, fds "
              f"{first['child_fds']} -> {last['child_fds']}")
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
