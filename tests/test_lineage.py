"""Issue 14: ``livetune runs`` shows where a live run comes from (its ``config.json``'s
``lineage``: the run it replays, the run it was forked from)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from livetune_rl import discovery
from livetune_rl.cli import main
from livetune_rl.discovery import RunRecord
from livetune_rl.lineage import ForkLineage, Lineage


def _run(root: Path, name: str, lineage: dict[str, object] | None) -> RunRecord:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"algo": "ppo"} if lineage is None else {"algo": "ppo", "lineage": lineage}
    (run_dir / "config.json").write_text(json.dumps(config))
    record = RunRecord(name, "127.0.0.1:1", os.getpid(), time.time(),
                       journal=str(run_dir / "journal.jsonl"))
    discovery.write_record(record)
    return record


def test_runs_shows_each_runs_lineage(livetune_home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fork = {"fork_of": str(tmp_path / "ht"), "checkpoint": str(tmp_path / "ht" / "final"),
            "step": 4096, "values": {"learning_rate": "1e-4"}}
    _run(tmp_path, "ht", None)
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "RUN", "ADDRESS", "PID", "UPTIME", "AUTH"]  # no lineage to show: no column
    _run(tmp_path, "ht-replay", {"replay_of": str(tmp_path / "ht"), "until": 8192})
    _run(tmp_path, "ht-lr", fork)
    assert main(["runs"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["RUN"].split()[-1] == "LINEAGE"
    assert rows["ht"].rstrip().endswith(" -")
    assert rows["ht-replay"].rstrip().endswith("replay of ht until 8192")
    assert rows["ht-lr"].rstrip().endswith("fork of ht at step 4096 (learning_rate=1e-4)")
    assert main(["runs", "--json"]) == 0
    listed = {r["run"]: r["lineage"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"ht": None, "ht-replay": {"replay_of": str(tmp_path / "ht"),
                                                "until": 8192}, "ht-lr": fork}


def test_a_replay_of_a_fork_has_both_and_odd_configs_have_none(tmp_path: Path) -> None:
    both = Lineage("/r/ht-lr", None, ForkLineage("/r/ht-lr-parent", "/r/x/final", 4096))
    assert Lineage.from_data(both.to_data()) == both
    assert both.describe() == "replay of ht-lr; fork of ht-lr-parent at step 4096"
    (tmp_path / "config.json").write_text("{not json")
    assert Lineage.of_run(tmp_path) is None
    assert Lineage.of_run(tmp_path / "missing") is None
    (tmp_path / "config.json").write_text(json.dumps({"lineage": "a string"}))
    assert Lineage.of_run(tmp_path) is None


def test_a_records_journal_is_absolute_so_runs_finds_the_lineage_from_anywhere(
        livetune_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import livetune_rl as lt

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "config.json").write_text(json.dumps(
        {"lineage": {"replay_of": str(tmp_path / "runs" / "q"), "until": None}}))
    registry = lt.Registry()
    lt.LiveVariable("lr", 0.1, registry=registry)
    server = lt.serve("127.0.0.1:0", run="r", registry=registry,
                      journal="runs/r/journal.jsonl", quiet=True)
    try:
        (record,) = discovery.list_runs()
        assert record.journal == str(tmp_path / "runs" / "r" / "journal.jsonl")
        monkeypatch.chdir("/")
        assert main(["runs"]) == 0
        assert capsys.readouterr().out.splitlines()[1].rstrip().endswith("replay of q")
    finally:
        server.stop()
