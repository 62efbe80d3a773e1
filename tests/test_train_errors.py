"""``train()`` is a library function: a run that cannot start raises ``TrainError`` (a
``LiveTuneError`` and ``ValueError``), which ``livetune train`` turns into exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.train import TrainConfig, TrainError, train


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))


def test_an_existing_run_directory_raises_train_error_not_system_exit(tmp_path: Path) -> None:
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    with pytest.raises(TrainError, match="already exists") as refused:
        train(TrainConfig(run_name="taken", runs_root=str(tmp_path / "runs"), timesteps=16,
                          n_envs=1, progress=False))
    assert isinstance(refused.value, lt.LiveTuneError) and isinstance(refused.value, ValueError)
    assert list((tmp_path / "runs" / "taken").iterdir()) == []  # nothing written into it


def test_an_algorithm_that_does_not_fit_the_env_raises_train_error(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"dqn needs a discrete action space.*pick"):
        train(TrainConfig(env="Pendulum-v1", algo="dqn", run_name="pendulum",
                          runs_root=str(tmp_path / "runs"), timesteps=16, n_envs=1,
                          vec="dummy", progress=False))
