"""The JSONL change journal: permissions, flush-before-ack, torn lines, reopen, kill -9."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PYTHON

import livetune_rl as lt
from livetune_rl.journal import ChangeEvent, Journal, iter_journal, read_journal


def test_journal_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "j.jsonl"
    old = os.umask(0o000)  # even a permissive umask must not widen it
    try:
        with Journal(path):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_round_trip_and_optional_fields_left_out(tmp_path: Path) -> None:
    event = ChangeEvent(3, 1.5, "set", "lr", 0.1, 0.01, "me", 7)
    record = event.to_record()
    assert "applies" not in record and "data" not in record and record["step"] == 7
    assert ChangeEvent.from_record(record) == event
    fire = ChangeEvent(4, 2.0, "fire", "save", None, 1, "me")
    assert "old" not in fire.to_record() and "step" not in fire.to_record()
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append([event, fire])
        journal.append([])
    assert read_journal(tmp_path / "j.jsonl") == [event, fire]


def test_registry_journals_before_acknowledging(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, registry=reg)
    lt.LiveTrigger("save", registry=reg)
    reg.attach_journal(path)  # the start record holds the values in effect
    reg.step = 12
    for n in range(5):
        event = reg.set({"lr": 0.01 * (n + 1)}, source="test")[0]
        last = read_journal(path)[-1]  # readable at once: flushed before set() returned
        assert last == event
    reg.fire("save")
    kinds = [e.kind for e in read_journal(path)]
    assert kinds == ["start", "set", "set", "set", "set", "set", "fire"]
    records = read_journal(path)
    assert records[0].data["values"] == {"lr": 0.1} and records[0].v == 1
    assert [e.v for e in records] == list(range(1, 8))
    assert all(e.step == 12 for e in records[1:]) and records[1].source == "test"


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([ChangeEvent(1, 1.0, "set", "a", 0, 1),
                        ChangeEvent(2, 2.0, "set", "a", 1, 2)])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"v":3,"t":3.0,"kind":"se')  # killed mid-write
    assert [e.v for e in read_journal(path)] == [1, 2]


def test_corrupt_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    good = json.dumps(ChangeEvent(1, 1.0, "set", "a", 0, 1).to_record())
    path.write_text("\n".join([good, "null", "[1]", "12", '{"v": "x", "t": 1, "kind": "set"}',
                               '{"v": 2, "t": 1, "kind": "bogus"}', "", "\x00\xff", good]) + "\n")
    assert [e.v for e in iter_journal(path)] == [1, 1]
    assert read_journal(tmp_path / "missing.jsonl") == []


def test_reopen_after_torn_line_does_not_glue_records(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([ChangeEvent(1, 1.0, "set", "a", 0, 1)])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"v":2,"t":2.0,"ki')
    reg = lt.Registry()
    lt.LiveVariable("a", 1, registry=reg)
    reg.continue_versions(2)
    reg.attach_journal(path)  # resume: appends after the torn line
    reg.set({"a": 5})
    records = read_journal(path)
    assert [(e.v, e.kind) for e in records] == [(1, "set"), (3, "start"), (4, "set")]
    assert records[-1].new == 5


KILLED_WRITER = textwrap.dedent("""
    import sys
    import livetune_rl as lt
    reg = lt.Registry(journal=sys.argv[1])
    x = lt.LiveVariable("x", 0, registry=reg)
    lt.LiveVariable("s", "", registry=reg)
    n = 0
    while True:
        n += 1
        e = reg.set({"x": n, "s": "y" * (n % 300)})
        print(e[0].v, e[1].v, flush=True)
""")


@pytest.mark.timeout(60)
def test_process_killed_mid_run_leaves_a_readable_journal(tmp_path: Path,
                                                          sub_env: dict[str, str]) -> None:
    path = tmp_path / "j.jsonl"
    proc = subprocess.Popen([PYTHON, "-c", KILLED_WRITER, str(path)], env=sub_env,
                            stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "writer died"
            acked.extend(int(v) for v in line.split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    records = read_journal(path)
    versions = [e.v for e in records]
    assert versions == list(range(1, len(versions) + 1))  # whole, in order, no gap
    assert set(acked) <= set(versions)  # every acknowledged set is there
