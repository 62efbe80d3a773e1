"""Which hyperparameters of an SB3 algorithm can change live, and how each one is applied.

Every knob is defined by a test (does this model have it?), a getter (its current value, the
live variable's default), bounds or a check (values the algorithm cannot take are refused
before a set is acknowledged) and an apply function that puts a value into effect in a way SB3
does not undo (docs/rl.md, "Why each knob is applied where it is"):

=================  ==========================================  ===============================
knob               algorithms                                  applied by
=================  ==========================================  ===============================
learning_rate      all                                         ``lr_schedule`` -> LiveSchedule,
                                                               ``model.learning_rate``, and
                                                               every optimizer's param_groups
                                                               (SAC's entropy optimizer too)
ent_coef           PPO-like, A2C; SAC, TQC, CrossQ with a       ``model.ent_coef`` (SAC:
                   fixed coefficient                           ``ent_coef_tensor``)
target_entropy     SAC, TQC, CrossQ with ``ent_coef="auto"``   ``model.target_entropy``
clip_range         PPO, RecurrentPPO, MaskablePPO                ``clip_range`` -> LiveSchedule
exploration_rate   DQN, QR-DQN                                 ``exploration_schedule`` ->
                                                               LiveSchedule
gamma              all                                         ``model.gamma`` and the rollout
                                                               buffer's copy
gae_lambda         PPO, A2C                                    idem
n_epochs           PPO-like                                    ``model.n_epochs``
batch_size         PPO-like, TRPO and off-policy               ``model.batch_size``
vf_coef            PPO-like, A2C                               ``model.vf_coef``
max_grad_norm      PPO-like, A2C, DQN-like                     ``model.max_grad_norm``
target_kl          PPO-like (0 disables); TRPO (> 0)           ``model.target_kl``
tau                off-policy but CrossQ (no target network)   ``model.tau``
gradient_steps     off-policy                                  ``model.gradient_steps``
target_update_     DQN, QR-DQN (read every step)               ``model.target_update_interval``
interval
cg_damping,        TRPO                                        the attributes of those names
n_critic_updates
top_quantiles_     TQC (at least one quantile must remain)     ``model.top_quantiles_to_drop_
to_drop_per_net                                                per_net``
policy_delay       CrossQ                                      ``model.policy_delay``
=================  ==========================================  ===============================

PPO-like: PPO and sb3-contrib's RecurrentPPO and MaskablePPO; DQN-like: DQN and QR-DQN. TQC
and CrossQ get SAC's knobs through the attributes they share with it; TRPO gets neither an
entropy nor a value coefficient, nor gradient clipping (it uses none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from ..values import Check, Value
from .schedules import live_schedule


@dataclass(frozen=True)
class KnobDef:
    """How one hyperparameter is read and applied on an SB3 model."""

    name: str
    help: str
    applies_to: Callable[[BaseAlgorithm], bool]
    get: Callable[[BaseAlgorithm], Value]
    apply: Callable[[BaseAlgorithm, Any], None]
    min: float | int | None = None
    max: float | int | None = None
    check: Callable[[BaseAlgorithm], Check | None] = field(default=lambda m: None)
    every_step: bool = False
    """applied at the next env step (SB3 recomputes it every step) instead of the rollout end"""


# _has, _is and _set are bound in the table with functools.partial, not made into closures at
# import, so their code runs each time a knob is looked up or applied (and a test that uses a
# knob tests it).
def _has(model: BaseAlgorithm, *, attr: str) -> bool:
    return getattr(model, attr, None) is not None


def _is(model: BaseAlgorithm, *, algo: str | tuple[str, ...]) -> bool:
    """The model is (a subclass of) the algorithm(s) called ``algo``, by class name, so that
    sb3-contrib needs no import here."""
    names = (algo,) if isinstance(algo, str) else algo
    return any(cls.__name__ in names for cls in type(model).__mro__)


PPO_LIKE = ("PPO", "RecurrentPPO", "MaskablePPO")
"""PPO and the sb3-contrib algorithms that train with PPO's clipped loop (they subclass
``OnPolicyAlgorithm``, not ``PPO``)."""
DQN_LIKE = ("DQN", "QRDQN")
"""DQN and sb3-contrib's QR-DQN (same exploration schedule and target updates)."""


