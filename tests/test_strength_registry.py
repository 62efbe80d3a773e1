"""The registry as a program and a client see it: what each record says (version, step,
source, values), what a snapshot holds, and the errors a mistake gets."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livetune_rl as lt
from livetune_rl.journal import ChangeEvent, read_journal
from livetune_rl.registry import VariableState, WatcherLagged, default_registry


def test_a_set_record_carries_old_and_new_value_source_step_and_consecutive_versions(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    a = lt.LiveVariable("a", 1.0, registry=registry)
    b = lt.LiveVariable("b", "x", registry=registry)
    start = registry.version
    registry.step = 50
    events = registry.set({"a": "2.5", "b": "y"}, source="peer 1")
    assert [(e.v, e.kind, e.name, e.old, e.new, e.source, e.step) for e in events] == [
        (start + 1, "set", "a", 1.0, 2.5, "peer 1", 50),
        (start + 2, "set", "b", "x", "y", "peer 1", 50)]
    assert registry.version == start + 2
    assert (a.value, a.version, a.source, a.step) == (2.5, start + 1, "peer 1", 50)
    assert (b.version, b.source) == (start + 2, "peer 1")
    assert a.changed_at == events[0].t and isinstance(a.changed_at, float)
    assert read_journal(tmp_path / "j.jsonl")[-2:] == events
    [event] = registry.set([("a", 3.0)])  # pairs work too; the default source is "local"
    assert (event.source, event.old, a.source) == ("local", 2.5, "local")
    assert a.set(4.0).source == "local" and a.set(5.0, source="me").source == "me"


def test_a_refused_request_names_the_problem_and_changes_nothing() -> None:
    registry = lt.Registry()
    a = lt.LiveVariable("a", 1, min=0, registry=registry)
    lt.LiveTrigger("go", registry=registry)
    version = registry.version
    cases: list[tuple[Any, type[Exception], str]] = [
        ({}, lt.InvalidValueError, r"^nothing to set$"),
        ([("a", 2), ("a", 3)], lt.InvalidValueError, r"^a: set twice in one request$"),
        ({"a": -1}, lt.InvalidValueError, r"^a: -1 is below the minimum 0$"),
        ({"go": 1}, lt.UnknownNameError, r"^no variable \(it is a trigger\) named 'go'$"),
        ({"b": 1}, lt.UnknownNameError, r"^no variable named 'b'$"),
    ]
    for changes, error, message in cases:
        with pytest.raises(error, match=message):
            registry.set(changes)
    with pytest.raises(lt.VersionConflictError,
                       match=r"^a: expected version 3, but it is at version 0$"):
        registry.set({"a": 5}, expected={"a": 3})
    with pytest.raises(lt.UnknownNameError, match=r"^no trigger \(it is a variable\) named 'a'$"):
        registry.fire("a")
    assert (a.value, a.version, registry.version) == (1, 0, version)
    assert registry.set({"a": 5}, expected={"a": 0})[0].new == 5  # the right version passes


def test_fire_and_fired_records(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    # max_pending=None: every fire counts (the default joins a fire to one still pending)
    stop = lt.LiveTrigger("stop", registry=registry, max_pending=None)
    assert stop.help == "" and stop.last_fired is None and stop.pending == 0
    registry.step = 9
    first = registry.fire("stop")
    second = registry.fire("stop", source="peer")
    assert (first.kind, first.new, first.source, first.step) == ("fire", 1, "local", 9)
    assert (second.new, second.v) == (2, first.v + 1)
    assert (stop.fires, stop.version, stop.source, stop.last_fired) == (
        2, second.v, "peer", second.t)
    registry.step = 12
    assert stop.fired() and stop.fired(step=30) and not stop.fired()
    handled = [e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "applied"]
    assert [(e.name, e.new, e.step, e.applies, e.source) for e in handled] == [
        ("stop", 1, 12, second.v, "training"), ("stop", 2, 30, second.v, "training")]
    assert handled[1].v == handled[0].v + 1 == registry.version
    [state] = registry.state().triggers
    assert (state.name, state.fires, state.handled, state.version, state.source) == (
        "stop", 2, 2, second.v, "peer")


def test_applied_and_event_records_come_from_training(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, deferred=True, registry=registry)
    lr.set(0.2)
    registry.step = 40
    applied = registry.mark_applied("lr", value=0.15)
    assert applied is not None
    assert (applied.source, applied.step, applied.new, applied.applies) == (
        "training", 40, 0.15, lr.version)
    event = registry.record_event("evaluate", {"mean": 1.5})
    assert (event.kind, event.source, event.step, event.data) == (
        "event", "training", 40, {"mean": 1.5})
    other = registry.record_event("evaluate", {}, step=3, source="tuner")
    assert (other.step, other.source, other.v) == (3, "tuner", event.v + 1)
    assert read_journal(tmp_path / "j.jsonl")[-3:] == [applied, event, other]
    with pytest.raises(lt.InvalidNameError):
        registry.record_event("not a name", {})


def test_event_data_becomes_plain_json() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    registry = lt.Registry()
    data = {"f32": np.float32(0.5), "i64": np.int64(7), "nan": float("nan"),
            "inf": np.float64("inf"), "tuple": (1, np.int32(2)), "nested": {3: [np.bool_(True)]},
            "none": None, "text": "t", "obj": Thing()}
    event = registry.record_event("metrics", data)
    assert event.data == {"f32": 0.5, "i64": 7, "nan": None, "inf": None, "tuple": [1, 2],
                          "nested": {"3": [True]}, "none": None, "text": "t", "obj": "thing"}
    assert type(event.data["i64"]) is int


def test_state_is_a_complete_snapshot_and_patterns_filter_it() -> None:
    registry = lt.Registry()
    lt.LiveVariable("opt.lr", 0.1, min=0.0, max=1.0, help="step size", deferred=True,
                    registry=registry)
    lt.LiveVariable("opt.name", "adam", choices=["adam", "sgd"], registry=registry)
    lt.LiveTrigger("save", help="checkpoint now", registry=registry)
    registry.step = 4
    registry.set({"opt.lr": 0.5}, source="peer")
    state = registry.state()
    lr, name = state.variables
    assert lr == VariableState("opt.lr", lt.VarType.FLOAT, 0.5, 0.1, 0.0, 1.0, (), "step size",
                               1, lr.changed_at, "peer", 4, True, 0, None)
    assert lr.pending and not name.pending
    assert (name.choices, name.help, name.source, name.step) == (("adam", "sgd"), "", "default",
                                                                  None)
    assert state.triggers[0].help == "checkpoint now" and state.step == 4
    assert state.version == registry.version and state.values() == registry.values() == {
        "opt.lr": 0.5, "opt.name": "adam"}
    only = registry.state(["*.name", "sav?"])
    assert [v.name for v in only.variables] == ["opt.name"]
    assert [t.name for t in only.triggers] == ["save"]


def test_names_membership_remove_and_reuse() -> None:
    registry = lt.Registry()
    lt.LiveVariable("b", 1, registry=registry)
    lt.LiveTrigger("a", registry=registry)
    assert registry.names() == ["a", "b"] and "a" in registry and "c" not in registry
    assert [v.name for v in registry.variables()] == ["b"]
    assert [t.name for t in registry.triggers()] == ["a"]
    with pytest.raises(lt.DuplicateNameError, match="'a' is already registered"):
        lt.LiveVariable("a", 1, registry=registry)
    registry.remove("a")
    registry.remove("b")
    with pytest.raises(lt.UnknownNameError):
        registry.remove("b")
    assert registry.names() == []
    lt.LiveVariable("a", 2, registry=registry)  # free again


def test_readers_see_changes_once_and_repr_shows_the_state() -> None:
    registry = lt.Registry()
    n = lt.LiveVariable("n", 1, registry=registry)
    t = lt.LiveTrigger("t", registry=registry)
    assert not n.changed() and not n.changed_since(0)
    n.set(2)
    assert n.changed() and not n.changed() and n.changed_since(0) and not n.changed_since(1)
    assert n.type is lt.VarType.INT and n.default == 1 and not n.pending
    registry.fire("t")
    assert repr(n) == "LiveVariable('n', value=2, version=1)"
    assert repr(t) == "LiveTrigger('t', fires=1, pending=1)"


def test_attach_journal_starts_with_the_values_in_effect(tmp_path: Path) -> None:
    registry = lt.Registry()
    lt.LiveVariable("a", 1, registry=registry)
    registry.set({"a": 2})
    registry.step = 8
    journal = registry.attach_journal(tmp_path / "one.jsonl", data={"run": "r"})
    [start] = read_journal(tmp_path / "one.jsonl")
    assert (start.kind, start.v, start.step, start.source) == ("start", 2, 8, "local")
    assert start.data == {"values": {"a": 2}, "pid": os.getpid(), "run": "r"}
    assert registry.attach_journal(journal) is journal  # the same journal again: still open
    registry.set({"a": 3})
    registry.attach_journal(tmp_path / "two.jsonl")  # a new file: the old one is closed
    registry.set({"a": 4})
    assert [e.kind for e in read_journal(tmp_path / "one.jsonl")] == ["start", "start", "set"]
    assert [(e.kind, e.new) for e in read_journal(tmp_path / "two.jsonl")] == [
        ("start", None), ("set", 4)]


def test_continue_versions_never_goes_back() -> None:
    registry = lt.Registry()
    a = lt.LiveVariable("a", 1, registry=registry)
    registry.continue_versions(100)
    registry.continue_versions(7)
    assert a.set(2).v == 101
    registry.continue_versions("200")  # type: ignore[arg-type]
    assert a.set(3).v == 201


def test_a_failing_journal_never_stops_training_records(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, deferred=True, registry=registry)
    lr.set(0.2)
    journal = registry.journal
    assert journal is not None
    real_append = journal.append
    failing = {"on": True}

    def flaky(events: Any) -> None:
        if failing["on"]:
            raise OSError("disk full")
        real_append(events)

    journal.append = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="livetune_rl.registry"):
        assert lr.mark_applied(step=1) is not None  # applied although not journaled
        registry.record_event("evaluate", {"x": 1})
        registry.record_event("evaluate", {"x": 2})
    assert not lr.pending
    assert caplog.text.count("cannot write the journal") == 1  # said once, not per record
    failing["on"] = False
    registry.record_event("evaluate", {"x": 3})
    failing["on"] = True
    with caplog.at_level(logging.ERROR, logger="livetune_rl.registry"):
        registry.record_event("evaluate", {"x": 4})
    assert caplog.text.count("cannot write the journal") == 2  # said again after recovering
    assert [e.data.get("x") for e in read_journal(tmp_path / "j.jsonl")
            if e.kind == "event"] == [3]


def test_watch_reports_lag_in_words_and_ends_when_closed() -> None:
    registry = lt.Registry()
    x = lt.LiveVariable("x", 0, registry=registry)
    watcher = registry.watch(maxsize=2)
    assert watcher.snapshot is not None and watcher.snapshot.values() == {"x": 0}
    for value in (1, 2, 3):
        x.set(value)
    assert [watcher.get(timeout=1).new, watcher.get(timeout=1).new] == [1, 2]  # type: ignore
    with pytest.raises(WatcherLagged, match="fell behind; events were dropped: watch again"):
        watcher.get(timeout=0)
    watcher.close()
    with registry.watch() as live:
        assert live.get(timeout=0.01) is None  # nothing yet
        x.set(9)
        live.close()
        assert [e.new for e in live] == []  # closed: iteration ends at once
    x.set(10)  # closed watchers are no longer called


def test_subscriptions_end_when_closed() -> None:
    registry = lt.Registry()
    x = lt.LiveVariable("x", 0, registry=registry)
    seen: list[ChangeEvent] = []
    with registry.subscribe(seen.append) as subscription:
        assert subscription.snapshot is None
        x.set(1)
    x.set(2)
    assert [e.new for e in seen] == [1]


def test_default_registry_is_one_per_process() -> None:
    registry = default_registry()
    assert default_registry() is registry
    var = lt.LiveVariable("strength_default_registry_probe", 1)
    try:
        assert var.registry is registry and "strength_default_registry_probe" in registry
        trig = lt.LiveTrigger("strength_default_registry_trigger")
        assert trig.registry is registry
        registry.remove(trig.name)
    finally:
        registry.remove(var.name)


def test_a_fire_while_one_is_pending_joins_it_and_is_journaled_as_coalesced(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    checkpoint = lt.LiveTrigger("checkpoint", registry=registry)  # the default: one pending
    registry.step = 5
    before = time.time()
    first = registry.fire("checkpoint")
    joined = registry.fire("checkpoint", source="peer")
    after = time.time()
    assert (checkpoint.fires, checkpoint.coalesced, checkpoint.pending) == (1, 1, 1)
    assert checkpoint.fired() and not checkpoint.fired()  # one action answers both fires
    records = [e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "fire"]
    assert records == [first, joined]
    assert (joined.v, joined.name, joined.old, joined.new, joined.source, joined.step,
            joined.applies, joined.data) == (first.v + 1, "checkpoint", None, 1, "peer", 5,
                                             None, {"coalesced": True})
    assert before <= first.t <= joined.t <= after


def test_asking_for_a_trigger_by_a_variables_name_says_it_is_a_variable() -> None:
    registry = lt.Registry()
    lt.LiveVariable("gamma", 0.99, registry=registry)
    with pytest.raises(lt.UnknownNameError, match=r"^no trigger \(it is a variable\) named "
                                                  r"'gamma'$"):
        registry.trigger("gamma")
    with pytest.raises(lt.UnknownNameError, match=r"^no trigger named 'stop'$"):
        registry.trigger("stop")
