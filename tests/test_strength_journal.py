"""The journal as a user reads it back: what is written is exactly what is read, damage is
skipped line by line, and opening a journal never changes what is already in it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livetune_rl.journal import (
    MAX_DATA_DEPTH,
    ChangeEvent,
    Journal,
    iter_journal,
    iter_journal_backwards,
    parse_line,
    read_journal,
    read_journal_tail,
)


def full_event(v: int = 3) -> ChangeEvent:
    return ChangeEvent(v, 1764380000.5, "applied", "lr", 0.1, 0.01, "training", 700, 2,
                       {"error": "none"})


def test_every_field_survives_the_round_trip(tmp_path: Path) -> None:
    events = [full_event(), ChangeEvent(4, 2.0, "set", "name", None, "text", "peer"),
              ChangeEvent(5, 3.0, "start", "", data={"values": {"a": 1}})]
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append(events)
    assert read_journal(tmp_path / "j.jsonl") == events


def test_a_record_without_optional_fields_reads_with_empty_defaults() -> None:
    event = ChangeEvent.from_record({"v": 1, "t": 0, "kind": "fire"})
    assert (event.name, event.source, event.old, event.new, event.step, event.applies,
            event.data) == ("", "", None, None, None, None, {})


def test_malformed_records_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^unknown kind 'bogus'$"):
        ChangeEvent.from_record({"v": 1, "t": 0, "kind": "bogus"})
    with pytest.raises(ValueError, match=r"^missing field 'v'$"):
        ChangeEvent.from_record({"kind": "set"})


def test_bytes_that_are_not_utf8_and_corrupt_lines_do_not_stop_the_reading(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([full_event(1)])
    with open(path, "ab") as raw:
        raw.write(b'{"v":2,"t":0,"kind":"set","name":"\xff"}\n\n{"v": garbage\n')
    with Journal(path) as journal:
        journal.append([full_event(3)])
    with caplog.at_level(logging.WARNING, logger="livetune_rl.journal"):
        events = list(iter_journal(path))
    assert [e.v for e in events] == [1, 2, 3] and events[1].name == "\ufffd"
    assert f"{path}:4: skipping a torn or corrupt journal record" in caplog.text
    assert caplog.text.count("skipping") == 1  # the blank line is not damage


def test_reopening_a_whole_journal_adds_nothing_before_the_new_records(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([full_event(1)])
    before = path.read_bytes()
    with Journal(path) as journal:
        assert path.read_bytes() == before  # opening alone changes nothing
        journal.append([full_event(2)])
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 2


def test_non_finite_values_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([full_event(1)])
        with pytest.raises(ValueError):
            journal.append([full_event(2), ChangeEvent(3, 0.0, "set", "x", None, float("nan"))])
        journal.append([])  # nothing to write: nothing written
    assert [e.v for e in read_journal(path)] == [1]


def test_records_are_compact_single_lines(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([ChangeEvent(1, 0.5, "set", "a", 1, 2, "me")])
    assert path.read_text() == '{"v":1,"t":0.5,"kind":"set","name":"a","old":1,"new":2,' \
                               '"source":"me"}\n'


def test_fsync_option_syncs_every_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with Journal(tmp_path / "a.jsonl", fsync=True) as journal:
        journal.append([full_event(1)])
        journal.append([full_event(2)])
    assert len(synced) == 2
    with Journal(tmp_path / "b.jsonl") as journal:
        journal.append([full_event(1)])
    assert len(synced) == 2  # the default only flushes
    assert [e.v for e in read_journal(tmp_path / "a.jsonl")] == [1, 2]


def test_close_is_idempotent_and_parent_folders_are_created(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "deep" / "er" / "j.jsonl")
    journal.append([full_event(1)])
    journal.close()
    journal.close()
    assert read_journal(tmp_path / "deep" / "er" / "j.jsonl") == [full_event(1)]
    assert read_journal(tmp_path / "absent.jsonl") == []


def test_a_closed_journal_refuses_to_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.close()
    with pytest.raises(ValueError, match="closed file"):
        journal.append([full_event(1)])
    assert read_journal(tmp_path / "j.jsonl") == []


def test_each_refused_field_is_named_in_the_error() -> None:
    base = {"v": 1, "t": 0, "kind": "set"}
    with pytest.raises(ValueError, match=r"^v must be an integer from 0 to 2\*\*63-1, not -1$"):
        ChangeEvent.from_record({**base, "v": -1})
    with pytest.raises(ValueError, match=r"^new must be a finite number, a bool or text, "
                                         r"not \[1, 2\]$"):
        ChangeEvent.from_record({**base, "new": [1, 2]})
    with pytest.raises(ValueError, match=r"^old must be a finite number"):
        ChangeEvent.from_record({**base, "old": {"a": 1}})
    with pytest.raises(ValueError, match=r"^data must be an object, not list$"):
        ChangeEvent.from_record({**base, "data": [1]})
    with pytest.raises(ValueError, match=r"^data holds a non-finite number$"):
        ChangeEvent.from_record({**base, "data": {"a": [1.0, float("inf")]}})
    # JSON's NaN/Infinity are refused by name, whatever field holds them
    with pytest.raises(ValueError, match=r"^NaN is not a number a journal holds$"):
        parse_line('{"v": 1, "t": NaN, "kind": "set"}')


def nested(levels: int) -> dict:
    """``data`` holding objects and lists ``levels`` deep (``data`` itself is level 1)."""
    data: dict = {"k": [1]}
    for _ in range(levels - 2):
        data = {"k": data}
    return data


def test_data_nested_up_to_the_limit_reads_and_one_level_more_is_refused() -> None:
    base = {"v": 1, "t": 0, "kind": "event"}
    event = ChangeEvent.from_record({**base, "data": nested(MAX_DATA_DEPTH)})
    assert event.data == nested(MAX_DATA_DEPTH)
    with pytest.raises(ValueError, match=rf"^data nested deeper than {MAX_DATA_DEPTH} levels$"):
        ChangeEvent.from_record({**base, "data": nested(MAX_DATA_DEPTH + 1)})


def long_journal(path: Path, count: int) -> list[ChangeEvent]:
    """``count`` records of ~200 bytes each, so the file spans several 64 KiB read blocks."""
    events = [ChangeEvent(v, float(v), "set", f"n{v % 7}", None, v, "me",
                          data={"pad": "x" * 150}) for v in range(1, count + 1)]
    with Journal(path) as journal:
        journal.append(events)
    return events


def test_backwards_reading_returns_every_record_newest_first_across_blocks(
        tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = long_journal(path, 1000)
    assert path.stat().st_size > 3 * 65536
    assert list(iter_journal_backwards(path)) == events[::-1]


def test_the_tail_is_the_newest_records_oldest_first_and_says_whether_more_match(
        tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = long_journal(path, 1000)
    assert read_journal_tail(path, limit=5) == (events[-5:], True)
    assert read_journal_tail(path, limit=1000) == (events, False)
    assert read_journal_tail(path, since=997, limit=5) == (events[-3:], False)
    assert read_journal_tail(path, since=995, limit=5) == (events[-5:], False)
    assert read_journal_tail(path, since=994, limit=5) == (events[-5:], True)
    assert read_journal_tail(path, limit=0) == (events[-1:], True)  # at least one
    sevens, more = read_journal_tail(path, limit=3, match=lambda name: name == "n0")
    assert [e.v for e in sevens] == [980, 987, 994] and more
    assert read_journal_tail(tmp_path / "absent.jsonl", limit=5) == ([], False)


def test_backwards_reading_skips_damage_and_names_its_byte_offset(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"v": garbage\n\n')  # a damaged first line at byte 0
    with Journal(path) as journal:
        journal.append([full_event(1), full_event(2)])
    size = path.stat().st_size
    with open(path, "ab") as raw:
        raw.write(b'{"v":3,"t":0,"kind":"set","name":"\xff"}\n{"v":4,"t":0,"ki')  # torn tail
    with caplog.at_level(logging.WARNING, logger="livetune_rl.journal"):
        events = list(iter_journal_backwards(path))
    assert [e.v for e in events] == [3, 2, 1] and events[0].name == "\ufffd"
    offset = size + len(b'{"v":3,"t":0,"kind":"set","name":"\xff"}\n')
    assert caplog.messages == [  # newest first, each with its byte offset and the reason
        f"{path} (byte {offset}): skipping a torn or corrupt journal record: Unterminated "
        "string starting at: line 1 column 14 (char 13)",
        f"{path} (byte 0): skipping a torn or corrupt journal record: Expecting value: line 1 "
        "column 7 (char 6)"]
    assert caplog.text.count("skipping") == 2  # the blank line is not damage


def test_a_journal_reads_back_the_same_under_a_non_utf8_locale(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append([ChangeEvent(1, 0.0, "set", "lr", None, "café", "Zoë")])
    # a POSIX locale without UTF-8 mode: Python's default text encoding is then ASCII
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0"}
    code = ("import sys; from livetune_rl.journal import read_journal; "
            "[e] = read_journal(sys.argv[1]); print(ascii((e.new, e.source)))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == ascii(("café", "Zoë"))
