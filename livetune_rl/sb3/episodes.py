"""``EpisodeTermsCallback``: collect, per training episode, the reward term totals a
:class:`~livetune_rl.wrappers.LiveRewardWrapper` reports and chosen numbers of the last info.

They go into the next ``evaluate`` event as ``train_episodes`` (what ``livetune tune
--credit`` correlates with the outcome). Only an env wrapped in a ``LiveRewardWrapper`` reports
the term totals (``info["episode_reward_components"]`` at an episode's end); without one the
callback does nothing.

Example::

    terms = EpisodeTermsCallback(info_keys=("fitness",))
    model.learn(10_000, callback=terms)
    terms.drain()       # {"fitness": [...], "reward.hungry_thirsty": [...], ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

MAX_EPISODES = 1000
"""Training episodes kept between two drains (the oldest are dropped beyond)."""


class EpisodeTermsCallback(BaseCallback):
    """Keeps the training episodes ended since the last :meth:`drain`.

    Args:
        info_keys: numbers to collect from each training episode's last ``info`` (e.g.
            ``("fitness",)``), next to the term totals ``reward.<term>``.
        max_episodes: episodes kept between two drains (the oldest are dropped beyond).
    """

    def __init__(self, info_keys: Sequence[str] = (), *, max_episodes: int = MAX_EPISODES,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.info_keys = tuple(info_keys)
        self.max_episodes = max_episodes
        self.episodes: list[dict[str, float]] = []
        self._wrapped = False

    def _init_callback(self) -> None:
        env = self.model.get_env()
        self._wrapped = env is not None and env.has_attr("get_reward_spec")

    def _on_step(self) -> bool:
        if self._wrapped:  # only a LiveRewardWrapper reports episode term totals
            for info in self.locals.get("infos", ()):
                terms = info.get("episode_reward_components")
                if terms is not None:
                    self.add(terms, info)
        return True

    def add(self, terms: Mapping[str, float], info: Mapping[str, Any]) -> None:
        """Record one ended episode: its term totals and the ``info_keys`` of its last info."""
        episode = {f"reward.{name}": float(total) for name, total in terms.items()}
        for key in self.info_keys:
            value = info.get(key)
            if isinstance(value, (int, float, np.number)):
                episode[key] = float(value)
        self.episodes.append(episode)
        if len(self.episodes) > self.max_episodes:
            del self.episodes[0]

    def drain(self) -> dict[str, list[float]]:
        """The episodes since the last drain, as one list per key (the keys all share)."""
        episodes, self.episodes = self.episodes, []
        if not episodes:
            return {}
        keys = set.intersection(*(set(e) for e in episodes))
        return {k: [round(e[k], 6) for e in episodes] for k in sorted(keys)}
