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
from ..registry import Registry, Subscription
from ..replay import REPLAY_EVENT, Change, ReplayPlan, replay_source, replayed_version

_NEVER = sys.maxsize


class ReplayCallback(BaseCallback):
    """Re-applies a :class:`~livetune_rl.replay.ReplayPlan` at the steps it names.

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
        self.replayed = 0
        """changes made again so far"""
        self.late: list[Change] = []
        """changes made after their step (the replay's steps do not meet the original's)"""
        self.unchanged: list[Change] = []
        """sets of the value the variable already held here (the start values differ)"""
        self.diverged: ChangeEvent | None = None
        """the first set or fire from outside the replay (None: none yet)"""
        self.diverged_at: int | None = None
        """the step at which the replay noticed it and stopped making the plan's changes"""
        self._index = 0
        self._next_step = plan.changes[0].step if plan.changes else _NEVER
        self._stop_at = _NEVER if until is None else until
        self._outside: list[ChangeEvent] = []
        self._subscription: Subscription | None = None

    # ----------------------------------------------------------------- SB3 hooks
    def _on_training_start(self) -> None:
        self.plan.check(self.registry)  # every callback is initialised (knobs registered)
        self._subscription = self.registry.subscribe(self._notice)
        self.registry.record_event(REPLAY_EVENT, {
            "of": self.plan.source, "changes": len(self.plan.changes), "until": self.until},
            step=self.num_timesteps)
        self._make_due()  # changes applied when the original started (step 0)

    def _on_step(self) -> bool:
        if self._outside and self.diverged is None:
            self._diverge(self._outside[0])
        if self.num_timesteps >= self._next_step:
            self._make_due()
        return self.num_timesteps < self._stop_at

    def _on_training_end(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self.registry.record_event(REPLAY_EVENT, {
            "replayed": self.replayed, "of": len(self.plan.changes),
            "late": [c.version for c in self.late],
            "unchanged": [c.version for c in self.unchanged],
            "diverged_at": self.diverged_at}, step=self.num_timesteps)

    # ----------------------------------------------------------------- the changes
    def _make_due(self) -> None:
        changes = self.plan.changes
        step = self.registry.step = self.num_timesteps  # journaled with the step they arrive
        while self._index < len(changes) and changes[self._index].step <= step:
            change = changes[self._index]
            self._index += 1
            self._make(change, step)
        self._next_step = changes[self._index].step if self._index < len(changes) else _NEVER

    def _make(self, change: Change, step: int) -> None:
        source = replay_source(change.version)
        if change.kind == "fire":
            self.registry.fire(change.name, source=source)
        else:
            (event,) = self.registry.set({change.name: change.value}, source=source)
            if event.unchanged:
                self.unchanged.append(change)
        self.replayed += 1
        if change.step < step:
            self.late.append(change)
        if self.verbose:
            print(f"livetune: replay: step {step}: {change.kind} {change.name}"
                  + ("" if change.kind == "fire" else f" = {change.value!r}")
                  + f" (original v{change.version}, step {change.step})")

    def _notice(self, event: ChangeEvent) -> None:
        """Subscriber (on the writer's thread, quick): remember changes made by others."""
        if event.kind in ("set", "fire") and replayed_version(event.source) is None:
            self._outside.append(event)

    def _diverge(self, event: ChangeEvent) -> None:
        self.diverged, self.diverged_at = event, self.num_timesteps
        self._next_step = _NEVER  # a new branch: the original's later changes are not made
        self.registry.record_event(REPLAY_EVENT, {
            "diverged": True, "by": event.source, "name": event.name, "version": event.v,
            "replayed": self.replayed, "left": len(self.plan.changes) - self._index},
            step=self.num_timesteps)
        if self.verbose:
            print(f"livetune: replay: diverged at step {self.num_timesteps}: {event.kind} "
                  f"{event.name} by {event.source}; the original's later changes are not made")


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
