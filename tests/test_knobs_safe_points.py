"""The one safe-point mechanism: cadences, group knobs, and followers applying a leader's
reading (what the SB3 callbacks, the vision loop and the demo share)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import livetune_rl as lt
from livetune_rl.journal import read_journal
from livetune_rl.knobs import Knobs, Reading
from livetune_rl.values import Value


def test_each_cadence_applies_only_its_own_knobs_and_none_is_lost() -> None:
    registry = lt.Registry()
    knobs = Knobs(registry)
    seen: list[tuple[str, Value]] = []
    knobs.add("eps", 0.5, lambda v: seen.append(("eps", v)), cadence="step")
    knobs.add("lr", 0.1, lambda v: seen.append(("lr", v)), cadence="rollout")
    registry.set({"eps": 0.2, "lr": 0.01})
    assert [e.name for e in knobs.apply_pending(1, cadence="step")] == ["eps"]
    # the step cadence saw this registry version; the rollout one still applies its knob
    assert knobs.apply_pending(2, cadence="step") == []
    assert [(e.name, e.step) for e in knobs.apply_pending(3, cadence="rollout")] == [("lr", 3)]
    assert seen == [("eps", 0.2), ("lr", 0.01)]
    assert knobs.names("step") == ["eps"] and knobs.names() == ["eps", "lr"]
    registry.set({"lr": 0.02})
    assert [e.name for e in knobs.apply_pending(4)] == ["lr"]  # no cadence: all of them


def test_a_group_gets_every_value_and_journals_each_changed_member(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    a = lt.LiveVariable("w.a", 1.0, registry=registry)
    b = lt.LiveVariable("w.b", 2.0, registry=registry)
    pushed: list[dict[str, Value]] = []
    knobs = Knobs(registry)
    knobs.add_group([a, b], lambda values: pushed.append(values) or {"envs": 2})
    assert a.deferred and b.deferred
    assert knobs.apply_pending(step=1) == []  # nothing set: the group is not applied
    registry.set({"w.a": 3.0})
    [event] = knobs.apply_pending(step=2)
    assert (event.name, event.new, event.step, event.data) == ("w.a", 3.0, 2, {"envs": 2})
    assert pushed == [{"w.a": 3.0, "w.b": 2.0}]
    registry.set({"w.a": 4.0, "w.b": 5.0})
    events = knobs.apply_pending(step=3)
    assert sorted(e.name for e in events) == ["w.a", "w.b"]
    assert pushed[-1] == {"w.a": 4.0, "w.b": 5.0} and len(pushed) == 2  # one push for both
    assert not a.pending and not b.pending
    applied = [e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "applied"]
    assert [(e.name, e.step) for e in applied] == [("w.a", 2), ("w.a", 3), ("w.b", 3)]


def test_a_set_racing_with_a_group_apply_is_applied_next_time() -> None:
    registry = lt.Registry()
    a = lt.LiveVariable("w.a", 1.0, registry=registry)
    b = lt.LiveVariable("w.b", 2.0, registry=registry)
    pushed: list[dict[str, Value]] = []

    def push(values: dict[str, Value]) -> None:
        pushed.append(values)
        if len(pushed) == 1:  # a client's set arrives while the envs are being updated
            thread = threading.Thread(target=registry.set, args=({"w.a": 7.0},))
            thread.start()
            thread.join(timeout=10)

    knobs = Knobs(registry)
    knobs.add_group([a, b], push)
    registry.set({"w.a": 3.0})
    knobs.apply_pending(step=1)
    assert a.pending  # the racing value was not marked applied
    [event] = knobs.apply_pending(step=2)
    assert event.new == 7.0 and pushed[-1]["w.a"] == 7.0 and not a.pending


def test_a_failing_group_apply_is_reported_and_training_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = lt.Registry()
    a = lt.LiveVariable("w.a", 1.0, registry=registry)

    def broken(values: dict[str, Value]) -> Any:
        raise RuntimeError("env gone")

    knobs = Knobs(registry)
    knobs.add_group([a], broken)
    registry.set({"w.a": 2.0})
    with caplog.at_level(logging.ERROR, logger="livetune_rl.knobs"):
        [event] = knobs.apply_pending(step=1)
    assert event.data == {"error": "RuntimeError: env gone"} and not a.pending
    assert "applying w.a=2.0 failed" in caplog.text


def test_a_follower_applies_what_the_leader_read_once_per_version() -> None:
    registry = lt.Registry()
    leader = Knobs(registry, timed=True)
    follower = Knobs.follower()
    on_leader: list[Value] = []
    on_follower: list[Value] = []
    leader.add("lr", 0.1, on_leader.append)
    follower.follow("lr", on_follower.append)
    with pytest.raises(TypeError, match="follow"):
        follower.add("lr", 0.1, on_follower.append)
    registry.set({"lr": 0.05})
    reading = leader.read(everything=True)
    assert reading == Reading({"lr": 1}, {"lr": 0.05})
    [done] = leader.apply(reading, step=4, data={"epoch": 1})
    assert done.event is not None and set(done.event.data) == {"epoch", "apply_s"}
    [followed] = follower.apply(reading, step=4)
    assert followed.event is None and followed.value == 0.05
    assert follower.apply(reading, step=5) == [] and leader.apply(reading, step=5) == []
    assert on_leader == on_follower == [0.05]
    assert leader.read().versions == {}  # nothing pending any more
