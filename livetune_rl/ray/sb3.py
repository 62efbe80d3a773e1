"""SB3 in Ray Tune: progress reported to Tune (:class:`TuneReportCallback`) and a ready
function trainable whose every trial is live (:func:`sb3_trainable`)::

    from ray import tune
    from livetune_rl.ray.sb3 import sb3_trainable

    tune.Tuner(sb3_trainable, param_space={
        "env": "CartPole-v1", "timesteps": 100_000,
        "learning_rate": tune.grid_search([3e-4, 1e-3])}).fit()
    # meanwhile: livetune runs --ray ; livetune set --ray --run 'sb3_trainable*/*' ...
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
from ray import tune
from stable_baselines3.common.callbacks import BaseCallback

from ..env_ids import HUNGRY_THIRSTY_ID


class TuneReportCallback(BaseCallback):
    """Report to Tune every ``every`` env steps: ``timesteps_total`` and, once episodes have
    ended, ``episode_reward_mean`` and ``episode_len_mean`` over SB3's recent-episode buffer
    (the numbers SB3 logs as ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``).

    Tune schedulers (ASHA, PBT) read these as the trial's results; a live change made with
    ``livetune set`` shows in the next reports like any other.

    :param every: env steps between two reports (counted over all envs of the vector).
    :param extra: more numbers to report, each a function of the model (e.g. the learning
        rate in effect: ``{"lr": lambda m: m.policy.optimizer.param_groups[0]["lr"]}``).
    :param verbose: SB3's verbosity level.
    """

    def __init__(self, every: int = 2048, extra: dict[str, Any] | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every <= 0:
            raise ValueError(f"every must be a positive number of env steps, not {every!r}")
        self.every = every
        self.extra = dict(extra or {})
        self._next = every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            tune.report(self.metrics())
        return True

    def metrics(self) -> dict[str, float]:
        """What the next report holds."""
        metrics: dict[str, float] = {"timesteps_total": float(self.num_timesteps)}
        episodes = self.model.ep_info_buffer
        if episodes:
            metrics["episode_reward_mean"] = float(np.mean([e["r"] for e in episodes]))
            metrics["episode_len_mean"] = float(np.mean([e["l"] for e in episodes]))
        for name, read in self.extra.items():
            metrics[name] = float(read(self.model))
        return metrics


@dataclass(frozen=True)
class SB3TrialConfig:
    """The settings of one :func:`sb3_trainable` trial (Tune's ``param_space`` keys).

    :param algo: SB3 algorithm class name (``PPO``, ``A2C``, ``DQN``, ``SAC``, ``TD3``).
    :param env: Gymnasium id (``livetune/HungryThirsty-v0`` registers itself).
    :param timesteps: env steps to train (a live ``stop`` fire ends the trial earlier).
    :param n_envs: envs in the vector (DummyVecEnv).
    :param seed: seed of the model and envs.
    :param learning_rate: initial learning rate (live as ``learning_rate``).
    :param report_every: env steps between reports to Tune.
    :param bind: ``loopback`` or ``node`` (see :func:`~livetune_rl.ray.live_trial`).
    :param heartbeat: seconds between directory heartbeats.
    :param algo_kwargs: more keyword arguments of the algorithm (``n_steps``, ``gamma``...).
    """

    algo: str = "PPO"
    env: str = "CartPole-v1"
    timesteps: int = 100_000
    n_envs: int = 1
    seed: int = 0
    learning_rate: float = 3e-4
    report_every: int = 2048
    bind: Literal["loopback", "node"] = "loopback"
    heartbeat: float = 2.0
    algo_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> SB3TrialConfig:
        """From Tune's config dict; an unknown key is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown sb3_trainable settings {unknown}; known: "
                             f"{sorted(known)}")
        return cls(**config)


def sb3_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: an SB3 run that is live (every knob of the algorithm, the
    ``checkpoint``/``evaluate``/``stop`` triggers) and reports to Tune.

    :param config: Tune's config, the fields of :class:`SB3TrialConfig`.
    """
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env

    from ..registry import Registry
    from ..sb3 import LiveTuneCallback
    from .trial import live_trial

    settings = SB3TrialConfig.from_tune(config)
    if settings.env == HUNGRY_THIRSTY_ID:
        import livetune_rl.envs  # noqa: F401 - registers the env id
    algo = getattr(stable_baselines3, settings.algo, None)
    if algo is None:
        raise ValueError(f"unknown SB3 algorithm {settings.algo!r}; use one of PPO, A2C, DQN, "
                         "SAC, TD3")
    registry = Registry()
    env = make_vec_env(settings.env, n_envs=settings.n_envs, seed=settings.seed)
    model = algo("MlpPolicy", env, learning_rate=settings.learning_rate, seed=settings.seed,
                 device="cpu", **settings.algo_kwargs)
    with live_trial(registry, bind=settings.bind, heartbeat=settings.heartbeat):
        model.learn(settings.timesteps, callback=[
            LiveTuneCallback(registry, serve=False, reward=False),
            TuneReportCallback(every=settings.report_every)])
