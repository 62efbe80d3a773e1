"""Where does an update storm's CPU go? Per process, in-process vs out-of-process serving.

Serves 20 live variables (journaled) from this process (``thread``: ``serve()``) or from a
child process (``process``: ``serve(out_of_process=True)``), starts 4 storm clients and 1
watcher (``load_procs.py``, separate processes), and reads each process's CPU time from
``/proc`` over a window. No training runs, so the numbers do not depend on the steps/s noise
of a shared machine: the ``training`` row is what the storm costs the training process.
Run::

    python benchmarks/storm_cpu.py                       # thread and process, 1000 and 100/s
    python benchmarks/storm_cpu.py --modes process --rates 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import livetune_rl as lt

sys.path.insert(0, str(Path(__file__).parent))
from load_procs import counter_cell

HELPERS = Path(__file__).with_name("load_procs.py")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, rate: float, seconds: float, storm: int, watchers: int
            ) -> tuple[float, dict[str, float]]:
    """Sets/s and CPU (fraction of a core) per kind of process while the storm runs."""
    tmp = Path(tempfile.mkdtemp(prefix="storm-cpu-"))
    registry = lt.Registry()
    for i in range(20):
        lt.LiveVariable(f"bench.v{i}", 0.0, min=-1e9, max=1e9, registry=registry)
    server = lt.serve("127.0.0.1:0", registry=registry, journal=tmp / "journal.jsonl",
                      run="storm-cpu", discoverable=False, quiet=True,
                      out_of_process=mode == "process", max_calls_per_second=rate)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    cells = []
    for kind, n in (("watch", watchers), ("storm", storm)):
        for i in range(n):
            path = tmp / f"{kind}{i}"
            cells.append((kind, *counter_cell(str(path))))
            procs[f"{kind}{i}"] = subprocess.Popen(
                [sys.executable, str(HELPERS), kind, server.address, str(path)])
    try:
        time.sleep(3.0)  # clients imported and at full speed
        pids = {"training": os.getpid(), **{k: p.pid for k, p in procs.items()}}
        if mode == "process":
            pids["server"] = server.pid  # type: ignore[union-attr]
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        sets0 = sum(c.value for k, _, c in cells if k == "storm")
        start = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - start
        after = {k: cpu_seconds(p) for k, p in pids.items()}
        sets = sum(c.value for k, _, c in cells if k == "storm") - sets0
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
        server.stop(grace=0)
    usage: dict[str, float] = {}
    for name in pids:
        group = name.rstrip("0123456789")
        usage[group] = usage.get(group, 0.0) + (after[name] - before[name]) / elapsed
    return sets / elapsed, usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="thread,process")
    parser.add_argument("--rates", default="1000,100", help="server pacing, calls/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--storm", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=1)
    ns = parser.parse_args()
    print("| mode | pacing | sets/s | training process | server process | storm clients "
          "| watcher | total |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in (float(r) for r in ns.rates.split(",")):
        for mode in ns.modes.split(","):
            sets, usage = measure(mode, rate, ns.seconds, ns.storm, ns.watchers)
            server = f"{usage['server']:.0%}" if "server" in usage else "(in training)"
            print(f"| {mode} | {rate:g}/s | {sets:.0f} | {usage['training']:.1%} | {server} | "
                  f"{usage.get('storm', 0):.0%} | {usage.get('watch', 0):.0%} | "
                  f"{sum(usage.values()):.0%} |", flush=True)
    print(f"\nCPU as a fraction of one core; {ns.storm} storm clients, {ns.watchers} watcher(s), "
          f"{ns.seconds:g} s windows; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
