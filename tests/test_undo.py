"""Issue 14, undo: changes of values reverted as journaled sets that name what they undo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import LIVETUNE, wait_for

import livetune_rl as lt
from livetune_rl.client import ClientError
from livetune_rl.journal import ChangeEvent, read_journal
from livetune_rl.undo import (
    UndoConflictError,
    plan_for,
    plan_undo,
    undo,
    undone_versions,
)
from livetune_rl.values import InvalidValueError, VersionConflictError


def _set(v: int, name: str, old: Any, new: Any, source: str = "alice") -> ChangeEvent:
    return ChangeEvent(v, float(v), "set", name, old, new, source, 10 * v)


HISTORY = [
    _set(2, "lr", 0.1, 0.2),
    ChangeEvent(3, 3.0, "fire", "evaluate", None, 1, "alice", 30),
    _set(4, "scale", 1.0, 2.0),
    _set(5, "lr", 0.2, 0.3),
]
NOW = {"lr": 5, "scale": 4}


def test_the_last_n_changes_are_reverted_to_the_value_before_the_oldest() -> None:
    plan = plan_undo(HISTORY, NOW, count=3)
    assert [(r.name, r.value, r.undoes, r.expected) for r in plan.reverts] == [
        ("lr", 0.1, (5, 2), 5), ("scale", 1.0, (4,), 4)]
    assert plan.versions == (5, 4, 2)  # the fire is never undone, nor counted


def test_undo_again_goes_one_change_further_back() -> None:
    first = _set(6, "lr", 0.3, 0.2, source="undo of v5 by bob")
    plan = plan_undo([*HISTORY, first], {"lr": 6, "scale": 4})
    assert [(r.name, r.value, r.undoes) for r in plan.reverts] == [("scale", 1.0, (4,))]
    assert undone_versions(first.source) == (5,)


def test_a_later_change_of_the_same_variable_refuses_unless_forced() -> None:
    with pytest.raises(UndoConflictError, match=r"cannot undo v2 \(lr 0.1 -> 0.2\): v5 "
                                                r"changed lr after it \(to 0.3\) and stays; "
                                                r"undo v5 too, or pass --force"):
        plan_undo(HISTORY, NOW, versions=[2])
    forced = plan_undo(HISTORY, NOW, versions=[2], force=True)
    assert [(r.name, r.value, r.expected) for r in forced.reverts] == [("lr", 0.1, 5)]
    assert plan_undo(HISTORY, NOW, versions=[5, 2]).reverts[0].undoes == (5, 2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"versions": [3]}, "v3 is a fire record of evaluate, not a set"),
    ({"versions": [9]}, "v9 is not in the journal"),
    ({"count": 4}, "undo 4: only 3 change.s. can be undone"),
    ({"count": 0}, "at least 1"),
])
def test_what_cannot_be_undone_is_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        plan_undo(HISTORY, NOW, **kwargs)


def test_a_set_racing_with_the_undo_refuses_it_even_forced(tmp_path: Path) -> None:
    reg = lt.Registry(journal=tmp_path / "journal.jsonl")
    lt.LiveVariable("lr", 0.1, registry=reg)
    reg.set({"lr": 0.2})
    plan = plan_for(reg, force=True)
    reg.set({"lr": 0.5}, source="carol")  # arrives between the plan and its commit
    with pytest.raises(VersionConflictError, match="while the undo was planned; nothing"):
        plan.apply(reg, "alice")
    assert reg.variable("lr").value == 0.5


def test_undo_over_grpc_is_journaled_and_refusals_have_their_status(served: Any) -> None:
    reg = served.registry
    with lt.connect(served.address) as client:
        client.set({"learning_rate": 1e-4})
        client.set({"batch_size": 128, "learning_rate": 2e-4})
        done = client.undo(3)
        assert done.versions == (4, 3, 2)
        assert reg.values()["learning_rate"] == 3e-4 and reg.values()["batch_size"] == 64
        assert all(e.source.startswith("undo of v4,v3,v2 by ipv4:127.0.0.1:")
                   for e in done.changes)
        client.set({"clip": 0.3})  # v7 (the undo made v5 and v6)
        client.set({"clip": 0.4})  # v8
        with pytest.raises(ClientError) as refused:
            client.undo(versions=[7])
        assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert "v8 changed clip after it" in str(refused.value)
        with pytest.raises(ClientError) as bad:
            client.undo(versions=[5])
        assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "v5 is itself an undo" in str(bad.value)
        client.undo(versions=[7], force=True)
        assert reg.values()["clip"] == 0.2
    journal = read_journal(served.registry.journal.path)
    assert [(e.name, e.new) for e in journal if e.kind == "set" and undone_versions(e.source)
            ] == [("learning_rate", 3e-4), ("batch_size", 64), ("clip", 0.2)]


def test_the_command(served: Any, sub_env: dict[str, str]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(LIVETUNE), *args], env=sub_env, text=True,
                              capture_output=True, timeout=30)

    assert cli("--addr", served.address, "set", "learning_rate", "1e-4").returncode == 0
    out = cli("--addr", served.address, "undo")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["learning_rate: 0.0001 -> 0.0003 (version 3)",
                                       "undid v2"]
    out = cli("--addr", served.address, "undo", "--json")
    assert out.returncode == 1 and "nothing to undo" in out.stderr
    assert cli("--addr", served.address, "set", "clip", "0.5").returncode == 0
    assert json.loads(cli("--addr", served.address, "undo", "--json").stdout)["undone"] == [4]
    out = cli("--addr", served.address, "undo", "0")
    assert out.returncode == 2 and "1 or more" in out.stderr


def test_undo_through_a_serving_child_reaches_the_training_process(tmp_path: Path) -> None:
    reg = lt.Registry()
    lr = lt.LiveVariable("lr", 0.1, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True, quiet=True,
                      run="undo", journal=tmp_path / "j.jsonl")
    try:
        with lt.connect(server.address) as client:
            client.set({"lr": 0.3})
            wait_for(lambda: lr.value == 0.3)
            client.undo()
        wait_for(lambda: lr.value == 0.1)
        assert undone_versions(lr.source) == (2,)
    finally:
        server.stop()


def test_a_registry_without_a_journal_has_nothing_to_undo() -> None:
    reg = lt.Registry()
    lt.LiveVariable("lr", 0.1, registry=reg)
    with pytest.raises(lt.LiveTuneError, match="keeps no journal"):
        undo(reg)

