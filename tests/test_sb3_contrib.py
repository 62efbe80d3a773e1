"""sb3-contrib algorithms: their knobs are registered and stick, as for the SB3 ones they extend.

For each algorithm a small real run sets the learning rate and one knob of its own halfway
through (as ``livetune set`` does: a registry set from outside the training thread's safe
point), and the test checks the values inside the optimizers and the model after the next
update, i.e. after SB3's own ``train()`` had its chance to undo them.
"""

from __future__ import annotations

from typing import Any

import pytest
from sb3_contrib import QRDQN, TQC, TRPO, CrossQ, MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from sb3_helpers import AtStep
from stable_baselines3.common.callbacks import CallbackList

import livetune_rl as lt
from livetune_rl.sb3 import LiveTuneCallback, optimizers


def _run(model: Any, changes: dict[str, Any], at: int, total: int) -> lt.Registry:
    registry = lt.Registry()
    callback = LiveTuneCallback(registry)
    updates: list[int] = []
    def change(_: AtStep) -> None:
        registry.set(changes)
        updates.append(model._n_updates)

    model.learn(total, callback=CallbackList([callback, AtStep(at, change)]))
    assert model._n_updates > updates[0], "no update ran after the change: raise the budget"
    lrs = {g["lr"] for opt in optimizers(model) for g in opt.param_groups}
    assert lrs == {changes["learning_rate"]}
    return registry


ON_POLICY = dict(n_steps=32, batch_size=32, seed=0, device="cpu")


def test_recurrent_ppo_clip_range_and_epochs() -> None:
    model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_epochs=1,
                         policy_kwargs={"lstm_hidden_size": 8}, **ON_POLICY)
    _run(model, {"learning_rate": 1e-4, "clip_range": 0.05, "n_epochs": 2}, at=40, total=128)
    assert model.clip_range(1.0) == 0.05 and model.n_epochs == 2


def test_maskable_ppo_clip_range_and_target_kl() -> None:
    model = MaskablePPO("MlpPolicy", InvalidActionEnvDiscrete(dim=8, n_invalid_actions=3),
                        n_epochs=1, **ON_POLICY)
    registry = _run(model, {"learning_rate": 2e-4, "clip_range": 0.1, "target_kl": 0.02},
                    at=40, total=128)
    assert model.clip_range(0.5) == 0.1 and model.target_kl == 0.02
    assert "ent_coef" in registry


def test_trpo_target_kl_and_its_own_knobs() -> None:
    model = TRPO("MlpPolicy", "CartPole-v1", **ON_POLICY)
    registry = _run(model, {"learning_rate": 3e-4, "target_kl": 0.005, "cg_damping": 0.2},
                    at=40, total=128)
    assert model.target_kl == 0.005 and model.cg_damping == 0.2
    # TRPO uses no entropy bonus, value coefficient or gradient clipping: no knob for them
    assert not {"ent_coef", "vf_coef", "max_grad_norm"} & set(registry.names())
    with pytest.raises(lt.InvalidValueError, match="must be > 0"):
        registry.set({"target_kl": 0.0})


def test_qrdqn_exploration_and_target_update_interval() -> None:
    model = QRDQN("MlpPolicy", "CartPole-v1", learning_starts=10, train_freq=4, batch_size=8,
                  buffer_size=200, policy_kwargs={"n_quantiles": 5}, seed=0, device="cpu")
    _run(model, {"learning_rate": 5e-4, "exploration_rate": 0.3,
                 "target_update_interval": 7}, at=30, total=60)
    assert model.exploration_rate == 0.3 and model.target_update_interval == 7


def test_tqc_truncation_and_its_refusal() -> None:
    model = TQC("MlpPolicy", "Pendulum-v1", learning_starts=10, batch_size=8, buffer_size=200,
                policy_kwargs={"n_quantiles": 5, "n_critics": 2, "net_arch": [16]}, seed=0,
                device="cpu")
    registry = _run(model, {"learning_rate": 7e-4, "top_quantiles_to_drop_per_net": 1},
                    at=20, total=40)
    assert model.top_quantiles_to_drop_per_net == 1
    with pytest.raises(lt.InvalidValueError, match="would drop every quantile"):
        registry.set({"top_quantiles_to_drop_per_net": 5})


def test_crossq_policy_delay_and_no_tau() -> None:
    model = CrossQ("MlpPolicy", "Pendulum-v1", learning_starts=10, batch_size=8,
                   buffer_size=200, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    registry = _run(model, {"learning_rate": 6e-4, "policy_delay": 1, "target_entropy": -2.0},
                    at=20, total=40)
    assert model.policy_delay == 1 and model.target_entropy == -2.0
    assert "tau" not in registry  # CrossQ has no target network


def test_dqn_target_update_interval_sticks() -> None:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", "CartPole-v1", learning_starts=10, train_freq=4, batch_size=8,
                buffer_size=200, target_update_interval=1000, seed=0, device="cpu")
    _run(model, {"learning_rate": 5e-4, "target_update_interval": 3}, at=30, total=60)
    assert model.target_update_interval == 3
