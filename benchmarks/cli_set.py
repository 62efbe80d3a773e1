"""Wall time of one ``livetune set`` command against a running server (not a test).

Run it::

    .venv/bin/python benchmarks/cli_set.py                 # 30 runs of .venv/bin/livetune
    .venv/bin/python benchmarks/cli_set.py --runs 50 --livetune other/.venv/bin/livetune

It serves a registry with one variable from this process (in a thread, on a free loopback
port, no journal), then runs ``livetune set --addr ADDR lr VALUE`` ``--runs`` times as a child
process, one after the other, each with a new value, and checks that every set arrived
(after one untimed run that caches bytecode, as any installation does). It
prints the p50, p90 and minimum wall time of the whole command (interpreter start, imports,
the RPC, exit), the p50 of the CPU time it used (user + system: less sensitive than wall
time to a machine busy with other work), and the time one such command spends importing
modules (``-X importtime``).
Give ``--livetune`` more than once to time several installations against the same server,
alternating runs so a change in the machine's load falls on each alike; the first is the
reference for ratios. The goal for this command is a p50 of 150 ms or less on a 2-core
machine that is otherwise idle; a loaded machine shows it in the minimum and the ratio.

Two floor rows, timed in the same alternation, show how much of that time is not livetune's:
``python -c pass`` with the same interpreter (start-up and ``site``, which includes the
editable-install finder), and ``python`` importing ``grpc`` and making the same unary
``SetVariables`` call with request bytes serialized beforehand (no protobuf, no livetune
module). No ``livetune set`` can be faster than the second row while it speaks gRPC
through grpcio.
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


RAW_SET = """
import sys, grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    channel.unary_unary("/livetune.v1.LiveTune/SetVariables")(bytes.fromhex(sys.argv[2]),
                                                              timeout=10)
"""


def set_request_hex(name: str, value: float) -> str:
    """A serialized ``SetVariablesRequest`` that sets ``name`` to ``value``, as hex."""
    from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb

    request = pb.SetVariablesRequest(
        assignments=[pb.Assignment(name=name, value=pb.Value(text=repr(value)))])
    return request.SerializeToString().hex()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="sets timed per installation")
    parser.add_argument("--livetune", action="append", type=Path, default=None,
                        help="a livetune command to time (repeatable; default: this venv's)")
    parser.add_argument("--no-floor", action="store_true",
                        help="leave out the two floor rows (interpreter start; grpc + raw call)")
    args = parser.parse_args()
    commands: list[Path] = args.livetune or [DEFAULT_LIVETUNE]
    python = str(Path(sys.executable))
    floors = [] if args.no_floor else ["python -c pass", "python + grpc + raw call"]
    registry = lt.Registry()
    lr = lt.LiveVariable("lr", 0.5, min=0.0, max=1.0, registry=registry)
    # PYTHONDONTWRITEBYTECODE is dropped so that the untimed first run caches bytecode, as
    # any installation does; with it set, every run would compile livetune from source.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIVETUNE_ADDR", "LIVETUNE_TOKEN", "PYTHONDONTWRITEBYTECODE")}
    rows: list[Path | str] = [*commands, *floors]
    times: dict[Path | str, list[float]] = {c: [] for c in rows}
    cpu: dict[Path | str, list[float]] = {c: [] for c in rows}
    with lt.serve("127.0.0.1:0", registry=registry, journal=False, discoverable=False,
                  quiet=True, run="cli-bench", max_calls_per_second=None) as server:
        for cmd in commands:  # one untimed run each: page cache, .pyc files
            subprocess.run([str(cmd), "set", "--addr", server.address, "lr", "0.5"],
                           check=True, capture_output=True, env=env)
        for n in range(args.runs):
            for row in rows:
                value = round((n + 1) / (args.runs + 2), 6)
                if row == "python -c pass":
                    argv = [python, "-c", "pass"]
                elif row == "python + grpc + raw call":
                    argv = [python, "-c", RAW_SET, server.address, set_request_hex("lr", value)]
                else:
                    argv = [str(row), "set", "--addr", server.address, "lr", str(value)]
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, env=env)
                times[row].append((time.perf_counter() - start) * 1000)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[row].append((after.ru_utime - used.ru_utime + after.ru_stime
                                 - used.ru_stime) * 1000)
                if row != "python -c pass" and lr.value != value:
                    raise SystemExit(f"{row}: set lr={value} did not arrive (lr={lr.value})")
        imports = {cmd: import_ms(cmd, server.address, env) for cmd in commands}
    reference = pct(times[commands[0]], 50)
    print(f"livetune set: wall time of the whole command, {args.runs} runs each "
          f"(cpu count {os.cpu_count()})")
    print(f"{'command':<48} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'cpu p50':>8} "
          f"{'import ms':>10} {'p50 ratio':>10}")
    for row in rows:
        values = times[row]
        p50 = pct(values, 50)
        imported = f"{imports[row]:>10.1f}" if row in imports else f"{'-':>10}"
        print(f"{row!s:<48} {p50:>8.1f} {pct(values, 90):>8.1f} {min(values):>8.1f} "
              f"{pct(cpu[row], 50):>8.1f} {imported} {p50 / reference:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
