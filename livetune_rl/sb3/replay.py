"""``ReplayCallback``: make a journal's changes again, at the steps the original applied them.

Put it *before* a :class:`~livetune_rl.sb3.callback.LiveTuneCallback` on the same registry.
At each step it sets (or fires), through the registry, every change of its
:class:`~livetune_rl.replay.ReplayPlan` that the original run applied at that
``num_timesteps``; the live callbacks that come after it then apply it at the same safe point
as in the original, with the same code (a rollout-end knob at that rollout's end, a reward
weight or a step knob at that step, a trigger's action at that step). With the original's
seed, config and CPU, the replay trains the same model, bit for bit (docs/replay.md).

The replay journals each change with the source ``replay of v<N>`` (``N``: the original's
version) and stays live: a set or fire from anyone else makes it a new branch. From then on
the plan is no longer applied, and a ``replay`` event in the journal says at which step and
by whom it diverged.

Example::

    plan = ReplayPlan.from_journal("runs/ppo-a/journal.jsonl")
    registry = lt.Registry()
    model = PPO("MlpPolicy", env, seed=0)              # as the original was built
    model.learn(100_000, callback=[ReplayCallback(registry, plan),
                                   LiveTuneCallback(registry)])
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from ..journal import ChangeEvent
from ..registry import Registry
from ..replay import Change, Replayer, ReplayPlan


class ReplayCallback(BaseCallback):
    """Re-applies a :class:`~livetune_rl.replay.ReplayPlan` at the steps it names (a
    :class:`~livetune_rl.replay.Replayer` called at every step).

    .. warning::

        List it before the ``LiveTuneCallback`` (``callback=[replay, live]``): a change must
        be made before the safe point of its step, and SB3 calls the callbacks of a list in
        order. The plan's steps are ``num_timesteps``, which grows by ``n_envs`` per step:
        replay with the original's ``n_envs``, or a change lands late (counted in
        :attr:`late`, never lost).

    :param registry: the registry the live callbacks register the knobs in.
    :param plan: the changes to make (:meth:`ReplayPlan.from_journal
        <livetune_rl.replay.ReplayPlan.from_journal>`).
    :param until: end ``learn()`` at the first step at or after this one (None: learn's
        whole budget).
    :param verbose: 1 prints each change as it is made again.

    Example::

        >>> import gymnasium as gym
        >>> from stable_baselines3 import DQN
        >>> import livetune_rl as lt
        >>> from livetune_rl.replay import Change, ReplayPlan
        >>> from livetune_rl.sb3 import LiveTuneCallback
        >>> plan = ReplayPlan((Change(64, "learning_rate", "set", 5e-4, 7),))
        >>> registry = lt.Registry()
        >>> model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=32,
        ...             buffer_size=1_000, seed=0)
        >>> replay = ReplayCallback(registry, plan, until=96)
        >>> _ = model.learn(200, callback=[replay, LiveTuneCallback(registry, serve=False)])
        >>> model.num_timesteps, replay.replayed, model.policy.optimizer.param_groups[0]["lr"]
        (96, 1, 0.0005)
        >>> registry.variable("learning_rate").source
        'replay of v7'
    """

    def __init__(self, registry: Registry, plan: ReplayPlan, *, until: int | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.registry = registry
        self.plan = plan
        self.until = until
        self.replayer = Replayer(registry, plan, say=print if verbose else None)
        """does the work; its counts are this callback's"""
        self._next = -1
        self._stop_at = sys.maxsize if until is None else until

    @property
    def replayed(self) -> int:
        """changes made again so far"""
        return self.replayer.replayed

    @property
    def late(self) -> list[Change]:
        """changes made after their step (the replay's steps do not meet the original's)"""
        return self.replayer.late

    @property
    def unchanged(self) -> list[Change]:
        """sets of the value the variable already held here (the start values differ)"""
        return self.replayer.unchanged

    @property
    def diverged(self) -> ChangeEvent | None:
        """the first set or fire from outside the replay (None: none yet)"""
        return self.replayer.diverged

    @property
    def diverged_at(self) -> int | None:
        """the step at which the replay noticed it and stopped making the plan's changes"""
        return self.replayer.diverged_at

    # ----------------------------------------------------------------- SB3 hooks
    def _on_training_start(self) -> None:
        # every callback is initialised here: the knobs are registered
        self.replayer.start(self.num_timesteps, until=self.until)
        self._advance()  # changes applied when the original started (step 0)

    def _on_step(self) -> bool:
        replayer = self.replayer
        if self.num_timesteps >= self._next or (replayer.noticed and replayer.diverged is None):
            self._advance()
        return self.num_timesteps < self._stop_at

    def _on_training_end(self) -> None:
        self.replayer.end(self.num_timesteps)

    def _advance(self) -> None:
        replayer = self.replayer
        replayer.advance(self.num_timesteps)  # or diverge: then nothing is left to make
        following = replayer.next_key()
        self._next = sys.maxsize if following is None else following


class StartValuesCallback(BaseCallback):
    """Sets values when training starts, before the live callbacks after it apply them (what
    ``livetune fork --set`` does).

    :param registry: the registry the live callbacks register the knobs in.
    :param values: ``{name: value}`` (text is parsed with each variable's type).
    :param source: journaled as who set them.
    :param note: journaled first as an event named ``source`` (a fork: where it comes from).

    Example::

        >>> from stable_baselines3 import PPO
        >>> import livetune_rl as lt
        >>> from livetune_rl.sb3 import LiveTuneCallback
        >>> registry = lt.Registry()
        >>> model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1)
        >>> start = StartValuesCallback(registry, {"learning_rate": "1e-4"}, source="fork")
        >>> _ = model.learn(32, callback=[start, LiveTuneCallback(registry, serve=False)])
        >>> model.policy.optimizer.param_groups[0]["lr"], registry.variable("learning_rate").source
        (0.0001, 'fork')
    """

    def __init__(self, registry: Registry, values: Mapping[str, object], *, source: str,
                 note: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.registry, self.values, self.source = registry, dict(values), source
        self.note = dict(note) if note is not None else None

    def _on_training_start(self) -> None:
        if self.note is not None:
            self.registry.record_event(self.source, self.note, step=self.num_timesteps)
        if self.values:
            self.registry.set(self.values, source=self.source)

    def _on_step(self) -> bool:
        return True
