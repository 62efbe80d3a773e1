"""``LiveTuneCallback``: live hyperparameters, reward weights and triggers for any SB3 model.

Attach it to ``learn()``. It is a ``CallbackList`` of small callbacks, one concern each, that
can also be used alone or composed differently:

* :class:`~livetune_rl.sb3.reward.RewardCallback`: one live variable per reward weight of a
  :class:`~livetune_rl.wrappers.LiveRewardWrapper` found in the env, pushed to every env,
  re-labelling the replay buffer, resetting VecNormalize's return statistics;
* :class:`~livetune_rl.sb3.knobs.KnobsCallback`: a live variable for every knob the running
  algorithm has (see :mod:`livetune_rl.sb3.algorithm_knobs`) and knobs of your own;
* :class:`~livetune_rl.sb3.episodes.EpisodeTermsCallback`: per training episode, the reward
  term totals and chosen info numbers, for the next ``evaluate`` event;
* :class:`~livetune_rl.sb3.triggers.TriggersCallback`: the triggers ``checkpoint``,
  ``evaluate`` and ``stop`` (and your own), periodic checkpoints and evaluations;
* :class:`~livetune_rl.sb3.train_stats.TrainStatsCallback`: SB3's update statistics
  (``train/loss``...) as ``train`` events, for the curves of clients;
* :class:`~livetune_rl.sb3.serving.ServeCallback`: when nothing in the process serves the
  registry yet, serves it (out of process, as ``livetune train`` does) from training start to
  training end, so ``LiveTuneCallback()`` alone makes a run live.

Everything is applied on the main thread:

* reward weights, DQN's ``exploration_rate`` and triggers: in ``_on_step``, so a change or a
  fire takes effect within one env step. Weights are pushed to every env of the vector with
  ``env_method`` (DummyVecEnv or SubprocVecEnv alike), so all envs switch at the same step;
* optimizer and loss knobs: at the end of each rollout, right before ``train()`` (for
  on-policy algorithms once per rollout; for off-policy ones before every training phase).

Each applied change is recorded as ``live/<name>`` in SB3's logger (TensorBoard) and as an
``applied`` journal record carrying ``num_timesteps``. The callback puts nothing on the model
but picklable schedules, so ``model.save()`` works while it is attached.

Example::

    import livetune_rl as lt
    from livetune_rl.sb3 import LiveTuneCallback

    model = PPO("MlpPolicy", env)
    with lt.serve(run="ppo-demo"):
        model.learn(1_000_000, callback=LiveTuneCallback(run_dir="runs/ppo-demo"))
    # elsewhere: livetune set learning_rate 1e-4 ; livetune fire checkpoint
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv

from ..registry import LiveTrigger, LiveVariable, Registry, default_registry
from ..values import Check, Value
from .checkpoint import Checkpointer, load_checkpoint, prune_checkpoints
from .episodes import EpisodeTermsCallback
from .evaluation import Evaluator
from .knobs import KnobsCallback
from .reward import RewardCallback
from .serving import ServeCallback
from .train_stats import TrainStatsCallback
from .triggers import TriggerAction, TriggersCallback

__all__ = ["LiveTuneCallback", "TriggerAction", "load_checkpoint", "prune_checkpoints"]


class LiveTuneCallback(CallbackList):
    """Make an SB3 run live-tunable: reward weights, knobs, episode terms and triggers
    together. See the module docstring for what is applied when.

    Args:
        registry: where to register (default: the process-wide registry, the one
            ``livetune_rl.serve()`` serves by default).
        knobs: only these algorithm knobs (default: every knob the algorithm has).
        reward: own the reward weights of a ``LiveRewardWrapper`` in the env (pushed mode).
        run_dir: checkpoints go to ``run_dir/checkpoints/step_<n>/``.
        eval_env: env for the ``evaluate`` trigger and ``eval_every`` (default: none; an
            evaluation then reports that no eval env was given, the training env is never
            used).
        n_eval_episodes: episodes per evaluation.
        eval_every: also evaluate every this many env steps (0: only on the trigger).
        checkpoint_every: also checkpoint every this many env steps (0: only on the trigger).
        keep_checkpoints: keep the newest this many of the ``checkpoint_every`` checkpoints
            (0: all). Checkpoints of the ``checkpoint`` trigger, ``final`` and ``interrupted``
            are never deleted; of a checkpoint directory only the files it wrote are removed.
        reset_reward_stats: with ``VecNormalize(norm_reward=True)`` in the stack, reset its
            return statistics when the reward weights change (else only warn).
        episode_info_keys: numbers to collect from each training episode's last ``info``
            (e.g. ``("fitness",)``). With the per-term totals a ``LiveRewardWrapper`` reports
            (``reward.<component>``), they go into the next ``evaluate`` event as
            ``train_episodes``: one list per key, one value per training episode ended since
            the previous evaluation (what ``livetune tune --credit`` correlates), and each
            key's mean as ``train_mean_<key>`` (a metric ``livetune tune --metric`` can
            follow: the training policy explores, so it answers a change before the
            deterministic evaluation does).
        eval_info_keys: numbers to average over the evaluation episodes' last ``info``,
            reported as ``mean_<key>`` and ``std_<key>`` (e.g. ``("fitness",)``).
        train_stats_every: env steps at least between two ``train`` events (SB3's update
            statistics: ``loss``...; 0: after every update phase).
        serve: serve the registry while training when nothing in this process serves it
            yet (see :mod:`livetune_rl.sb3.serving`; ``LIVETUNE_SERVE=0`` also turns it off).
        address: where that server listens (default ``$LIVETUNE_ADDR``, else the default
            address or a free port).
        run_name: its name in ``livetune runs`` (default ``$LIVETUNE_RUN``, else
            ``<algorithm>-<env id>``).
        token: require this bearer token from its clients (default ``$LIVETUNE_TOKEN``).
        verbose: 1 prints every applied change.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        knobs: Sequence[str] | None = None,
        reward: bool = True,
        run_dir: str | Path | None = None,
        eval_env: VecEnv | Any | None = None,
        n_eval_episodes: int = 10,
        eval_every: int = 0,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 5,
        reset_reward_stats: bool = True,
        episode_info_keys: Sequence[str] = (),
        eval_info_keys: Sequence[str] = (),
        train_stats_every: int = 1000,
        serve: bool = True,
        address: str | None = None,
        run_name: str | None = None,
        token: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.reward = (RewardCallback(self.registry, reset_reward_stats=reset_reward_stats,
                                      verbose=verbose) if reward else None)
        self.knobs = KnobsCallback(self.registry, only=knobs, verbose=verbose)
        self.episode_terms = EpisodeTermsCallback(episode_info_keys)
        self.triggers = TriggersCallback(
            self.registry,
            checkpointer=Checkpointer(self.registry, run_dir, keep=keep_checkpoints,
                                      verbose=verbose),
            evaluator=Evaluator(self.registry, eval_env, n_episodes=n_eval_episodes,
                                info_keys=eval_info_keys),
            episodes=self.episode_terms, eval_every=eval_every,
            checkpoint_every=checkpoint_every, owner=self, verbose=verbose)
        self.serving = ServeCallback(self.registry, serve=serve, address=address,
                                     run_name=run_name, token=token, verbose=verbose)
        # not a child: it acts only at training start and end, so the step loop does not
        # dispatch to it every step
        self.train_stats = TrainStatsCallback(self.registry, every=train_stats_every,
                                              verbose=verbose)
        parts: list[BaseCallback] = [self.knobs, self.episode_terms, self.triggers,
                                     self.train_stats]
        super().__init__([self.reward, *parts] if self.reward is not None else parts)
        self.verbose = verbose
        self._attached_to: BaseAlgorithm | None = None

    # ----------------------------------------------------------------- user extensions
    def add_knob(
        self,
        name: str,
        default: Value,
        apply: Callable[[Any], Any],
        *,
        min: float | int | None = None,
        max: float | int | None = None,
        choices: Sequence[Value] | None = None,
        help: str = "",
        check: Check | None = None,
        every_step: bool = False,
    ) -> LiveTuneCallback:
        """Add a knob of your own: ``apply(value)`` runs on the main thread at the rollout end
        (or at the next step with ``every_step=True``). Returns self, for chaining."""
        self.knobs.add_knob(name, default, apply, min=min, max=max, choices=choices,
                            help=help, check=check, every_step=every_step)
        return self

    def add_trigger(self, name: str, action: TriggerAction, help: str = "") -> LiveTuneCallback:
        """Add a trigger: ``action(callback)`` runs within one env step of a fire; a returned
        mapping is journaled and streamed as an event named after the trigger."""
        self.triggers.add_trigger(name, action, help)
        return self

    # ----------------------------------------------------------------- set-up
    def attach(self, model: BaseAlgorithm) -> None:
        """Register the knobs, reward weights and triggers for ``model`` now (``learn()`` does
        it too; call this first to have them listed before training starts)."""
        if self._attached_to is model:
            return
        self.model = model
        for part in self._registering():
            part.attach(model)
        self._attached_to = model

    def _init_callback(self) -> None:
        self.attach(self.model)
        super()._init_callback()
        self.serving.init_callback(self.model)

    def close(self) -> None:
        """Unregister every variable and trigger of this callback."""
        for part in self._registering():
            part.detach()
        self._attached_to = None

    def _registering(self) -> list[RewardCallback | KnobsCallback | TriggersCallback]:
        """The parts that register variables or triggers."""
        parts: list[RewardCallback | KnobsCallback | TriggersCallback] = [self.knobs,
                                                                           self.triggers]
        return [self.reward, *parts] if self.reward is not None else parts

    # ----------------------------------------------------------------- the step
    def _on_step(self) -> bool:
        self.registry.step = self.num_timesteps
        return super()._on_step()

    def _on_training_start(self) -> None:
        self.registry.step = self.num_timesteps
        super()._on_training_start()
        self.serving.on_training_start(self.locals, self.globals)

    def _on_training_end(self) -> None:
        super()._on_training_end()
        self.serving.on_training_end()

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        """Nothing to do: the parts were handed this callback's ``locals`` dict itself at the
        training start (``CallbackList``), so they see every update of it already."""

    # ----------------------------------------------------------------- what the parts did
    @property
    def stopped(self) -> bool:
        """True once the ``stop`` trigger ended ``learn()``."""
        return self.triggers.stopped

    @property
    def last_checkpoint(self) -> Path | None:
        """The directory of the last checkpoint written."""
        return self.triggers.checkpointer.last

    @property
    def last_evaluation(self) -> dict[str, Any] | None:
        """The data of the last ``evaluate`` event that evaluated (None before the first)."""
        last = self.triggers.evaluator.last
        return None if last is None else last.to_data()

    @property
    def train_episodes(self) -> list[dict[str, float]]:
        """The training episodes collected since the last evaluation."""
        return self.episode_terms.episodes

    @property
    def reward_vars(self) -> dict[str, LiveVariable]:
        """The reward weight variables, by name (``reward.scale`` included)."""
        return dict(self.reward.variables) if self.reward is not None else {}

    @property
    def live_triggers(self) -> dict[str, LiveTrigger]:
        """The registered triggers, by name."""
        return {name: trigger for name, (trigger, _) in self.triggers.triggers.items()}

    def checkpoint(self, tag: str | None = None, *, periodic: bool = False) -> Path:
        """Save model, replay buffer, VecNormalize statistics and live values; journal it.

        The checkpoint directory and its files are private (0700/0600). ``periodic``
        checkpoints (``checkpoint_every``) are marked so in ``live_values.json`` and only the
        newest ``keep_checkpoints`` of them are kept; a directory that already holds a
        checkpoint made on request stays one made on request.
        """
        return self.triggers.checkpoint(tag, periodic=periodic)

    def evaluate(self) -> dict[str, Any]:
        """Run ``evaluate_policy`` on the eval env; log, journal and return the event's data."""
        return self.triggers.evaluate().to_data()
