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

import inspect
import json
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ray import tune
from stable_baselines3.common.base_class import BaseAlgorithm
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
    :param checkpoint: also save the model (``model.zip``) with every report, as a Tune
        checkpoint (what PBT copies from one trial to another and restores from).
    :param verbose: SB3's verbosity level.
    """

    def __init__(self, every: int = 2048, extra: dict[str, Any] | None = None,
                 checkpoint: bool = False, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every <= 0:
            raise ValueError(f"every must be a positive number of env steps, not {every!r}")
        self.every = every
        self.extra = dict(extra or {})
        self.checkpoint = checkpoint
        self._next = every

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.every  # a restored model goes on counting

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            if not self.checkpoint:
                tune.report(self.metrics())
                return True
            with tempfile.TemporaryDirectory() as directory:
                save_model(self.model, Path(directory))
                tune.report(self.metrics(),
                            checkpoint=tune.Checkpoint.from_directory(directory))
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


MODEL_FILE = "model.zip"
STEPS_FILE = "timesteps.json"
EXPLOIT_TRIGGER = "pbt.exploit"
EXPLOIT_CHECKPOINT = "pbt.checkpoint"


def save_model(model: BaseAlgorithm, directory: Path) -> None:
    """Write ``model`` as a trial checkpoint: ``model.zip`` (policy and optimizer) and the
    env steps done so far."""
    model.save(directory / MODEL_FILE)
    (directory / STEPS_FILE).write_text(json.dumps({"num_timesteps": model.num_timesteps}))


def load_model(model: BaseAlgorithm, directory: Path) -> None:
    """Put a trial checkpoint's weights and optimizer state into ``model`` (its
    hyperparameters stay those of ``model``) and go on counting from its env steps."""
    model.set_parameters(str(directory / MODEL_FILE), exact_match=True, device=model.device)
    model.num_timesteps = int(json.loads((directory / STEPS_FILE).read_text())["num_timesteps"])


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
    :param checkpoint: save a Tune checkpoint with every report (PBT needs them).
    :param algo_kwargs: more keyword arguments of the algorithm (``n_steps``, ``gamma``...).
    :param hyperparameters: keyword arguments of the algorithm given as top-level keys of
        Tune's config (``clip_range``: what PBT perturbs), filled in by :meth:`from_tune`.
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
    checkpoint: bool = False
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tune(cls, config: dict[str, Any],
                  algo_parameters: frozenset[str] = frozenset()) -> SB3TrialConfig:
        """From Tune's config dict: keys that are not settings but are ``algo_parameters``
        (the algorithm's keyword arguments) become :attr:`hyperparameters`; any other key
        is an error naming the known ones.

        >>> SB3TrialConfig.from_tune({"seed": 3, "clip_range": 0.1},
        ...                          frozenset({"clip_range"})).hyperparameters
        {'clip_range': 0.1}
        """
        known = {f.name for f in fields(cls)} - {"hyperparameters"}
        unknown = sorted(set(config) - known - algo_parameters)
        if unknown:
            raise ValueError(f"unknown sb3_trainable settings {unknown}; known: "
                             f"{sorted(known)} and the algorithm's keyword arguments")
        return cls(**{k: v for k, v in config.items() if k in known},
                   hyperparameters={k: v for k, v in config.items() if k not in known})


def sb3_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: an SB3 run that is live (every knob of the algorithm, the
    ``checkpoint``/``evaluate``/``stop`` triggers) and reports to Tune.

    :param config: Tune's config, the fields of :class:`SB3TrialConfig`.
    """
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env

    from ..registry import LiveVariable, Registry
    from ..sb3 import LiveTuneCallback
    from .trial import live_trial

    algo = getattr(stable_baselines3, str(config.get("algo", "PPO")), None)
    if not isinstance(algo, type):
        raise ValueError(f"unknown SB3 algorithm {config.get('algo')!r}; use one of PPO, A2C, "
                         "DQN, SAC, TD3")
    parameters = frozenset(inspect.signature(algo).parameters) - {"policy", "env"}
    settings = SB3TrialConfig.from_tune(config, parameters)
    if settings.env == HUNGRY_THIRSTY_ID:
        import livetune_rl.envs  # noqa: F401 - registers the env id
    registry = Registry()
    env = make_vec_env(settings.env, n_envs=settings.n_envs, seed=settings.seed)
    model = algo("MlpPolicy", env, learning_rate=settings.learning_rate, seed=settings.seed,
                 device="cpu", **{**settings.algo_kwargs, **settings.hyperparameters})
    restored = tune.get_checkpoint()  # Tune restarts a trial from one (PBT's exploit does)
    if restored is not None:
        with restored.as_directory() as directory:
            load_model(model, Path(directory))
    live = LiveTuneCallback(registry, serve=False, reward=False)
    # PBT through livetune (LivePBT): copy another trial's weights without a restart
    checkpoint = LiveVariable(EXPLOIT_CHECKPOINT, "", registry=registry,
                              help="trial checkpoint directory the next exploit loads")
    live.add_trigger(EXPLOIT_TRIGGER, lambda owner: _exploit(owner.model, checkpoint.value),
                     help="load the weights of the checkpoint pbt.checkpoint names")
    with live_trial(registry, bind=settings.bind, heartbeat=settings.heartbeat):
        model.learn(max(0, settings.timesteps - model.num_timesteps), reset_num_timesteps=False,
                    callback=[live, TuneReportCallback(every=settings.report_every,
                                                       checkpoint=settings.checkpoint)])


def _exploit(model: BaseAlgorithm, directory: str) -> dict[str, Any]:
    """The ``pbt.exploit`` action: another trial's checkpoint loaded into this trial's model
    (its step count is kept: this trial's own env steps go on counting)."""
    if not directory:
        raise ValueError(f"{EXPLOIT_CHECKPOINT} names no checkpoint directory: set it first")
    steps = model.num_timesteps
    load_model(model, Path(directory))
    model.num_timesteps = steps
    return {"loaded": directory}
