"""``LiveTuneCallback()`` alone makes a run live: it serves the registry while training when
nothing in the process serves it, under ``<algorithm>-<env id>``, and uses a server the user
already started otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from stable_baselines3 import PPO

import livetune_rl as lt
from livetune_rl import discovery
from livetune_rl.journal import read_journal
from livetune_rl.sb3 import LiveTuneCallback

SCRIPT = textwrap.dedent("""
    import sys
    from stable_baselines3 import PPO
    from livetune_rl.sb3 import LiveTuneCallback

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(int(sys.argv[1]), callback=LiveTuneCallback())
    print("lr after training", model.policy.optimizer.param_groups[0]["lr"])
""")


def test_the_callback_alone_serves_while_training(tmp_path: Path, sub_env: dict[str, str]) -> None:
    env = {k: v for k, v in sub_env.items() if k != "LIVETUNE_SERVE"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "20000"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the run never showed in livetune runs"
            runs = [r for r in discovery.list_runs() if r.run == "ppo-CartPole-v1"]
            if runs:
                break
            time.sleep(0.2)
        with lt.connect(run="ppo-CartPole-v1") as client:
            journal = client.list().journal
            client.set({"learning_rate": 1e-4})
        out = proc.communicate(timeout=240)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "lr after training 0.0001" in out, out[-2000:]
    assert [e.step is not None for e in read_journal(journal)
            if e.kind == "applied" and e.name == "learning_rate"] == [True]
    assert not [r for r in discovery.list_runs() if r.run == "ppo-CartPole-v1"]  # stopped


def test_a_server_already_running_is_used(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.delenv("LIVETUNE_SERVE")
    registry = lt.Registry()
    callback = LiveTuneCallback(registry)
    with lt.serve("127.0.0.1:0", registry=registry, run="mine", journal=False, quiet=True):
        PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1).learn(
            32, callback=callback)
        assert callback.serving.server is None
        assert [r.run for r in discovery.list_runs()] == ["mine"]


def test_serve_false_and_livetune_serve_0_keep_it_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_SERVE")
    callback = LiveTuneCallback(lt.Registry(), serve=False)
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1).learn(
        32, callback=callback)
    assert callback.serving.server is None and discovery.list_runs() == []
