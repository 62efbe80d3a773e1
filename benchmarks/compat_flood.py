"""What a flood of the original LiveTune protocol costs a training loop, with measured figures.

A pure-Python training loop (a few hundred microseconds of work per step, reading a live
variable each step) runs in this process next to an :class:`OriginalProtocolListener`, while a
child process attacks the listener over loopback for a few seconds per phase:

* ``baseline``: no client.
* ``sets``: 8 threads sending valid ``tune``-style sets (lookup, type, value) in a tight loop.
* ``sets-unpaced``: the same against a listener built with ``max_calls_per_second=None``.
* ``garbage``: 12 connections that never speak (held open) plus 8 threads sending 5,000
  random bytes per connection.

For each phase it prints the loop's steps/s (and its ratio to the baseline; on a loaded
machine the attacking child's own CPU counts there too), the changes the listener applied
and the requests it refused or dropped per second, the CPU the listener's threads used (% of
one core), and the process's resident memory at the end of the phase. Nothing is written.

Run::

    python benchmarks/compat_flood.py               # 4 s per phase
    python benchmarks/compat_flood.py --seconds 2
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import textwrap
import threading
import time

import livetune_rl as lt
from livetune_rl.compat import OriginalProtocolListener

CLIENT = textwrap.dedent("""
    import os, socket, sys, threading, time
    mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    end = time.monotonic() + seconds
    sent = [0]

    def one_set(i):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"request_type: dictionary_entry - lr")
            var_port = int(s.recv(64))
        with socket.create_connection(("127.0.0.1", var_port), timeout=5) as s:
            s.sendall(b"request_type: update_var")
            s.recv(64)
            s.sendall(str(0.001 + (i % 100) * 1e-5).encode())

    def garbage(i):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(os.urandom(5000))
            s.recv(64)

    def worker():
        i = 0
        while time.monotonic() < end:
            try:
                (one_set if mode.startswith("sets") else garbage)(i)
            except (OSError, ValueError):
                pass
            i += 1
            sent[0] += 1

    idle = []
    if mode == "garbage":
        for _ in range(12):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                pass
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sent[0])
""")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def train_steps(lr: lt.LiveVariable, seconds: float) -> tuple[float, float]:
    """Steps per second of a pure-Python loop that reads ``lr`` every step, and the CPU
    seconds the rest of this process (the listener's threads) used meanwhile."""
    steps, end = 0, time.monotonic() + seconds
    process0, thread0 = time.process_time(), time.thread_time()
    while time.monotonic() < end:
        rate = lr.value
        total = 0.0
        for i in range(300):
            total += i * rate
        steps += 1
    others = (time.process_time() - process0) - (time.thread_time() - thread0)
    return steps / seconds, others


def phase(name: str, seconds: float, paced: bool, baseline: float | None) -> float:
    reg = lt.Registry()
    lr = lt.LiveVariable("lr", 0.001, min=0.0, max=1.0, registry=reg)
    limit = 100.0 if paced else None
    with OriginalProtocolListener(reg, 0, max_calls_per_second=limit, quiet=True) as listener:
        client = None
        if name != "baseline":
            client = subprocess.Popen([sys.executable, "-c", CLIENT, name, str(listener.port),
                                       str(seconds)], stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)  # let it connect
        rate, listener_cpu = train_steps(lr, seconds)
        if client is not None:
            client.communicate(timeout=60)
        stats = listener.stats
        threads = threading.active_count()
    ratio = f"{rate / baseline:5.2f}x" if baseline else "  1.00x"
    print(f"{name:13s} {rate:9.0f} steps/s {ratio}   applied {stats.changes / seconds:6.1f}/s"
          f"   refused {stats.refused / seconds:6.1f}/s   dropped {stats.dropped / seconds:6.1f}/s"
          f"   listener CPU {100 * listener_cpu / seconds:4.1f}%   threads {threads}"
          f"   RSS {rss_mib():6.1f} MiB", flush=True)
    return rate


def main() -> None:
    logging.getLogger("livetune_rl.compat").setLevel(logging.ERROR)  # a refusal per request
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase (default 4)")
    args = parser.parse_args()
    base = phase("baseline", args.seconds, True, None)
    for name, paced in (("sets", True), ("sets-unpaced", False), ("garbage", True)):
        phase(name, args.seconds, paced, base)


if __name__ == "__main__":
    main()
