"""What does making a run live-tunable cost? PPO on Hungry-Thirsty, side by side in one run.

Arms, alternated ``--repeats`` times so drift (thermal, other load) hits all alike:

* **plain**: SB3 PPO on ``livetune/HungryThirsty-v0`` as SB3 users run it (the env's reward).
* **live arms** (``--arms``, comma-separated): the same, plus the ``LiveRewardWrapper``, the
  ``LiveTuneCallback`` (every PPO knob and reward weight live), ``--extra-vars`` more live
  variables, ``--watchers`` client processes streaming changes, and with ``--storm N`` N client
  processes setting values as fast as the server lets them for the whole run. The registry is
  served by ``serve()`` in the training process (``thread``), from a child process
  (``process``: ``serve(out_of_process=True)``), or, to measure upper bounds, the storm hits a
  server process linked to nothing (``detached``) or a receiver thread is merely woken N
  times/s through a pipe (``wakeups@N``). ``MODE@N`` sets the server pacing to N calls/s.

Helper processes are started with ``subprocess`` from ``load_procs.py`` and import no torch.
Prints environment steps per second of each run and the ratio live/plain (goals: >= 0.97
without a storm, >= 0.90 under a storm of 4). Run::

    python benchmarks/rl_overhead.py                  # ~3 minutes: the process and thread arms
    python benchmarks/rl_overhead.py --quick
    python benchmarks/rl_overhead.py --arms process --repeats 6
    python benchmarks/rl_overhead.py --storm 4 --repeats 6 --arms process,thread,process@1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS, HUNGRY_THIRSTY_ID  # registers the ids
from livetune_rl.sb3 import LiveTuneCallback
from livetune_rl.sidecar import serve_process
from livetune_rl.wrappers import LiveRewardWrapper

sys.path.insert(0, str(Path(__file__).parent))
from load_procs import counter_cell

ENV_ID = HUNGRY_THIRSTY_ID
WEIGHTS = dict(DEFAULT_REWARD_WEIGHTS)  # the fitness-aligned reward
MODES = ("thread", "process", "detached", "wakeups")


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
    mode: str = "thread"  # thread | process | detached | wakeups
    wakeups: float = 0.0
    niceness: int | None = None  # process arms: the serving process's niceness


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


HELPERS = Path(__file__).with_name("load_procs.py")


class Load:
    """Helper processes around one measured run: storm clients, a detached server, a waker.

    Started with ``subprocess`` so they import no torch (see ``load_procs.py``); storm clients
    count their acknowledged sets in shared 8-byte files.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.counters: list[Any] = []

    def start(self, *args: str, stdin: bool = False, stdout: bool = False
              ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(HELPERS), *args],
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else None)
        self.procs.append(proc)
        return proc

    def clients(self, kind: str, address: str, n: int) -> None:
        for i in range(n):
            path = self.tmp / f"{kind}{i}"
            path.unlink(missing_ok=True)
            self.counters.append((kind, *counter_cell(str(path))))
            self.start(kind, address, str(path))

    def count(self, kind: str) -> int:
        return sum(cell.value for k, _, cell in self.counters if k == kind)

    def wait_running(self, storm: int, watchers: int, timeout: float = 30.0) -> None:
        """Until every storm client has had a set acknowledged and every watcher has received
        a change: starting 5 Python processes takes seconds of CPU on 2 cores, which must not
        fall inside the measured run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cells = [(k, c.value) for k, _, c in self.counters]
            if (sum(1 for k, v in cells if k == "storm" and v > 0) >= storm
                    and sum(1 for k, v in cells if k == "watch" and v > 0) >= watchers):
                return
            time.sleep(0.05)
        raise RuntimeError(f"benchmark helpers did not start within {timeout:g} s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
            else:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def run_live(args: Args, tmp: Path) -> tuple[float, dict[str, Any]]:
    """One live run. ``thread``/``process``: the registry served in this process or from a
    child process (``serve(out_of_process=...)``), storm against it. ``detached``: training
    with the wrapper/callback on a local registry while the storm hits a server process linked
    to nothing (the upper bound of any out-of-process design). ``wakeups``: no server, a
    receiver thread here woken ``--wakeups`` times/s through a pipe (the cost of a wake-up)."""
    registry = lt.Registry()
    for i in range(args.extra_vars):
        lt.LiveVariable(f"bench.v{i}", 0.0, min=-1e9, max=1e9, registry=registry)
    model = _model(_live_env, args)
    callback = LiveTuneCallback(registry, serve=False)  # each mode serves (or not) itself
    load = Load(tmp)
    server: Any = None
    received = [0]
    address = ""
    if args.mode in ("thread", "process"):
        pacing = {"max_calls_per_second": args.max_calls} if args.max_calls else {}
        if args.mode == "process" and args.niceness is not None:
            server = serve_process("127.0.0.1:0", registry=registry, journal=False,
                                   run="bench", discoverable=False, quiet=True,
                                   niceness=args.niceness, **pacing)
        else:
            server = lt.serve("127.0.0.1:0", registry=registry, journal=False, run="bench",
                              discoverable=False, quiet=True,
                              out_of_process=args.mode == "process", **pacing)
        address = server.address
    elif args.mode == "detached":
        proc = load.start("server", str(args.extra_vars), str(args.max_calls), stdin=True,
                          stdout=True)
        assert proc.stdout is not None
        address = proc.stdout.readline().decode().strip()
    else:
        proc = load.start("waker", str(args.wakeups), stdout=True)
        assert proc.stdout is not None
        conn = Connection(os.dup(proc.stdout.fileno()), writable=False)
        var = registry.variable("bench.v0")

        def receive() -> None:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    return
                var.value = msg["bench.v0"]  # the swap a sidecar receiver does
                var.version = msg["version"]
                received[0] += 1

        threading.Thread(target=receive, daemon=True).start()
    if address:
        load.clients("watch", address, args.watchers)
        load.clients("storm", address, args.storm)
    load.wait_running(args.storm, args.watchers if args.storm else 0)
    time.sleep(0.5)
    start = time.perf_counter()
    sets0, watched0, received[0] = load.count("storm"), load.count("watch"), 0
    model.learn(args.timesteps, callback=callback)
    elapsed = time.perf_counter() - start
    rate = model.num_timesteps / elapsed
    sets = load.count("storm") - sets0
    received[0] += load.count("watch") - watched0
    load.stop()
    if server is not None:
        server.stop(grace=0)
    callback.close()
    time.sleep(0.5)  # the helpers' exit is not charged to the next run
    return rate, {"storm_sets_per_s": round(sets / elapsed),
                  "received_per_s": round(received[0] / elapsed)}


def parse_arm(text: str, args: Args) -> Args:
    """``MODE[@N][~NICE]``: N is the server pacing (calls/s) or, for ``wakeups``,
    wake-ups/s; NICE the serving process's niceness (``process`` only)."""
    text, _, nice = text.partition("~")
    mode, _, number = text.partition("@")
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"unknown arm {text!r}: modes are {', '.join(MODES)}")
    if mode == "wakeups":
        return replace(args, mode=mode, wakeups=float(number or 50))
    return replace(args, mode=mode, max_calls=float(number) if number else args.max_calls,
                   niceness=int(nice) if nice else None)


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
    parser.add_argument("--arms", default="process,thread",
                        help="comma-separated live arms MODE[@N], each run after plain in "
                             "every repeat. thread: serve() in the training process; "
                             "process: serve(out_of_process=True); detached: storm against "
                             "a server process linked to nothing (an upper bound); "
                             "wakeups@N: no server, a receiver thread woken N times/s. "
                             "N after thread/process/detached: pacing in calls/s; "
                             "~NICE after process: the serving process's niceness "
                             "(default 10)")
    parser.add_argument("--quick", action="store_true", help="4k steps, 1 repeat")
    ns = parser.parse_args()
    args = Args(timesteps=4096 if ns.quick else ns.timesteps, repeats=1 if ns.quick
                else ns.repeats, n_envs=ns.n_envs, extra_vars=ns.extra_vars,
                watchers=ns.watchers, storm=ns.storm, max_calls=ns.max_calls)
    names = [a.strip() for a in ns.arms.split(",") if a.strip()]
    arms = {name: parse_arm(name, args) for name in names}
    torch.set_num_threads(1)  # a small MLP: one thread is fastest and least noisy
    run_plain(Args(timesteps=2048))  # warm-up: imports, torch kernels
    plain: list[float] = []
    live: dict[str, list[float]] = {name: [] for name in arms}
    tmp = Path(tempfile.mkdtemp(prefix="rl-overhead-"))
    for i in range(args.repeats):
        plain.append(run_plain(args))
        line = f"repeat {i + 1}: plain {plain[-1]:6.0f}"
        for name, arm in arms.items():
            rate, extra = run_live(arm, tmp)
            live[name].append(rate)
            line += (f" | {name} {rate:6.0f} ({rate / plain[-1]:.3f}, "
                     f"{extra['storm_sets_per_s']} sets/s, {extra['received_per_s']} recv/s)")
        print(line, flush=True)
    print()
    width = max(len(n) for n in ["plain", *arms])
    # the ratio of the means, and the median of the per-repeat ratios (each live run against
    # the plain run just before it), which a stray burst of load on a shared VM moves less
    print(f"| {'arm':{width}} | steps/s (mean of {args.repeats}) | ratio of means | "
          "median ratio | per-repeat ratios |")
    print(f"|{'-' * (width + 2)}|--------------------|----------------|--------------|"
          "-------------------|")
    print(f"| {'plain':{width}} | {statistics.mean(plain):18.0f} | {1:14.3f} | {1:12.3f} | |")
    for name, rates in live.items():
        ratios = [lv / pl for lv, pl in zip(rates, plain, strict=True)]
        pairs = " ".join(f"{r:.2f}" for r in ratios)
        print(f"| {name:{width}} | {statistics.mean(rates):18.0f} | "
              f"{statistics.mean(rates) / statistics.mean(plain):14.3f} | "
              f"{statistics.median(ratios):12.3f} | {pairs} |")
    print(f"\ntimesteps {args.timesteps} x {args.n_envs} env(s), {args.extra_vars} extra vars, "
          f"{args.watchers} watcher process(es), {args.storm} storm client process(es), "
          f"default pacing {args.max_calls or 'serve()'}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
