"""``TrainStatsCallback``: what SB3's last gradient updates logged, as ``train`` events.

SB3 records its update statistics in its logger under ``train/`` (PPO: ``loss``,
``value_loss``, ``policy_gradient_loss``, ``entropy_loss``, ``approx_kl``, ``clip_fraction``,
``explained_variance``, ``learning_rate``...; DQN: ``loss``, ``learning_rate``...). This
callback reads them when the next rollout starts (after ``train()`` recorded them and before
SB3's next log dump clears them) and publishes them as one ``train`` event with the step, so
any client sees the losses as they happen: ``livetune watch``, the panel's curves, a tuner.
At most one event per ``every`` env steps, so an off-policy algorithm that trains every few
steps does not fill the journal.

Example::

    stats = TrainStatsCallback(registry, every=2048)
    model.learn(100_000, callback=stats)     # elsewhere: livetune watch train
"""

from __future__ import annotations

from numbers import Real

from stable_baselines3.common.callbacks import BaseCallback

from ..registry import Registry, default_registry

EVENT = "train"
"""The name of the events this callback publishes."""
PREFIX = "train/"


class TrainStatsCallback(BaseCallback):
    """Publish SB3's ``train/`` statistics as a ``train`` event after each update phase.

    :param registry: where the events are journaled and streamed (default: the process-wide
        registry).
    :param every: env steps at least between two events (0: after every update phase).
    :param verbose: SB3's verbosity level.
    """

    def __init__(self, registry: Registry | None = None, *, every: int = 1000,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 0:
            raise ValueError(f"every must be >= 0 env steps, not {every!r}")
        self.registry = registry if registry is not None else default_registry()
        self.every = every
        self._updates_seen: float | None = None
        self._next_step = 0

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self._next_step:
            return
        stats = {key[len(PREFIX):]: float(value)
                 for key, value in self.model.logger.name_to_value.items()
                 if key.startswith(PREFIX) and isinstance(value, Real)}
        updates = stats.get("n_updates")
        if not stats or updates is None or updates == self._updates_seen:
            return  # nothing trained since the last event
        self._updates_seen = updates
        self._next_step = self.num_timesteps + self.every
        self.registry.record_event(EVENT, stats, step=self.num_timesteps)

    def _on_step(self) -> bool:
        return True
