"""A schedule whose value a live knob can override, and that pickles like a plain one.

SB3 re-reads ``learning_rate``, ``clip_range`` and DQN's ``exploration_rate`` from schedules of
training progress (``model.lr_schedule(progress_remaining)`` at every ``train()``), so writing
an optimizer's ``param_groups`` directly is undone at the next update. Replacing the schedule
with a :class:`LiveSchedule` makes a live value stick: until a knob sets ``override``, it
returns the original schedule's value; afterwards, the override.

It holds no lock, thread or connection, and pickles down to SB3's own
``FloatSchedule(ConstantSchedule(value))`` once overridden (or to the original schedule before),
so ``model.save()`` works and a saved model loads without livetune_rl installed.

Example::

    >>> from stable_baselines3.common.utils import LinearSchedule
    >>> s = LiveSchedule(LinearSchedule(1.0, 0.0, 1.0))
    >>> s(0.5), s.override_with(0.1), s(0.5)
    (0.5, None, 0.1)
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule


class LiveSchedule:
    """Callable schedule: ``override`` if set, else ``base(progress_remaining)``."""

    def __init__(self, base: Any) -> None:
        while isinstance(base, LiveSchedule):
            base = base.base
        self.base = base if callable(base) else FloatSchedule(base)
        self.override: float | None = None

    def override_with(self, value: float) -> None:
        self.override = float(value)

    def __call__(self, progress_remaining: float) -> float:
        if self.override is not None:
            return self.override
        return float(self.base(progress_remaining))

    def __reduce__(self) -> tuple[Any, ...]:
        if self.override is not None:
            return (FloatSchedule, (ConstantSchedule(self.override),))
        return (FloatSchedule, (self.base,))

    def __repr__(self) -> str:
        return f"LiveSchedule(base={self.base!r}, override={self.override!r})"


def live_schedule(owner: Any, attribute: str) -> LiveSchedule:
    """Make ``owner.attribute`` a :class:`LiveSchedule` (idempotent) and return it."""
    current = getattr(owner, attribute)
    if not isinstance(current, LiveSchedule):
        current = LiveSchedule(current)
        setattr(owner, attribute, current)
    return current
