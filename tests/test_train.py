"""`livetune train`, the main job, run as a user runs it: a subprocess, poked with the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import livetune_rl as lt

LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]


def livetune(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIVETUNE, *args], capture_output=True, text=True, timeout=60,
                          env=env)


def wait_for_run(name: str, env: dict[str, str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = livetune("runs", "--json", env=env)
        if out.returncode == 0 and any(r["run"] == name for r in json.loads(out.stdout)):
            return
        time.sleep(0.3)
    raise AssertionError(f"run {name} never appeared")


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVETUNE_")}
    env["LIVETUNE_HOME"] = str(tmp_path / "home")
    return env


def test_train_is_live_tunable_and_resumes_as_one_run(tmp_path: Path,
                                                      user_env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    cmd = [*LIVETUNE, "train", "--timesteps", "200000", "--n-envs", "2", "--vec", "subproc",
           "--run-name", "ht", "--runs-root", str(runs), "--eval-every", "0", "--no-progress",
           "--hyper", "n_steps=64", "--hyper", "batch_size=64"]
    trainer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=user_env)
    try:
        wait_for_run("ht", user_env)
        listing = livetune("ls", "--run", "ht", "--json", env=user_env)
        assert listing.returncode == 0, listing.stderr
        names = {v["name"] for v in json.loads(listing.stdout)["variables"]}
        assert {"learning_rate", "clip_range", "reward.not_hungry_thirsty",
                "reward.scale"} <= names
        out = livetune("set", "--run", "ht", "learning_rate", "1e-4",
                       "reward.hungry_thirsty=-0.5", env=user_env)
        assert out.returncode == 0, out.stderr
        bad = livetune("set", "--run", "ht", "n_epochs", "0", env=user_env)
        assert bad.returncode == 1 and "n_epochs" in bad.stderr
        time.sleep(2.0)
        assert livetune("fire", "--run", "ht", "stop", env=user_env).returncode == 0
        output, _ = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 0, output
    assert "livetune --run ht ls" in output  # the ready-to-paste commands
    assert "served from pid" in output  # served from a child process by default
    # it says what happened while it ran, and how it ended, in words
    assert "learning_rate = 0.0001 applied" in output and "stop requested by" in output
    assert "done: the run stopped at step" in output, output[-2000:]
    final = runs / "ht" / "checkpoints" / "final"
    values = json.loads((final / "live_values.json").read_text())["values"]
    assert values["learning_rate"] == 1e-4 and values["reward.hungry_thirsty"] == -0.5
    first = lt.read_journal(runs / "ht" / "journal.jsonl")
    applied = {e.name for e in first if e.kind == "applied"}
    assert {"learning_rate", "reward.hungry_thirsty", "stop"} <= applied

    # resume (served from a thread this time): same run, live values restored, journal
    # versions continue
    steps_before = json.loads((final / "live_values.json").read_text())["num_timesteps"]
    resumed = subprocess.run([*LIVETUNE, "train", "--resume", str(final), "--timesteps",
                              str(steps_before + 256), "--no-progress", "--eval-every", "0",
                              "--no-serve-process", "--max-calls-per-second", "0"],
                             capture_output=True, text=True, timeout=180, env=user_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "served from pid" not in resumed.stdout + resumed.stderr
    journal = lt.read_journal(runs / "ht" / "journal.jsonl")
    versions = [e.v for e in journal]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    restarts = [e for e in journal if e.kind == "start"]
    assert len(restarts) == 2 and restarts[1].data["resumed_from"] == str(final)
    offline = livetune("history", "--file", str(runs / "ht" / "journal.jsonl"), env=user_env)
    assert offline.returncode == 0 and "fire stop" in offline.stdout
    assert offline.stdout.count(" start ") == 2
    again = json.loads((final / "live_values.json").read_text())
    assert again["values"]["learning_rate"] == 1e-4
    assert again["values"]["reward.hungry_thirsty"] == -0.5
    assert again["num_timesteps"] >= steps_before + 256


def test_bad_serve_settings_are_refused_before_anything_is_created(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    for bad, message in ((["--max-calls-per-second", "-5"], "max_calls_per_second"),
                         (["--bind", "0.0.0.0:0"], "without a token")):
        out = livetune("train", "--timesteps", "100", "--runs-root", str(runs), *bad,
                       env=user_env)
        assert out.returncode == 1 and message in out.stderr, out.stderr
    assert not runs.exists()
