"""Deferred knobs as a training loop sees them: a set racing with an apply is never lost, every
``applied`` record carries the step the loop gave, and a failing apply is retried."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.journal import read_journal
from livetune_rl.knobs import Knobs
from livetune_rl.registry import default_registry
from livetune_rl.values import Value


def _set_from_another_thread(registry: lt.Registry, changes: dict[str, Value]) -> None:
    """What the gRPC server thread does when a client's set arrives: a real other thread."""
    thread = threading.Thread(target=registry.set, args=(changes,), kwargs={"source": "peer"})
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_set_racing_with_apply_pending_is_applied_next_time_never_lost() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    in_effect: dict[str, list[Value]] = {"a": [], "b": []}
    racing = {"armed": False}

    def apply_a(value: Value) -> None:
        in_effect["a"].append(value)

    def apply_b(value: Value) -> None:
        in_effect["b"].append(value)
        if racing["armed"]:  # new values of both knobs arrive while this apply runs
            racing["armed"] = False
            _set_from_another_thread(registry, {"a": 3, "b": 30})

    a = knobs.add("a", 1, apply_a)
    b = knobs.add("b", 10, apply_b)
    registry.set({"a": 2, "b": 20})
    racing["armed"] = True
    first = knobs.apply_pending(step=1)
    assert sorted(e.name for e in first) == ["a", "b"]
    assert in_effect == {"a": [2], "b": [20]}
    assert a.pending and b.pending  # the racing sets are not marked applied

    second = knobs.apply_pending(step=2)  # the next safe point applies them
    assert sorted((e.name, e.new, e.step) for e in second) == [("a", 3, 2), ("b", 30, 2)]
    assert in_effect == {"a": [2, 3], "b": [20, 30]}
    assert not a.pending and not b.pending
    assert knobs.apply_pending(step=3) == []  # and only once


def test_a_set_racing_with_the_apply_of_the_same_knob_is_applied_again() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    seen: list[Value] = []

    def apply(value: Value) -> None:
        seen.append(value)
        if len(seen) == 1:
            _set_from_another_thread(registry, {"lr": 0.001})

    lr = knobs.add("lr", 0.1, apply)
    lr.set(0.01)
    [event] = knobs.apply_pending(step=5)
    assert event.applies == 1 and lr.pending and seen == [0.01]
    [event] = knobs.apply_pending(step=6)
    assert event.new == 0.001 and event.applies == lr.version and not lr.pending
    assert seen == [0.01, 0.001]


def test_the_applied_record_names_the_value_applied_not_one_that_raced_in(
        tmp_path: Path) -> None:
    """The journal must say which value was in effect from which step: a set arriving while
    the loop applies an older value must not be recorded as the one applied."""
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    knobs = Knobs(registry)
    seen: list[Value] = []

    def apply(value: Value) -> None:
        seen.append(value)
        if len(seen) == 1:
            _set_from_another_thread(registry, {"lr": 0.001})

    knobs.add("lr", 0.1, apply)
    registry.set({"lr": 0.01})
    [first] = knobs.apply_pending(step=5)
    [second] = knobs.apply_pending(step=6)
    assert (first.new, first.step, second.new, second.step) == (0.01, 5, 0.001, 6)
    applied = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "applied"]
    assert [(e.new, e.step) for e in applied] == [(0.01, 5), (0.001, 6)] == [
        (v, s) for v, s in zip(seen, (5, 6), strict=True)]


def test_apply_pending_journals_the_step_it_was_given(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    knobs = Knobs(registry)
    lr = knobs.add("lr", 0.1, lambda v: None)
    registry.step = 7  # the loop's last reported step differs from the safe point's
    lr.set(0.05)
    [event] = knobs.apply_pending(step=1234)
    assert event.step == 1234
    assert lr.applied_step == 1234
    assert registry.state().variables[0].applied_step == 1234
    [record] = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "applied"]
    assert record.step == 1234 and record.name == "lr" and record.new == 0.05


