"""A set to the value a variable already holds is acknowledged and changes nothing.

Through every door: the Python API, gRPC, ``livetune set``, a run served from a child
process, and the original ``tune`` protocol (``liveVar.changed()``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import LIVETUNE, wait_for
from test_compat_listener import send

import livetune_rl as lt
from livetune_rl.compat import OriginalProtocolListener, liveVar


def _journal(path: Path) -> list[tuple[str, str, Any]]:
    return [(e.kind, e.name, e.new) for e in lt.read_journal(path) if e.kind == "set"]


def test_same_value_is_acknowledged_not_journaled_not_published(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = lt.LiveVariable("lr", 0.1, registry=reg)
    steps = lt.LiveVariable("steps", 8, registry=reg)
    seen: list[lt.ChangeEvent] = []
    with reg.subscribe(seen.append):
        first = lr.set(0.5)
        again = lr.set("0.5", source="a user")  # text parsed to the same float
        assert again.unchanged and not first.unchanged
        assert (again.v, again.old, again.new, again.source) == (first.v, 0.5, 0.5, "a user")
        assert lr.version == first.v and not lr.changed_since(first.v)
        version = reg.version
        # several at once: the changed one is made, the unchanged one answered in order
        events = reg.set({"lr": 0.5, "steps": 9})
    assert [(e.name, e.unchanged) for e in events] == [("lr", True), ("steps", False)]
    assert events[1].v == version + 1 and steps.version == events[1].v
    assert [e.name for e in seen] == ["lr", "steps"]  # the no-ops were never published
    assert _journal(tmp_path / "j.jsonl") == [("set", "lr", 0.5), ("set", "steps", 9)]
    # a compare-and-set is still checked on a no-op
    try:
        reg.set({"lr": 0.5}, expected={"lr": first.v - 1})
        raise AssertionError("expected a version conflict")
    except lt.VersionConflictError as exc:
        assert "expected version" in str(exc)


def test_same_value_is_decided_by_type_and_value() -> None:
    reg = lt.Registry()
    flag = lt.LiveVariable("flag", False, registry=reg)
    zero = lt.LiveVariable("zero", 0.0, registry=reg)
    assert flag.set("no").unchanged and flag.set(False).unchanged
    assert not flag.set(True).unchanged and flag.value is True
    assert zero.set(-0.0).unchanged  # equal floats: no new version
    assert not zero.set(1e-12).unchanged


def test_grpc_and_cli_say_unchanged(served: Any, sub_env: dict[str, str],
                                    tmp_path: Path) -> None:
    reg = served.registry
    with lt.connect(served.address) as client:
        [made] = client.set({"batch_size": 128})
        [same] = client.set({"batch_size": 128})
    assert not made.unchanged and same.unchanged and same.v == made.v
    proc = subprocess.run([str(LIVETUNE), "--addr", served.address, "set", "batch_size", "128"],
                          env=sub_env, text=True, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"batch_size: unchanged, already 128 (version {made.v}; "
                                   "nothing journaled)")
    proc = subprocess.run([str(LIVETUNE), "--addr", served.address, "--json", "set",
                           "batch_size=128"], env=sub_env, text=True, capture_output=True,
                          timeout=30)
    [record] = json.loads(proc.stdout)
    assert record["data"] == {"unchanged": True} and record["v"] == made.v
    assert reg.variable("batch_size").version == made.v
    assert _journal(tmp_path / "journal.jsonl") == [("set", "batch_size", 128)]


def test_process_served_run_answers_unchanged_and_training_sees_nothing(
        tmp_path: Path) -> None:
    reg = lt.Registry()
    lr = lt.LiveVariable("lr", 0.1, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True, quiet=True,
                      run="noop", journal=tmp_path / "j.jsonl")
    try:
        with lt.connect(server.address) as client:
            [made] = client.set({"lr": 0.3})
            [same] = client.set({"lr": 0.3})
        local = lr.set(0.3)  # from the training process, through the child
        assert same.unchanged and local.unchanged and same.v == made.v == local.v
    finally:
        server.stop()
    assert _journal(tmp_path / "j.jsonl") == [("set", "lr", 0.3)]


def test_tune_of_the_same_value_is_not_reported_by_changed(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "j.jsonl")
    lr = liveVar(0.1, "lr", registry=reg)
    with OriginalProtocolListener(reg, 0, timeout=1.0, quiet=True) as listener:
        send(listener.port, "lr", b"0.2")
        wait_for(lambda: lr() == 0.2)
        assert lr.changed() and not lr.changed()
        send(listener.port, "lr", b"0.2")  # what the original reported as a change
        wait_for(lambda: listener.stats.changes >= 2)
        assert not lr.changed() and lr() == 0.2
    assert _journal(tmp_path / "j.jsonl") == [("set", "lr", 0.2)]