def optimizers(model: BaseAlgorithm) -> list[th.optim.Optimizer]:
    """Every torch optimizer SB3 updates from ``lr_schedule`` for this model."""
    found: list[th.optim.Optimizer] = []
    for owner, attr in ((model.policy, "optimizer"), (getattr(model, "actor", None), "optimizer"),
                        (getattr(model, "critic", None), "optimizer"),
                        (model, "ent_coef_optimizer")):
        opt = getattr(owner, attr, None)  # None for an owner the model does not have
        if isinstance(opt, th.optim.Optimizer) and all(opt is not o for o in found):
            found.append(opt)
    return found


def _current_lr(model: BaseAlgorithm) -> float:
    return float(model.lr_schedule(model._current_progress_remaining))


def _apply_lr(model: BaseAlgorithm, value: float) -> None:
    live_schedule(model, "lr_schedule").override_with(value)
    model.learning_rate = value  # what save()/load() rebuild the schedule from
    for opt in optimizers(model):
        for group in opt.param_groups:
            group["lr"] = value


def _apply_ent_coef(model: BaseAlgorithm, value: float) -> None:
    model.ent_coef = value
    if hasattr(model, "ent_coef_tensor"):  # SAC with a fixed coefficient
        model.ent_coef_tensor = th.tensor(float(value), device=model.device)


def _sac_fixed_ent(model: BaseAlgorithm) -> bool:
    # SAC has both attributes; the optimizer is None when the coefficient is fixed
    return hasattr(model, "ent_coef_tensor") and model.ent_coef_optimizer is None


def _apply_exploration(model: BaseAlgorithm, value: float) -> None:
    live_schedule(model, "exploration_schedule").override_with(value)
    model.exploration_rate = float(value)  # DQN recomputes it from the schedule every step


def _apply_gamma(model: BaseAlgorithm, value: float) -> None:
    model.gamma = value
    if isinstance(model, OnPolicyAlgorithm):  # its rollout buffer computes the returns
        model.rollout_buffer.gamma = value


def _apply_gae(model: BaseAlgorithm, value: float) -> None:  # on-policy algorithms only
    model.gae_lambda = value
    model.rollout_buffer.gae_lambda = value


def _batch_check(model: BaseAlgorithm) -> Check:
    if isinstance(model, OnPolicyAlgorithm):
        limit = model.n_steps * model.n_envs
        return lambda v: None if int(v) <= limit else (
            f"larger than the rollout (n_steps x n_envs = {limit})")
    limit = model.buffer_size  # the knob exists for PPO and off-policy algorithms only
    return lambda v: None if int(v) <= limit else f"larger than the buffer ({limit})"


def _tqc_drop_check(model: BaseAlgorithm) -> Check:
    total, critics = int(model.critic.quantiles_total), int(model.critic.n_critics)
    return lambda v: None if total - int(v) * critics >= 1 else (
        f"would drop every quantile ({critics} critics x {int(v)} of {total // critics})")


def _set(model: BaseAlgorithm, value: Any, *, attr: str,
         cast: Callable[[Any], Any] = float) -> None:
    setattr(model, attr, cast(value))


