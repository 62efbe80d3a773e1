"""Registry, LiveVariable, LiveTrigger, subscribers, watchers and knobs, without a network."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.journal import read_journal
from livetune_rl.knobs import Knobs
from livetune_rl.registry import WatcherLagged
from livetune_rl.values import InvalidNameError


def test_types_from_defaults_and_hot_path_is_plain_attribute() -> None:
    reg = lt.Registry()
    f = lt.LiveVariable("f", 0.5, registry=reg)
    i = lt.LiveVariable("i", 3, registry=reg)
    b = lt.LiveVariable("b", True, registry=reg)
    s = lt.LiveVariable("s", "adam", registry=reg)
    assert [v.type for v in (f, i, b, s)] == [lt.VarType.FLOAT, lt.VarType.INT,
                                               lt.VarType.BOOL, lt.VarType.STR]
    assert "value" in vars(f)  # an instance attribute, not a property: no lock, no call
    reg.set({"f": "1e-4", "i": "5", "b": "no", "s": "sgd"})
    assert (f.value, i.value, b.value, s.value) == (1e-4, 5, False, "sgd")
    assert type(f.value) is float and type(i.value) is int


def test_parsing_via_set() -> None:
    reg = lt.Registry()
    n = lt.LiveVariable("n", 1, registry=reg)
    x = lt.LiveVariable("x", 1.0, registry=reg)
    with pytest.raises(lt.InvalidValueError, match=r"n: '5\.5' is not an int"):
        reg.set({"n": "5.5"})
    for bad in ("nan", "inf", "-inf", float("nan")):
        with pytest.raises(lt.InvalidValueError, match="not a finite float"):
            x.set(bad)
    assert n.value == 1 and x.value == 1.0 and reg.version == 0


def test_bounds_choices_and_check_enforced_on_set() -> None:
    reg = lt.Registry()
    lr = lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, registry=reg)
    opt = lt.LiveVariable("opt", "adam", choices=["adam", "sgd"], registry=reg)
    even = lt.LiveVariable("even", 2, check=lambda v: None if v % 2 == 0 else "odd",
                           registry=reg)
    with pytest.raises(lt.InvalidValueError, match="above the maximum"):
        lr.set(1.5)
    with pytest.raises(lt.InvalidValueError, match="not one of"):
        opt.set("rmsprop")
    with pytest.raises(lt.InvalidValueError, match="refused: odd"):
        even.set(3)
    lr.set(1.0)
    even.set(4)
    assert (lr.value, opt.value, even.value) == (1.0, "adam", 4)


def test_duplicate_and_invalid_names() -> None:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, registry=reg)
    with pytest.raises(lt.DuplicateNameError, match="already registered"):
        lt.LiveVariable("lr", 0.2, registry=reg)
    with pytest.raises(lt.DuplicateNameError):
        lt.LiveTrigger("lr", registry=reg)
    lt.LiveTrigger("save", registry=reg)
    with pytest.raises(lt.DuplicateNameError):
        lt.LiveVariable("save", 1, registry=reg)
    assert reg.variable("lr").value == 0.1  # not replaced
    for bad in ("1x", "a-b", "", "lr\n", "a..b"):
        with pytest.raises(InvalidNameError):
            lt.LiveVariable(bad, 1, registry=reg)
        with pytest.raises(InvalidNameError):
            lt.LiveTrigger(bad, registry=reg)
    other = lt.Registry()
    lt.LiveVariable("lr", 0.3, registry=other)  # registries are independent
    reg.remove("lr")
    lt.LiveVariable("lr", 0.4, registry=reg)
    with pytest.raises(lt.UnknownNameError):
        reg.remove("nope")


def test_unknown_names_suggest_and_distinguish_triggers() -> None:
    reg = lt.Registry()
    lt.LiveVariable("learning_rate", 0.1, registry=reg)
    lt.LiveTrigger("checkpoint", registry=reg)
    with pytest.raises(lt.UnknownNameError, match="did you mean learning_rate"):
        reg.set({"learning_rat": 1})
    with pytest.raises(lt.UnknownNameError, match="it is a trigger"):
        reg.set({"checkpoint": 1})
    with pytest.raises(lt.UnknownNameError, match="it is a variable"):
        reg.fire("learning_rate")


def test_versions_monotonic_and_changed_since() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    b = lt.LiveVariable("b", 0, registry=reg)
    t = lt.LiveTrigger("t", registry=reg)
    assert (a.version, reg.version) == (0, 0)
    seen = a.version
    e1 = a.set(1)
    e2 = b.set(1)
    e3 = reg.fire("t")
    e4, e5 = reg.set({"a": 2, "b": 2})
    assert [e.v for e in (e1, e2, e3, e4, e5)] == [1, 2, 3, 4, 5]
    assert (a.version, b.version, t.version, reg.version) == (4, 5, 3, 5)
    assert a.changed_since(seen) and not a.changed_since(a.version)
    assert e4.old == 1 and e4.new == 2 and e4.source == "local"


def test_changed_is_true_once_per_change() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    assert not a.changed()
    a.set(1)
    a.set(2)
    assert a.changed() and not a.changed()
    a.set(3)
    assert a.changed()


def test_atomic_multi_set_one_bad_value_changes_and_journals_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    reg = lt.Registry(journal=path)
    a = lt.LiveVariable("a", 1.0, max=10, registry=reg)
    b = lt.LiveVariable("b", 1, registry=reg)
    before = (reg.version, len(read_journal(path)))
    got: list[lt.ChangeEvent] = []
    reg.subscribe(got.append)
    for bad in ({"a": 2.0, "b": "x"}, {"a": 11, "b": 2}, {"a": 2.0, "zz": 1}, {},
                [("a", 2.0), ("a", 3.0)]):
        with pytest.raises((lt.InvalidValueError, lt.UnknownNameError)):
            reg.set(bad)
    with pytest.raises(lt.VersionConflictError):
        reg.set({"a": 2.0, "b": 2}, expected={"b": 7})
    assert (a.value, b.value, a.version, b.version) == (1.0, 1, 0, 0)
    assert (reg.version, len(read_journal(path))) == before and got == []
    events = reg.set({"a": 2.0, "b": 2})
    assert [e.v for e in events] == [before[0] + 1, before[0] + 2]
    assert [e.name for e in read_journal(path)[-2:]] == ["a", "b"] and len(got) == 2


def test_journal_failure_changes_nothing(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    a = lt.LiveVariable("a", 1, registry=reg)

    def broken(events: object) -> None:
        raise OSError("disk full")

    reg.journal.append = broken  # type: ignore[union-attr, method-assign]
    version = reg.version
    with pytest.raises(OSError, match="disk full"):
        a.set(2)
    assert (a.value, a.version, reg.version) == (1, 0, version)


def test_compare_and_set() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    a.set(1)
    v = a.version
    reg.set({"a": 2}, expected={"a": v})
    with pytest.raises(lt.VersionConflictError, match=f"expected version {v}, but it is at"):
        reg.set({"a": 3}, expected={"a": v})
    assert a.value == 2
    reg.set({"a": 0}, expected={"a": a.version})
    assert a.value == 0


def test_trigger_counts_fires_and_none_is_lost() -> None:
    reg = lt.Registry()
    trig = lt.LiveTrigger("t", max_pending=None, registry=reg)  # every fire counted
    assert not trig.fired()
    reg.fire("t")
    reg.fire("t")
    assert trig.pending == 2
    assert trig.fired() and trig.fired() and not trig.fired()
    n_threads, per_thread = 4, 250
    consumed = 0
    done = threading.Event()

    def fire() -> None:
        for _ in range(per_thread):
            reg.fire("t", source="thread")

    def consume() -> None:
        nonlocal consumed
        while not done.is_set() or trig.pending:
            if trig.fired():
                consumed += 1

    reader = threading.Thread(target=consume)
    reader.start()
    writers = [threading.Thread(target=fire) for _ in range(n_threads)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join(timeout=30)
    assert consumed == n_threads * per_thread and trig.fires == n_threads * per_thread + 2


def test_subscribers_get_events_in_version_order_from_many_threads() -> None:
    reg = lt.Registry()
    for i in range(4):
        lt.LiveVariable(f"v{i}", 0, registry=reg)
    seen: list[int] = []
    sub = reg.subscribe(lambda e: seen.append(e.v))

    def work(i: int) -> None:
        for n in range(200):
            reg.set({f"v{i}": n + 1})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(1, 801))
    sub.close()
    reg.set({"v0": -1})
    assert len(seen) == 800


def test_broken_subscriber_is_removed_and_subscriber_cannot_write() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    calls: list[str] = []

    def broken(event: lt.ChangeEvent) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    def writer(event: lt.ChangeEvent) -> None:
        calls.append("writer")
        reg.set({"a": 100})  # refused: would recurse inside the writer lock

    reg.subscribe(broken)
    reg.subscribe(writer)
    a.set(1)
    a.set(2)
    assert a.value == 2 and calls == ["broken", "writer"]


def test_subscribe_snapshot_and_watch() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    a.set(5)
    with reg.watch() as w:
        assert w.snapshot is not None and w.snapshot.values() == {"a": 5}
        assert w.snapshot.version == 1
        a.set(6)
        a.set(7)
        assert [w.get(timeout=1).new, w.get(timeout=1).new] == [6, 7]  # type: ignore[union-attr]
        assert w.get(timeout=0.01) is None


def test_watch_lag_raises_instead_of_skipping() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    w = reg.watch(maxsize=3)
    for n in range(10):
        a.set(n + 1)  # the writer never blocks on a slow watcher
    assert a.value == 10
    got = [w.get(timeout=1) for _ in range(3)]
    assert [e.new for e in got] == [1, 2, 3]  # type: ignore[union-attr]
    with pytest.raises(WatcherLagged):
        w.get(timeout=1)
    w.close()


def test_watch_iterator_ends_on_close() -> None:
    reg = lt.Registry()
    a = lt.LiveVariable("a", 0, registry=reg)
    w = reg.watch()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.extend(e.new for e in w))
    t.start()
    a.set(1)
    a.set(2)
    threading.Timer(0.2, w.close).start()
    t.join(timeout=5)
    assert not t.is_alive() and out == [1, 2]


def test_mark_applied_version_semantics(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, deferred=True, registry=reg)
    assert not lr.pending
    lr.set(0.2)
    v1 = lr.version
    assert lr.pending
    reg.step = 42
    event = lr.mark_applied()
    assert event is not None and event.kind == "applied" and event.applies == v1
    assert event.step == 42 and event.new == 0.2 and not lr.pending
    assert lr.mark_applied() is None  # already applied: nothing journaled
    lr.set(0.3)
    v2 = lr.version
    # the loop read version v1 before the set raced in: v2 stays pending
    assert lr.mark_applied(version=v1) is None and lr.pending
    event = lr.mark_applied(step=7, version=v2 + 100, reason="safe point")  # clipped to v2
    assert event is not None and event.applies == v2 and event.step == 7
    assert event.data == {"reason": "safe point"} and lr.applied_step == 7
    applied = [e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "applied"]
    assert [e.applies for e in applied] == [v1, v2]


def test_knobs_apply_pending(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    knobs = Knobs(reg)
    state: dict[str, object] = {}
    lr = knobs.add("lr", 0.1, lambda v: state.__setitem__("lr", v), min=0.0)
    bs = knobs.add("bs", 32, lambda v: min(v, 64))  # returns the value really in effect

    def broken(v: object) -> None:
        raise RuntimeError("cannot resize now")

    boom = knobs.add("boom", 1, broken)
    assert knobs.apply_pending(step=0) == []  # nothing set yet
    reg.set({"lr": 0.01, "bs": 128})
    events = knobs.apply_pending(step=10)
    assert sorted(e.name for e in events) == ["bs", "lr"]
    assert state["lr"] == 0.01 and not lr.pending and not bs.pending
    assert next(e for e in events if e.name == "bs").new == 64
    assert knobs.apply_pending(step=11) == []  # one comparison when nothing changed
    boom.set(2)
    events = knobs.apply_pending(step=12)  # must not raise into the training loop
    assert [e.name for e in events] == ["boom"]
    assert "RuntimeError: cannot resize now" in events[0].data["error"]
    assert not boom.pending and boom.value == 2
    assert "lr" in knobs and knobs["lr"] is lr and knobs.names() == ["lr", "bs", "boom"]
    knobs.close()
    assert "lr" not in reg and reg.names() == []


def test_record_event_and_state_patterns() -> None:
    reg = lt.Registry()
    lt.LiveVariable("reward.a", 1.0, registry=reg)
    lt.LiveVariable("reward.b", 2.0, registry=reg)
    lt.LiveVariable("lr", 0.1, registry=reg)
    lt.LiveTrigger("reward.reset", registry=reg)
    reg.step = 3
    event = reg.record_event("evaluate", {"mean": float("nan"), "n": 3, "tags": ("a",)})
    assert event.kind == "event" and event.step == 3
    assert event.data == {"mean": None, "n": 3, "tags": ["a"]}
    state = reg.state(["reward.*"])
    assert [v.name for v in state.variables] == ["reward.a", "reward.b"]
    assert [t.name for t in state.triggers] == ["reward.reset"]
    assert reg.values() == {"lr": 0.1, "reward.a": 1.0, "reward.b": 2.0}
