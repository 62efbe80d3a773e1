"""What one GetHistory costs on a large journal: time and the server's peak memory.

Writes a journal of about ``--mb`` megabytes (sets and evaluate events, as a long run leaves),
serves it from this process, and asks for the newest record (``limit=1``), the newest 100,
and ``--concurrent`` calls of ``limit=100`` at once. Peak memory is the growth of this
process's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` before each
case) over its resident size before the case. Run::

    python benchmarks/history_read.py                 # ~38 MB journal
    python benchmarks/history_read.py --mb 5 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import livetune_rl as lt


def write_journal(path: Path, megabytes: float) -> int:
    """A journal of about ``megabytes`` MB: 9 sets, then an evaluate event, repeated."""
    target = int(megabytes * 1e6)
    written = records = 0
    t = 1_764_000_000.0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            lines = []
            for _ in range(1000):
                records += 1
                if records % 10:
                    record = {"v": records, "t": t + records, "kind": "set",
                              "name": f"reward.c{records % 7}", "old": 0.5, "new": 0.25,
                              "source": "alice@host ipv4:127.0.0.1:40000", "step": records * 8}
                else:
                    record = {"v": records, "t": t + records, "kind": "event",
                              "name": "evaluate", "source": "local", "step": records * 8,
                              "data": {"mean_reward": 12.5, "std_reward": 3.25,
                                       "mean_length": 200.0, "episodes": 10}}
                lines.append(json.dumps(record, separators=(",", ":")))
            text = "\n".join(lines) + "\n"
            out.write(text)
            written += len(text)
    return records


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure(client_factory: object, limit: int, concurrent: int) -> tuple[float, float]:
    """Seconds for ``concurrent`` calls at once and the memory peak (MB) above the start."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # reset VmHWM to the current resident size
    except OSError:
        pass
    base = _status("VmRSS")
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with client_factory() as client:  # type: ignore[operator]
                assert client.history(limit=limit), "no records"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(concurrent)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return seconds, (_status("VmHWM") - base) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=38.0, help="journal size in MB")
    parser.add_argument("--concurrent", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (best shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        records = write_journal(path, args.mb)
        registry = lt.Registry(journal=path)
        lt.LiveVariable("reward.c0", 0.5, registry=registry)
        print(f"journal: {path.stat().st_size / 1e6:.1f} MB, {records} records; "
              f"livetune_rl from {os.path.dirname(lt.__file__)}")
        with lt.serve("127.0.0.1:0", registry=registry, discoverable=False, quiet=True,
                      max_calls_per_second=None) as server:

            def factory() -> lt.Client:
                return lt.Client(server.address, timeout=120)

            cases = [("limit=1", 1, 1), ("limit=100", 100, 1),
                     (f"{args.concurrent} x limit=100 at once", 100, args.concurrent)]
            for name, limit, concurrent in cases:
                runs = [measure(factory, limit, concurrent) for _ in range(args.repeat)]
                seconds = min(r[0] for r in runs)
                peak = max(r[1] for r in runs)
                print(f"{name:<26} {seconds * 1000:9.1f} ms (best of {args.repeat})   "
                      f"peak memory +{peak:7.1f} MB")


if __name__ == "__main__":
    main()
