"""Many threads and processes setting the same and different variables at once.

Every acknowledged set that changed a value must be in the journal (a set to the value a
variable already holds is acknowledged as unchanged, and not journaled), versions must
strictly increase in the file, and the final value must be the one of the last acknowledged
set.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LIVETUNE, PYTHON, Children

import livetune_rl as lt
from livetune_rl.journal import ChangeEvent, read_journal


def _registry(n_workers: int) -> lt.Registry:
    reg = lt.Registry()
    lt.LiveVariable("shared", 0, registry=reg)
    for i in range(n_workers):
        lt.LiveVariable(f"own{i}", 0, registry=reg)
    return reg


def _check(journal: Path, acked: list[tuple[int, str, int]], reg: lt.Registry) -> None:
    records = [e for e in read_journal(journal) if e.kind == "set"]
    versions = [e.v for e in read_journal(journal)]
    assert versions == sorted(set(versions)), "versions must strictly increase in the journal"
    by_version = {e.v: e for e in records}
    for version, name, value in acked:
        event = by_version.get(version)
        assert event is not None, f"acknowledged set v{version} missing from the journal"
        assert (event.name, event.new) == (name, value)
    assert len(records) == len(acked)  # nothing journaled that was not acknowledged
    assert len({v for v, _, _ in acked}) == len(acked)  # no version handed out twice
    last: dict[str, tuple[int, int]] = {}
    for version, name, value in acked:
        if name not in last or version > last[name][0]:
            last[name] = (version, value)
    for name, (version, value) in last.items():
        var = reg.variable(name)
        assert (var.value, var.version) == (value, version)
    # old -> new chains: each set of `shared` saw the value of the set just before it
    chain = [e for e in records if e.name == "shared"]
    for before, after in itertools.pairwise(chain):
        assert after.old == before.new


def test_threads_over_grpc(tmp_path: Path, start_server: Callable[..., Any]) -> None:
    n_threads, per_thread = 6, 60
    reg = _registry(n_threads)
    journal = tmp_path / "j.jsonl"
    server = start_server(reg, journal=journal)
    acked: list[tuple[int, str, int]] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with lt.connect(server.address) as client:
                for n in range(per_thread):
                    value = i * 1000 + n
                    events = client.set({"shared": value, f"own{i}": value} if n % 3 == 0
                                        else {"shared" if n % 2 else f"own{i}": value})
                    with lock:
                        acked.extend((e.v, e.name, e.new)  # type: ignore[misc]
                                     for e in events if not e.unchanged)
        except BaseException as exc:
            failures.append(exc)

    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # the training loop: versions it sees never go back
        var = reg.variable("shared")
        while not stop.is_set():
            seen.append(var.version)
            time.sleep(0)  # a training step releases the GIL (numpy/torch kernels do)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    loop = threading.Thread(target=reader)
    loop.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    loop.join()
    assert not failures, failures
    assert seen == sorted(seen)
    _check(journal, acked, reg)


def test_threads_local_sets(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    reg = _registry(4)
    reg.attach_journal(journal)
    acked: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for n in range(300):
            name = "shared" if n % 2 else f"own{i}"
            (event,) = reg.set({name: n}, source=f"t{i}")
            if not event.unchanged:  # a set to the value it holds is not journaled
                with lock:
                    acked.append((event.v, name, n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check(journal, acked, reg)


SETTER = textwrap.dedent("""
    import json, sys
    import livetune_rl as lt
    address, i, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with lt.connect(address) as client:
        for n in range(count):
            value = i * 100000 + n + 1  # never a variable's default (0): every set changes it
            names = ["shared"] if n % 2 else [f"own{i}"]
            if n % 5 == 0:
                names = ["shared", f"own{i}"]
            events = client.set({name: value for name in names})
            for e in events:
                if not e.unchanged:
                    print(json.dumps([e.v, e.name, e.new]), flush=True)
""")


@pytest.mark.timeout(90)
def test_processes_over_grpc(tmp_path: Path, start_server: Callable[..., Any],
                             children: Children) -> None:
    n_procs, per_proc = 4, 80
    reg = _registry(n_procs)
    journal = tmp_path / "j.jsonl"
    server = start_server(reg, journal=journal)
    procs = [children.popen([PYTHON, "-c", SETTER, server.address, str(i), str(per_proc)])
             for i in range(n_procs)]
    acked: list[tuple[int, str, int]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        acked.extend(tuple(json.loads(line)) for line in out.splitlines())  # type: ignore[misc]
    assert len(acked) == n_procs * (per_proc + per_proc // 5)
    _check(journal, acked, reg)


def test_change_event_round_trips_through_journal_under_load(tmp_path: Path) -> None:
    # Many writers of long strings: lines must never interleave inside the file.
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lt.LiveVariable("s", "", registry=reg)

    def worker(i: int) -> None:
        for n in range(100):
            reg.set({"s": chr(ord("a") + i) * (1000 + n)})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    assert len(lines) == 401
    events = [ChangeEvent.from_record(json.loads(line)) for line in lines]
    assert all(len(set(e.new)) == 1 for e in events[1:])  # type: ignore[arg-type]


def test_concurrent_processes_with_cli(tmp_path: Path, start_server: Callable[..., Any],
                                       sub_env: dict[str, str]) -> None:
    reg = _registry(1)
    journal = tmp_path / "j.jsonl"
    server = start_server(reg, journal=journal)
    procs = [subprocess.Popen([str(LIVETUNE), "set", "--json", "--addr", server.address,
                               "shared", str(n)], env=sub_env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in range(6)]
    acked = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        (record,) = json.loads(out)
        if not record.get("data", {}).get("unchanged"):
            acked.append((record["v"], record["name"], record["new"]))
    _check(journal, acked, reg)
