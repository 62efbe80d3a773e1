"""Light helper processes for the benchmarks: they import livetune_rl's client/server only.

``rl_overhead.py`` starts these with ``subprocess`` (never ``multiprocessing``, whose spawn
would re-import the benchmark and so torch and SB3 in every helper, costing seconds of CPU
while the measured run goes on). Run::

    python benchmarks/load_procs.py storm ADDRESS COUNTER_FILE   # set values as fast as it can
    python benchmarks/load_procs.py watch ADDRESS COUNTER_FILE   # stream changes, count them
    python benchmarks/load_procs.py server EXTRA_VARS MAX_CALLS  # prints its address, serves
                                                                 # until stdin closes
    python benchmarks/load_procs.py waker RATE                   # RATE small messages/s on stdout
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
from multiprocessing.connection import Connection


def counter_cell(path: str) -> tuple[mmap.mmap, ctypes.c_int64]:
    """An int64 shared through the 8-byte file ``path`` (created if missing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)
        mm = mmap.mmap(fd, 8)
    finally:
        os.close(fd)
    return mm, ctypes.c_int64.from_buffer(mm)


def storm(address: str, counter_path: str) -> None:
    """Set ``bench.v0`` as fast as the server lets us, counting acknowledged sets."""
    import livetune_rl as lt

    _mm, count = counter_cell(counter_path)
    sent = 0
    with lt.connect(address) as client:
        while True:
            try:
                client.set({"bench.v0": float(sent % 100)})
                sent += 1
                count.value += 1
            except lt.ClientError:
                time.sleep(0.001)


def watch(address: str, counter_path: str) -> None:
    """Stream every change (``livetune watch``), counting the messages received."""
    import livetune_rl as lt

    _mm, count = counter_cell(counter_path)
    with lt.connect(address) as client:
        for _ in client.watch():
            count.value += 1


def server(extra_vars: int, max_calls: float) -> None:
    """Serve a registry of ``extra_vars`` variables linked to nothing (an upper bound)."""
    import livetune_rl as lt

    registry = lt.Registry()
    for i in range(extra_vars):
        lt.LiveVariable(f"bench.v{i}", 0.0, min=-1e9, max=1e9, registry=registry)
    pacing = {"max_calls_per_second": max_calls} if max_calls else {}
    srv = lt.serve("127.0.0.1:0", registry=registry, journal=False, run="bench",
                   discoverable=False, quiet=True, **pacing)
    print(srv.address, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    srv.stop(grace=0)


def waker(rate: float) -> None:
    """Send a small pickled dict ``rate`` times per second on stdout until it closes."""
    conn = Connection(os.dup(1), readable=False)
    period, i = 1.0 / rate, 0
    next_at = time.perf_counter()
    while True:
        next_at += period
        time.sleep(max(0.0, next_at - time.perf_counter()))
        try:
            conn.send({"bench.v0": float(i % 100), "version": i})
        except OSError:
            return
        i += 1


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    try:
        if kind == "storm":
            storm(rest[0], rest[1])
        elif kind == "watch":
            watch(rest[0], rest[1])
        elif kind == "server":
            server(int(rest[0]), float(rest[1]))
        elif kind == "waker":
            waker(float(rest[0]))
        else:
            raise SystemExit(f"unknown helper {kind!r}")
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    except Exception as exc:  # the server went away at the end of a run
        if type(exc).__name__ != "ClientError":
            raise
