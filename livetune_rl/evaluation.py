"""The ``evaluate`` event: what a training loop reports after an evaluation, and what a watcher
(``livetune tune``) reads from it. Writers and readers both go through :class:`EvaluateEvent`.

On the wire (the journal, ``livetune watch``) the event's data is one flat JSON object:

* every metric as a number: ``mean_reward``, ``std_reward``, ``mean_length``, ``episodes``
  and ``mean_<key>``/``std_<key>`` for the extra per-episode metrics of an SB3 run, the
  training policy's ``train_mean_<key>``; ``loss``, ``acc1``... of a vision run;
* ``total_timesteps``: the run's step budget, when known (a watcher can tell how long is left);
* ``train_episodes``: one list per key, one value per training episode ended since the
  previous evaluation (reward term totals ``reward.<term>`` and per-episode info keys);
* ``error``: why no evaluation ran (then there are no metrics).

Example::

    >>> event = EvaluateEvent({"mean_reward": 1.5, "episodes": 2}, total_timesteps=800)
    >>> data = event.to_data()
    >>> data
    {'mean_reward': 1.5, 'episodes': 2, 'total_timesteps': 800}
    >>> EvaluateEvent.from_data(data).metric("mean_reward")
    1.5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT = "evaluate"
"""The event's name in the journal and the watch stream (also the trigger that asks for one)."""


@dataclass(frozen=True)
class EvaluateEvent:
    """The data of one ``evaluate`` event (see the module docstring for the wire format)."""

    metrics: dict[str, float | int] = field(default_factory=dict)
    total_timesteps: int | None = None
    train_episodes: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None

    def metric(self, name: str) -> float | None:
        """The metric ``name`` as a float (None when the event does not carry it)."""
        value = self.metrics.get(name)
        return None if value is None else float(value)

    def to_data(self) -> dict[str, Any]:
        """The flat JSON object journaled and streamed as the event's data."""
        if self.error is not None:
            return {"error": self.error}
        data: dict[str, Any] = dict(self.metrics)
        if self.total_timesteps:
            data["total_timesteps"] = int(self.total_timesteps)
        if self.train_episodes:
            data["train_episodes"] = {k: list(v) for k, v in self.train_episodes.items()}
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> EvaluateEvent:
        """Read an event's data (anything not understood is ignored, never an error)."""
        total = data.get("total_timesteps")
        episodes = data.get("train_episodes")
        error = data.get("error")
        metrics = {k: v for k, v in data.items()
                   if k not in ("total_timesteps", "train_episodes", "error")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(
            metrics=metrics,
            total_timesteps=int(total) if isinstance(total, (int, float)) else None,
            train_episodes=dict(episodes) if isinstance(episodes, dict) else {},
            error=str(error) if error is not None else None,
        )
