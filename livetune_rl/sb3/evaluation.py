"""Evaluate an SB3 policy on an eval env and report it as an ``evaluate`` event.

The extra per-episode metrics come from the caller (``info_keys``): numbers read from the last
``info`` of each evaluation episode, reported as ``mean_<key>`` and ``std_<key>``. Nothing
about any env is built in; ``livetune train`` passes ``("fitness",)`` for Hungry-Thirsty.

Example::

    evaluator = Evaluator(registry, eval_env, n_episodes=10, info_keys=("fitness",))
    event = evaluator.run(model, step=model.num_timesteps)   # journaled and streamed
    event.metric("mean_fitness")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from ..evaluation import EVENT, EvaluateEvent
from ..registry import Registry

NO_EVAL_ENV = "no eval_env given to LiveTuneCallback"


class Evaluator:
    """Runs deterministic evaluations of a model and journals each as an ``evaluate`` event.

    Args:
        registry: where the event is journaled and streamed.
        eval_env: the env to evaluate on (None: each evaluation reports an error instead;
            the training env is never used).
        n_episodes: episodes per evaluation.
        info_keys: numbers to average over the evaluation episodes' last ``info``.
    """

    def __init__(self, registry: Registry, eval_env: VecEnv | Any | None = None, *,
                 n_episodes: int = 10, info_keys: Sequence[str] = ()) -> None:
        self.registry = registry
        self.eval_env = eval_env
        self.n_episodes = n_episodes
        self.info_keys = tuple(info_keys)
        self.last: EvaluateEvent | None = None

    def run(self, model: BaseAlgorithm, *, step: int,
            train_episodes: Mapping[str, list[float]] | None = None,
            train_keys: Sequence[str] = ()) -> EvaluateEvent:
        """Evaluate ``model`` now; log ``eval/<metric>`` to SB3's logger, journal the event
        (at ``step``) and return it. ``train_episodes`` (the training episodes since the last
        evaluation) go into the event, with ``train_mean_<key>`` for each of ``train_keys``."""
        if self.eval_env is None:
            event = EvaluateEvent(error=NO_EVAL_ENV)
            self.registry.record_event(EVENT, event.to_data(), step=step)
            return event
        train_env = model.get_env()
        if model.get_vec_normalize_env() is not None and hasattr(self.eval_env, "obs_rms"):
            sync_envs_normalization(train_env, self.eval_env)
        found: dict[str, list[float]] = {key: [] for key in self.info_keys}

        def collect(locals_: dict[str, Any], _globals: dict[str, Any]) -> None:
            if not locals_.get("done"):
                return
            info = locals_.get("info", {})
            for key, values in found.items():
                if isinstance(info.get(key), (int, float, np.number)):
                    values.append(float(info[key]))

        rewards, lengths = evaluate_policy(model, self.eval_env, n_eval_episodes=self.n_episodes,
                                           deterministic=True, callback=collect,
                                           return_episode_rewards=True, warn=False)
        metrics: dict[str, float | int] = {
            "mean_reward": float(np.mean(rewards)),
            "std_reward": float(np.std(rewards)),
            "mean_length": float(np.mean(lengths)),
            "episodes": len(rewards),
        }
        for key, values in found.items():
            if values:
                metrics[f"mean_{key}"] = float(np.mean(values))
                metrics[f"std_{key}"] = float(np.std(values))
        try:
            logger = model.logger
        except AttributeError:  # SB3 makes the logger in learn(): before it, log nowhere
            logger = None
        for key, value in metrics.items():
            if logger is not None:
                logger.record(f"eval/{key}", value)
        episodes = dict(train_episodes or {})
        for key in train_keys:  # the stochastic policy's side of the metric
            if key in episodes:
                metrics[f"train_mean_{key}"] = float(np.mean(episodes[key]))
        total = getattr(model, "_total_timesteps", 0)
        event = EvaluateEvent(metrics, total_timesteps=int(total) or None,
                              train_episodes=episodes)
        self.last = event
        self.registry.record_event(EVENT, event.to_data(), step=step)
        return event
