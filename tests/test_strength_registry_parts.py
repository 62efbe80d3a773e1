"""Registry seams a serving process drives: handing writes over and back, mirroring
definitions, adopting the training loop's records, publishing committed events, and what a
failing journal says (written to kill the mutants ``benchmarks/mutation.py registry`` found)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.journal import ChangeEvent, read_journal
from livetune_rl.patterns import NameFilter
from livetune_rl.registry import LiveTrigger, LiveVariable


class RecordingCommitter:
    """A stand-in for the link to a serving process: records what it is asked to commit and
    answers with the versions the other side would give."""

    remote = True

    def __init__(self, first_version: int = 100) -> None:
        self.version = first_version
        self.records: list[ChangeEvent] = []
        self.defined: list[str] = []

    def commit_set(self, accepted: list[tuple[LiveVariable, lt.Value]],
                   expected: Mapping[str, int], source: str) -> list[ChangeEvent]:
        events = []
        for var, value in accepted:
            self.version += 1
            events.append(ChangeEvent(self.version, 0.0, "set", var.name, var.value, value,
                                      source))
        return events

    def commit_fire(self, trigger: LiveTrigger, source: str) -> ChangeEvent:
        self.version += 1
        return ChangeEvent(self.version, 0.0, "fire", trigger.name, None, trigger.fires + 1,
                           source)

    def record(self, event: ChangeEvent) -> None:
        self.records.append(event)

    def define(self, item: LiveVariable | LiveTrigger) -> None:
        self.defined.append(item.name)

    def remove(self, name: str) -> None:
        pass


def test_writes_handed_over_and_taken_back(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, registry=reg)
    remote = RecordingCommitter()
    handover = reg.serve_remotely(remote)
    assert handover.journal is not None and reg.journal is None and reg.remote
    with pytest.raises(lt.LiveTuneError) as info:
        reg.serve_remotely(RecordingCommitter())
    assert str(info.value) == "this registry is already served from another process"
    [event] = reg.set({"lr": 0.2})
    assert event.v == 101  # the other side's version, published here
    reg.apply_committed([event])
    assert (lr.value, lr.version) == (0.2, 101)
    reg.commit_locally(RecordingCommitter())  # not the one serving: nothing changes
    assert reg.remote and reg.journal is None
    reg.commit_locally(remote, journal=handover.journal)
    assert not reg.remote and reg.journal is handover.journal
    [local] = reg.set({"lr": 0.3})
    assert local.v == reg.version and lr.value == 0.3
    reg.step = 5  # no shared step cell any more: the step is this registry's alone
    assert reg.step == 5
    assert [e.new for e in read_journal(tmp_path / "j.jsonl") if e.kind == "set"] == [0.3]


def test_apply_committed_skips_unknown_stale_and_malformed_events() -> None:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, registry=reg)
    go = lt.LiveTrigger("go", registry=reg)
    events = [ChangeEvent(5, 0.0, "fire", "nosuch", None, 1),
              ChangeEvent(6, 0.0, "fire", "go", None, "one"),  # a fire number must be an int
              ChangeEvent(7, 0.0, "set", "nosuch", None, 1.0),
              ChangeEvent(8, 0.0, "event", "go", data={"x": 1})]
    seen: list[ChangeEvent] = []
    with reg.subscribe(seen.append):
        assert reg.apply_committed(events) == events
    assert seen == [] and go.fires == 0 and reg.version == 0
    reg.apply_committed([ChangeEvent(9, 0.0, "fire", "go", None, 1)])
    assert go.fires == 1 and go.pending == 1 and reg.version == 9


def test_define_from_mirrors_every_published_field() -> None:
    source = lt.Registry()
    lr = lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, help="step size", deferred=True,
                         registry=source)
    go = lt.LiveTrigger("go", "save now", max_pending=3, registry=source)
    lr.set(0.5)
    source.fire("go")
    source.mark_applied("lr", step=7)
    mirror = lt.Registry()
    copy = mirror.define_from(lr.state())
    assert isinstance(copy, LiveVariable) and mirror.variable("lr") is copy
    assert copy.state() == lr.state() and copy.help == "step size"
    assert copy.spec.describe() == lr.spec.describe()
    trig = mirror.define_from(go.state())
    assert isinstance(trig, LiveTrigger) and mirror.trigger("go") is trig
    assert trig.state() == go.state() and trig.fires == 1 and trig.help == "save now"
    again = mirror.define_from(lr.state())  # replaces the earlier one of that name
    assert mirror.variable("lr") is again and again is not copy


def test_adopt_record_journals_under_the_next_version_and_marks_applied(
        tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, deferred=True, registry=reg)
    go = lt.LiveTrigger("go", registry=reg)
    [made] = reg.set({"lr": 0.2})
    reg.fire("go")
    reg.fire("go")
    version = reg.version
    applied = ChangeEvent(1, 0.0, "applied", "lr", None, 0.2, "", 42, made.v)
    kept = reg.adopt_record(applied)
    assert kept.v == version + 1 and kept.applies == made.v and kept.step == 42
    assert (lr.applied_version, lr.applied_step) == (made.v, 42)
    handled = reg.adopt_record(ChangeEvent(1, 0.0, "applied", "go", None, 1, "", 43))
    assert handled.v == version + 2 and go.handled == 1
    reg.adopt_record(ChangeEvent(1, 0.0, "applied", "go", None, 0, "", 44))  # older: kept max
    assert go.handled == 1
    journal = read_journal(tmp_path / "j.jsonl")
    assert journal[-3:-1] == [kept, handled]
    assert [(e.v, e.kind, e.step) for e in journal[-3:]] == [
        (version + 1, "applied", 42), (version + 2, "applied", 43), (version + 3, "applied", 44)]


def test_a_failing_journal_is_logged_once_with_its_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lt.LiveVariable("lr", 0.1, registry=reg)
    assert reg.journal is not None

    def full(events: list[ChangeEvent]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reg.journal, "append", full)
    with caplog.at_level(logging.ERROR):
        reg.record_event("evaluation", data={"fitness": 1.0})
        reg.record_event("evaluation", data={"fitness": 2.0})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["livetune: cannot write the journal ([Errno 28] No space left on "
                        "device); training goes on, records are kept in memory only until it "
                        "works again"]


def test_state_takes_a_name_filter_or_patterns() -> None:
    reg = lt.Registry()
    for name in ("reward.a", "reward.b", "lr"):
        lt.LiveVariable(name, 1.0, registry=reg)
    by_filter = reg.state(NameFilter(["reward.*"]))
    by_patterns = reg.state(["reward.*"])
    assert [v.name for v in by_filter.variables] == ["reward.a", "reward.b"]
    assert by_filter.variables == by_patterns.variables


def test_a_bad_definition_names_the_variable() -> None:
    with pytest.raises(lt.InvalidValueError) as info:
        lt.LiveVariable("lr", 0.5, min=1.0, max=0.0, registry=lt.Registry())
    assert str(info.value) == "lr: min 1.0 is greater than max 0.0"


def test_a_watcher_keeps_1024_events_by_default() -> None:
    reg = lt.Registry()
    lt.LiveVariable("x", 0, registry=reg)
    with reg.watch() as watcher:
        for n in range(1024):
            reg.set({"x": n + 1})
        assert not watcher.lagged
        reg.set({"x": -1})
        assert watcher.lagged


class Cell:
    value = 0


def test_the_step_reaches_the_shared_cell_only_while_served_remotely() -> None:
    reg = lt.Registry()
    cell = Cell()
    remote = RecordingCommitter()
    reg.step = 3
    reg.serve_remotely(remote, step_cell=cell)
    assert cell.value == 3
    reg.step = 4
    assert cell.value == 4
    reg.commit_locally(remote)
    reg.step = 9
    assert cell.value == 4 and reg.step == 9


def test_a_new_trigger_and_a_mirrored_choice_variable_as_ls_shows_them() -> None:
    reg = lt.Registry()
    go = lt.LiveTrigger("go", registry=reg)
    state = go.state()
    assert (state.version, state.source, state.fires, state.handled) == (0, "", 0, 0)
    opt = lt.LiveVariable("optimizer", "adam", choices=["adam", "sgd"], registry=reg)
    mirror = lt.Registry().define_from(opt.state())
    assert isinstance(mirror, LiveVariable)
    with pytest.raises(lt.InvalidValueError, match="not one of"):
        mirror.set("rmsprop")
