"""``--run GLOB``: ls, set, fire and history across every live run whose name matches.

Runs are served in this process (each registers itself in this test's LIVETUNE_HOME), and
the commands go through ``livetune_rl.cli.main`` as a user's would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import livetune_rl as lt
from livetune_rl import cli
from livetune_rl.discovery import RunNotFoundError, RunRecord
from livetune_rl.fanout import fan_out, is_pattern, matching_runs


def _run(start_server: Callable[..., Any], name: str, lr_max: float = 1.0,
         journals: Path = Path()) -> lt.Registry:
    registry = lt.Registry()
    lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=lr_max, registry=registry)
    lt.LiveVariable("seed", 0, registry=registry)
    lt.LiveTrigger("checkpoint", registry=registry)
    start_server(registry, run=name, journal=journals / f"{name}.jsonl")
    return registry


@pytest.fixture
def sweep(start_server: Callable[..., Any], tmp_path: Path) -> dict[str, lt.Registry]:
    """Three runs of one sweep (seed-1..3) and one run of something else."""
    return {name: _run(start_server, name, journals=tmp_path)
            for name in ("seed-1", "seed-2", "seed-3", "other")}


def test_set_reaches_every_matching_run_and_no_other(
        sweep: dict[str, lt.Registry], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["set", "--run", "seed-*", "learning_rate=1e-4", "seed=7"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in ("seed-1", "seed-2", "seed-3"):
        assert sweep[name].variable("learning_rate").value == 1e-4
        assert sweep[name].variable("seed").value == 7
        v = sweep[name].variable("seed").version
        assert f"{name}: learning_rate: 0.0003 -> 0.0001 (version {v - 1})" in out
        assert f"{name}: seed: 0 -> 7 (version {v})" in out
    assert sweep["other"].variable("learning_rate").value == 3e-4
    assert len(out) == 6 and not any(line.startswith("other") for line in out)


def test_a_run_that_refuses_is_reported_and_the_others_still_change(
        start_server: Callable[..., Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    strict = _run(start_server, "seed-a", lr_max=1e-3, journals=tmp_path)
    loose = _run(start_server, "seed-b", journals=tmp_path)
    assert cli.main(["set", "--run", "seed-?", "learning_rate=0.01", "seed=3"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert loose.variable("learning_rate").value == 0.01 and loose.variable("seed").value == 3
    # the refusing run took neither value: one call per run, all of it or none of it
    assert strict.variable("learning_rate").value == 3e-4 and strict.variable("seed").value == 0
    (refusal,) = [line for line in out if line.startswith("seed-a")]
    assert refusal.startswith("seed-a: refused: ") and "learning_rate" in refusal
    assert "0.001" in refusal  # the bound it broke, as the server words it


def test_json_gives_one_entry_per_run_with_its_answer_or_error(
        start_server: Callable[..., Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _run(start_server, "seed-a", lr_max=1e-3, journals=tmp_path)
    _run(start_server, "seed-b", journals=tmp_path)
    assert cli.main(["set", "--json", "--run", "seed-*", "learning_rate=0.01"]) == 1
    entries = {e["run"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["seed-b"]["ok"] is True
    assert entries["seed-b"]["result"][0]["new"] == 0.01
    assert entries["seed-a"]["ok"] is False
    assert entries["seed-a"]["code"] == "INVALID_ARGUMENT" and entries["seed-a"]["error"]


def test_fire_ls_and_history_across_runs(
        sweep: dict[str, lt.Registry], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fire", "--run", "seed-[12]", "checkpoint"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == [
        f"{n}: fired checkpoint (fire #1, version {sweep[n].trigger('checkpoint').version})"
        for n in ("seed-1", "seed-2")]
    assert sweep["seed-3"].trigger("checkpoint").fires == 0

    assert cli.main(["set", "--run", "seed-3", "seed=5"]) == 0  # a plain name: one run
    capsys.readouterr()
    assert cli.main(["ls", "--run", "seed-*", "seed"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["RUN", "NAME", "VALUE"]
    rows = {tuple(line.split()[:3]) for line in table[1:]}
    assert rows == {("seed-1", "seed", "0"), ("seed-2", "seed", "0"), ("seed-3", "seed", "5")}

    assert cli.main(["history", "--run", "seed-*", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((r["run"], r["name"]) for r in records if r["kind"] in ("set", "fire")) == [
        ("seed-1", "checkpoint"), ("seed-2", "checkpoint"), ("seed-3", "seed")]
    assert {r["run"] for r in records} == {"seed-1", "seed-2", "seed-3"}  # not "other"
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)  # one time order
    assert cli.main(["history", "--run", "seed-*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [r["run"] for r in records]


def test_a_glob_that_matches_nothing_names_the_live_runs(
        sweep: dict[str, lt.Registry], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["set", "--run", "trial-*", "seed=1"]) == 1
    err = capsys.readouterr().err
    assert "no live run matches 'trial-*'" in err
    assert "seed-1" in err and "other" in err


def test_matching_and_fan_out_rules() -> None:
    assert is_pattern("a*") and is_pattern("a?") and is_pattern("a[12]")
    assert not is_pattern("seed-1") and not is_pattern("1234")
    runs = [RunRecord("Seed-1", "h:1", 1, 0.0), RunRecord("seed-1", "h:2", 2, 0.0)]
    assert [r.address for r in matching_runs("seed-*", runs)] == ["h:2"]  # case-sensitive
    with pytest.raises(RunNotFoundError, match="live runs: Seed-1, seed-1"):
        matching_runs("x*", runs)

    def call(run: RunRecord) -> str:
        if run.pid == 1:
            raise lt.InvalidValueError("no")
        return run.run

    outcomes = fan_out(runs, call)
    assert [(o.run, o.ok, o.result, o.error) for o in outcomes] == [
        ("Seed-1", False, None, "no"), ("seed-1", True, "seed-1", None)]

    def bug(run: RunRecord) -> str:
        raise KeyError(run.run)

    with pytest.raises(KeyError):  # a bug is not reported as a run's refusal
        fan_out(runs, bug)