KNOBS: tuple[KnobDef, ...] = (
    KnobDef("learning_rate", "optimizer step size (replaces the lr schedule by a constant)",
            lambda m: True, _current_lr, _apply_lr, min=0.0, max=10.0),
    KnobDef("ent_coef", "entropy coefficient of the loss",
            lambda m: (isinstance(m, OnPolicyAlgorithm) and isinstance(m.ent_coef, float)
                       and not _is(m, algo="TRPO")) or _sac_fixed_ent(m),
            lambda m: float(m.ent_coef), _apply_ent_coef, min=0.0, max=100.0),
    KnobDef("target_entropy", "target entropy of SAC's learned entropy coefficient",
            lambda m: getattr(m, "ent_coef_optimizer", None) is not None,
            lambda m: float(m.target_entropy), partial(_set, attr="target_entropy"),
            min=-1e6, max=1e6),
    KnobDef("clip_range", "PPO policy clipping parameter (replaces its schedule)",
            partial(_is, algo=PPO_LIKE),
            lambda m: float(m.clip_range(m._current_progress_remaining)),
            lambda m, v: live_schedule(m, "clip_range").override_with(v), min=0.0, max=10.0,
            check=lambda m: lambda v: None if v > 0 else "must be > 0"),
    KnobDef("exploration_rate", "DQN epsilon (replaces its exploration schedule)",
            partial(_is, algo=DQN_LIKE), lambda m: float(m.exploration_rate),
            _apply_exploration, min=0.0, max=1.0, every_step=True),
    KnobDef("gamma", "discount factor (also the rollout buffer's copy)",
            partial(_has, attr="gamma"), lambda m: float(m.gamma), _apply_gamma, min=0.0, max=1.0),
    KnobDef("gae_lambda", "GAE lambda (also the rollout buffer's copy)",
            lambda m: isinstance(m, OnPolicyAlgorithm), lambda m: float(m.gae_lambda),
            _apply_gae, min=0.0, max=1.0),
    KnobDef("n_epochs", "PPO epochs per update", partial(_is, algo=PPO_LIKE),
            lambda m: int(m.n_epochs), partial(_set, attr="n_epochs", cast=int), min=1, max=1000),
    KnobDef("batch_size", "minibatch size",
            lambda m: (_is(m, algo=(*PPO_LIKE, "TRPO")) or isinstance(m, OffPolicyAlgorithm))
            and getattr(m, "batch_size", None) is not None,
            lambda m: int(m.batch_size), partial(_set, attr="batch_size", cast=int),
            min=1, max=1 << 24, check=_batch_check),
    KnobDef("vf_coef", "value loss coefficient",
            lambda m: _has(m, attr="vf_coef") and not _is(m, algo="TRPO"),
            lambda m: float(m.vf_coef), partial(_set, attr="vf_coef"), min=0.0, max=100.0),
    KnobDef("max_grad_norm", "gradient clipping norm",
            lambda m: _has(m, attr="max_grad_norm") and not _is(m, algo="TRPO"),
            lambda m: float(m.max_grad_norm), partial(_set, attr="max_grad_norm"),
            min=1e-8, max=1e6),
    KnobDef("target_kl", "PPO early-stopping KL limit (0 disables)", partial(_is, algo=PPO_LIKE),
            lambda m: float(m.target_kl or 0.0),
            lambda m, v: setattr(m, "target_kl", float(v) or None), min=0.0, max=100.0),
    KnobDef("tau", "target network soft-update coefficient",
            lambda m: isinstance(m, OffPolicyAlgorithm) and not _is(m, algo="CrossQ"),
            lambda m: float(m.tau),
            partial(_set, attr="tau"), min=0.0, max=1.0),
    KnobDef("gradient_steps", "gradient steps per rollout (-1: as many as env steps)",
            lambda m: isinstance(m, OffPolicyAlgorithm), lambda m: int(m.gradient_steps),
            partial(_set, attr="gradient_steps", cast=int), min=-1, max=100_000,
            check=lambda m: lambda v: None if v != 0 else "0 would never train"),
    KnobDef("target_update_interval", "env steps between target network updates",
            partial(_is, algo=DQN_LIKE), lambda m: int(m.target_update_interval),
            partial(_set, attr="target_update_interval", cast=int), min=1, max=1 << 30),
    # sb3-contrib
    KnobDef("target_kl", "TRPO's KL limit of the line search (> 0)", partial(_is, algo="TRPO"),
            lambda m: float(m.target_kl), partial(_set, attr="target_kl"), min=0.0, max=100.0,
            check=lambda m: lambda v: None if v > 0 else "must be > 0 (TRPO always uses it)"),
    KnobDef("cg_damping", "TRPO's conjugate-gradient damping", partial(_is, algo="TRPO"),
            lambda m: float(m.cg_damping), partial(_set, attr="cg_damping"), min=0.0,
            max=100.0),
    KnobDef("n_critic_updates", "TRPO's value-function updates per rollout",
            partial(_is, algo="TRPO"), lambda m: int(m.n_critic_updates),
            partial(_set, attr="n_critic_updates", cast=int), min=1, max=10_000),
    KnobDef("top_quantiles_to_drop_per_net", "TQC's truncated quantiles per critic",
            partial(_is, algo="TQC"), lambda m: int(m.top_quantiles_to_drop_per_net),
            partial(_set, attr="top_quantiles_to_drop_per_net", cast=int), min=0, max=10_000,
            check=_tqc_drop_check),
    KnobDef("policy_delay", "CrossQ's critic updates per actor update",
            partial(_is, algo="CrossQ"), lambda m: int(m.policy_delay),
            partial(_set, attr="policy_delay", cast=int), min=1, max=10_000),
)


def knobs_for(model: BaseAlgorithm) -> list[KnobDef]:
    """The knobs that exist for this model (others are simply not registered)."""
    return [k for k in KNOBS if k.applies_to(model)]
