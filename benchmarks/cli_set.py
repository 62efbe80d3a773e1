"""Wall time of one ``livetune set`` command against a running server (not a test).

Run it::

    .venv/bin/python benchmarks/cli_set.py                 # 30 runs of .venv/bin/livetune
    .venv/bin/python benchmarks/cli_set.py --runs 50 --livetune other/.venv/bin/livetune

It serves a registry with one variable from this process (in a thread, on a free loopback
port, no journal), then runs ``livetune set --addr ADDR lr VALUE`` ``--runs`` times as a child
process, one after the other, each with a new value, and checks that every set arrived. It
prints the p50, p90 and minimum wall time of the whole command (interpreter start, imports,
the RPC, exit), the p50 of the CPU time it used (user + system: less sensitive than wall
time to a machine busy with other work), and the time one such command spends importing
modules (``-X importtime``).
Give ``--livetune`` more than once to time several installations against the same server,
alternating runs so a change in the machine's load falls on each alike; the first is the
reference for ratios. The goal for this command is a p50 of 150 ms or less on a 2-core
machine that is otherwise idle; a loaded machine shows it in the minimum and the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import livetune_rl as lt

DEFAULT_LIVETUNE = Path(sys.executable).parent / "livetune"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def import_ms(livetune: Path, address: str, env: dict[str, str]) -> float:
    """Time (ms) one ``livetune set`` spends importing modules: the sum of the top-level
    imports ``python -X importtime`` reports, run with the interpreter of ``livetune``."""
    python = livetune.parent / "python"
    out = subprocess.run([str(python), "-X", "importtime", str(livetune), "set",
                          "--addr", address, "lr", "0.5"],
                         capture_output=True, text=True, check=True, env=env).stderr
    total = 0
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and \
                not parts[2].startswith("  ") and parts[1].strip().isdigit():
            total += int(parts[1])
    return total / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="sets timed per installation")
    parser.add_argument("--livetune", action="append", type=Path, default=None,
                        help="a livetune command to time (repeatable; default: this venv's)")
    args = parser.parse_args()
    commands: list[Path] = args.livetune or [DEFAULT_LIVETUNE]
    registry = lt.Registry()
    lr = lt.LiveVariable("lr", 0.5, min=0.0, max=1.0, registry=registry)
    env = {k: v for k, v in os.environ.items() if k not in ("LIVETUNE_ADDR", "LIVETUNE_TOKEN")}
    times: dict[Path, list[float]] = {c: [] for c in commands}
    cpu: dict[Path, list[float]] = {c: [] for c in commands}
    with lt.serve("127.0.0.1:0", registry=registry, journal=False, discoverable=False,
                  quiet=True, run="cli-bench", max_calls_per_second=None) as server:
        for cmd in commands:  # one untimed run each: page cache, .pyc files
            subprocess.run([str(cmd), "set", "--addr", server.address, "lr", "0.5"],
                           check=True, capture_output=True, env=env)
        for n in range(args.runs):
            for cmd in commands:
                value = round((n + 1) / (args.runs + 2), 6)
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run([str(cmd), "set", "--addr", server.address, "lr", str(value)],
                               check=True, capture_output=True, env=env)
                times[cmd].append((time.perf_counter() - start) * 1000)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[cmd].append((after.ru_utime - used.ru_utime + after.ru_stime
                                 - used.ru_stime) * 1000)
                if lr.value != value:
                    raise SystemExit(f"{cmd}: set lr={value} did not arrive (lr={lr.value})")
        imports = {cmd: import_ms(cmd, server.address, env) for cmd in commands}
    reference = pct(times[commands[0]], 50)
    print(f"livetune set: wall time of the whole command, {args.runs} runs each "
          f"(cpu count {os.cpu_count()})")
    print(f"{'command':<48} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'cpu p50':>8} "
          f"{'import ms':>10} {'p50 ratio':>10}")
    for cmd in commands:
        values = times[cmd]
        p50 = pct(values, 50)
        print(f"{cmd!s:<48} {p50:>8.1f} {pct(values, 90):>8.1f} {min(values):>8.1f} "
              f"{pct(cpu[cmd], 50):>8.1f} "
              f"{imports[cmd]:>10.1f} {p50 / reference:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