def test_apply_pending_without_a_step_journals_the_registry_step(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    knobs = Knobs(registry)
    knobs.add("lr", 0.1, lambda v: None)
    registry.step = 99
    registry.set({"lr": 0.2})
    [event] = knobs.apply_pending()
    assert event.step == 99


def test_apply_returns_the_value_really_in_effect_and_failures_are_retried_on_next_set(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    knobs = Knobs(registry)
    calls: list[Value] = []

    def fragile(value: Value) -> Value:
        calls.append(value)
        if value == 13:
            raise ValueError("unlucky")
        return int(value) * 2  # type: ignore[call-overload]

    n = knobs.add("n", 1, fragile)
    n.set(13)
    [event] = knobs.apply_pending(step=1)
    assert event.data == {"error": "ValueError: unlucky"} and event.new == 13
    assert not n.pending and knobs.apply_pending(step=2) == []  # not retried by itself
    n.set(4)
    [event] = knobs.apply_pending(step=3)
    assert event.new == 8 and event.data == {} and calls == [13, 4]
    applied = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "applied"]
    assert [(e.new, e.step) for e in applied] == [(13, 1), (8, 3)]


def test_only_knobs_set_since_their_last_apply_are_applied() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    applied: list[tuple[str, Value]] = []
    knobs.add("a", 1, lambda v: applied.append(("a", v)))
    knobs.add("b", 2, lambda v: applied.append(("b", v)))
    lt.LiveVariable("plain", 0, registry=registry)  # not a knob: its sets wake the loop only
    assert knobs.apply_pending(step=0) == []
    registry.set({"plain": 5})
    assert knobs.apply_pending(step=1) == [] and applied == []
    registry.set({"b": 3})
    assert [e.name for e in knobs.apply_pending(step=2)] == ["b"]
    assert applied == [("b", 3)]


def test_a_knob_added_later_is_applied_at_the_next_safe_point() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    knobs.add("a", 1, lambda v: None)
    registry.set({"a": 2})
    knobs.apply_pending(step=1)
    seen: list[Value] = []
    var = lt.LiveVariable("late", 1.0, registry=registry)
    var.set(2.0)  # set before it became a knob, with no other change afterwards
    knobs.adopt(var, seen.append)
    assert var.deferred and "late" in knobs and knobs["late"] is var
    assert [e.name for e in knobs.apply_pending(step=2)] == ["late"] and seen == [2.0]
    knobs.add("c", 5, seen.append)
    registry.set({"c": 6})
    assert [e.name for e in knobs.apply_pending(step=3)] == ["c"] and seen == [2.0, 6]


def test_close_unregisters_only_its_own_knobs() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    knobs.add("a", 1, lambda v: None)
    lt.LiveVariable("other", 1, registry=registry)
    registry.remove("a")  # already gone: close must not fail on it
    knobs.close()
    assert registry.names() == ["other"] and knobs.names() == []
    Knobs(registry).add("a", 1, lambda v: None)  # the name is free again


def test_knob_rules_refuse_bad_values_before_the_loop_sees_them() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    lr = knobs.add("lr", 0.1, lambda v: None, min=0.0, max=1.0, help="step size")
    opt = knobs.add("opt", "adam", lambda v: None, choices=["adam", "sgd"])
    even = knobs.add("even", 2, lambda v: None, check=lambda v: None if v % 2 == 0 else "odd")
    for name, value in (("lr", -0.1), ("lr", 1.5), ("opt", "rmsprop"), ("even", 3)):
        with pytest.raises(lt.InvalidValueError, match=f"^{name}: "):
            registry.set({name: value})
    assert (lr.help, lr.deferred, opt.deferred, even.deferred) == ("step size", True, True, True)
    registry.set({"lr": 1.0})
    assert lr.pending and registry.state(["lr"]).variables[0].pending


def test_a_knob_added_after_a_set_does_not_hide_that_set() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    seen: list[Value] = []
    knobs.add("a", 1, seen.append)
    registry.set({"a": 2})
    knobs.add("b", 1, seen.append)  # the loop adds a knob before its next safe point
    assert [e.name for e in knobs.apply_pending(step=1)] == ["a"] and seen == [2]


def test_a_failing_apply_is_logged_with_the_knob_and_value(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)

    def broken(value: Value) -> None:
        raise RuntimeError("no")

    knobs.add("size", 1, broken)
    registry.set({"size": 5})
    with caplog.at_level(logging.ERROR, logger="livetune_rl.knobs"):
        knobs.apply_pending(step=1)
    [record] = [r for r in caplog.records if r.name == "livetune_rl.knobs"]
    assert record.getMessage() == "livetune: applying size=5 failed"
    assert record.exc_info is not None and "RuntimeError: no" in caplog.text


def test_knobs_without_a_registry_use_the_process_wide_one() -> None:
    knobs = Knobs()
    var = knobs.add("strength_knobs_default_probe", 1, lambda v: None)
    try:
        assert knobs.registry is default_registry() and var.registry is default_registry()
        assert "strength_knobs_default_probe" in default_registry()
    finally:
        knobs.close()
    assert "strength_knobs_default_probe" not in default_registry()


def test_a_variable_set_once_then_adopted_by_a_new_loop_is_applied_at_its_first_safe_point(
        ) -> None:
    registry = lt.Registry()
    var = lt.LiveVariable("temperature", 1.0, registry=registry)
    var.set(0.5)  # the first change this registry sees
    seen: list[Value] = []
    knobs = Knobs(registry)
    knobs.adopt(var, seen.append)
    assert [e.name for e in knobs.apply_pending(step=1)] == ["temperature"] and seen == [0.5]


def test_a_knob_added_without_help_has_none() -> None:
    knobs = Knobs(lt.Registry())
    assert knobs.add("plain", 1, lambda v: None).help == ""
