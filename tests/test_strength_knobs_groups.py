"""Knobs' group knobs, cadences and followers, through the public API: what a training loop
(SB3's reward group, vision's DDP followers) relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from livetune_rl import LiveVariable, Registry, read_journal
from livetune_rl.knobs import Knobs, Reading


def _vars(reg: Registry, *names: str) -> list[LiveVariable]:
    return [LiveVariable(n, 1.0, min=-10.0, max=10.0, registry=reg) for n in names]


def test_two_groups_and_a_plain_knob_changed_in_one_reading_are_all_applied() -> None:
    reg = Registry()
    first, second = _vars(reg, "a.x", "a.y"), _vars(reg, "b.x", "b.y")
    pushed: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    plain: list[float] = []
    knobs = Knobs(reg)
    knobs.add_group(first, lambda v: pushed["a"].append(v))
    knobs.add_group(second, lambda v: pushed["b"].append(v))
    knobs.add("lr", 0.1, plain.append, min=0.0)
    reg.set({"a.y": 2.0, "b.x": 3.0, "lr": 0.5})
    names = sorted(e.name for e in knobs.apply_pending(step=7))
    assert names == ["a.y", "b.x", "lr"]
    assert pushed == {"a": [{"a.x": 1.0, "a.y": 2.0}], "b": [{"b.x": 3.0, "b.y": 1.0}]}
    assert plain == [0.5]
    assert knobs.apply(Reading({"a.y": reg.variable("a.y").version}, {"a.y": 2.0})) == []


def test_an_unknown_or_old_name_in_a_reading_does_not_hide_the_others() -> None:
    reg = Registry()
    seen: list[float] = []
    knobs = Knobs(reg)
    knobs.add("lr", 0.1, seen.append, min=0.0)
    reg.set({"lr": 0.2})
    version = reg.variable("lr").version
    done = knobs.apply(Reading({"nope": 99, "lr": version}, {"nope": 1.0, "lr": 0.2}), step=1)
    assert [(a.name, a.value) for a in done] == [("lr", 0.2)] and seen == [0.2]


def test_a_failing_group_is_journaled_with_its_error_and_the_callers_data(
        tmp_path: Path) -> None:
    reg = Registry()
    reg.attach_journal(tmp_path / "j.jsonl")
    group = _vars(reg, "w.a", "w.b")
    knobs = Knobs(reg, timed=True)

    def fail(values: dict[str, float]) -> None:
        raise RuntimeError("env gone")

    knobs.add_group(group, fail)
    reg.set({"w.a": 4.0})
    done = knobs.apply(knobs.read(), step=5, data={"epoch": 2})
    assert [a.name for a in done] == ["w.a"]
    record = next(e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "applied")
    assert record.step == 5 and record.new == 4.0
    assert record.data["epoch"] == 2 and record.data["error"] == "RuntimeError: env gone"
    assert 0.0 <= record.data["apply_s"] < 5.0


def test_timed_plain_knobs_record_how_long_the_apply_took(tmp_path: Path) -> None:
    reg = Registry()
    reg.attach_journal(tmp_path / "j.jsonl")
    knobs = Knobs(reg, timed=True)
    knobs.add("lr", 0.1, lambda v: None, min=0.0)
    reg.set({"lr": 0.3})
    knobs.apply_pending(step=1)
    record = next(e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "applied")
    assert 0.0 <= record.data["apply_s"] < 5.0


def test_cadences_of_add_adopt_and_groups() -> None:
    reg = Registry()
    knobs = Knobs(reg)
    knobs.add("lr", 0.1, lambda v: None, min=0.0, cadence="step")
    knobs.adopt(_vars(reg, "x")[0], lambda v: None, cadence="step")
    knobs.add_group(_vars(reg, "g.a", "g.b"), lambda v: None, cadence="step")
    knobs.add("n", 1.0, lambda v: None)
    assert knobs.names("step") == ["lr", "x", "g.a", "g.b"]
    assert knobs.names("default") == ["n"]  # DEFAULT_CADENCE


def test_an_adopted_variable_already_applied_is_not_applied_again() -> None:
    reg = Registry()
    var = _vars(reg, "x")[0]
    reg.set({"x": 2.0})
    reg.mark_applied("x", step=0)  # another loop applied it already
    seen: list[float] = []
    knobs = Knobs(reg)
    knobs.adopt(var, seen.append)
    assert knobs.apply(knobs.read(everything=True)) == [] and seen == []


def test_a_follower_applies_a_leaders_readings_once_by_name_and_cadence() -> None:
    seen: list[tuple[str, float]] = []
    knobs = Knobs.follower()
    knobs.follow("lr", lambda v: seen.append(("lr", v)), cadence="step")
    knobs.follow("wd", lambda v: seen.append(("wd", v)))
    assert knobs.names("step") == ["lr"] and knobs.names() == ["lr", "wd"]
    done = knobs.apply(Reading({"lr": 3, "wd": 2}, {"lr": 0.2, "wd": 0.01}), step=4)
    assert [(a.name, a.value, a.event) for a in done] == [("lr", 0.2, None),
                                                          ("wd", 0.01, None)]
    assert knobs.apply(Reading({"lr": 3}, {"lr": 0.2})) == []  # that version is in effect
    assert seen == [("lr", 0.2), ("wd", 0.01)]
    with pytest.raises(KeyError, match="follower"):
        knobs["lr"]
    with pytest.raises(TypeError, match=r"no registry; use follow\(\)"):
        knobs.add("x", 1.0, lambda v: None)
