"""``KnobsCallback``: the running algorithm's hyperparameters (and knobs of your own) live.

It registers a deferred live variable for every knob the algorithm has (see
:mod:`livetune_rl.sb3.algorithm_knobs`) and applies a set at the safe point SB3 does not undo:
at the end of each rollout, right before ``train()`` (on-policy: once per rollout; off-policy:
before every training phase), or at the next env step for the knobs SB3 recomputes every step
(DQN's ``exploration_rate``). Each applied change is recorded as ``live/<name>`` in SB3's
logger and as an ``applied`` journal record carrying ``num_timesteps``.

Example::

    knobs = KnobsCallback(registry, only=["learning_rate", "clip_range"])
    knobs.add_knob("my.temperature", 1.0, set_temperature, min=0.0, every_step=True)
    model.learn(100_000, callback=knobs)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ..journal import ChangeEvent
from ..knobs import Knobs
from ..registry import Registry, default_registry
from ..values import Check, InvalidValueError, Value
from .algorithm_knobs import knobs_for

STEP = "step"
"""Cadence of knobs applied at the next env step."""
ROLLOUT = "rollout"
"""Cadence of knobs applied at the end of a rollout, before ``train()``."""


def log_applied(callback: BaseCallback, events: Sequence[ChangeEvent]) -> None:
    """Record applied changes as ``live/<name>`` in SB3's logger (and print them if verbose).

    :param callback: the callback that applied them (its model's logger is used).
    :param events: the ``applied`` records.
    """
    for event in events:
        if isinstance(event.new, (int, float)):
            callback.logger.record(f"live/{event.name}", event.new)
        if callback.verbose:
            print(f"livetune: applied {event.name}={event.new} at step {event.step}")


class KnobsCallback(BaseCallback):
    """Registers the algorithm's knobs (and :meth:`add_knob` ones) and applies their sets.

    Args:
        registry: where to register (default: the process-wide registry).
        only: only these algorithm knobs (default: every knob the algorithm has).
        verbose: 1 prints every applied change.
    """

    def __init__(self, registry: Registry | None = None, *, only: Sequence[str] | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.registry = registry if registry is not None else default_registry()
        self.only = set(only) if only is not None else None
        self.knobs = Knobs(self.registry)
        self._user: list[tuple[str, Value, Callable[[Any], Any], dict[str, Any]]] = []
        self._attached_to: BaseAlgorithm | None = None
        self._step_knobs = False

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
    ) -> KnobsCallback:
        """Add a knob of your own: ``apply(value)`` runs on the main thread at the rollout end
        (or at the next step with ``every_step=True``). Returns self, for chaining."""
        self._user.append((name, default, apply, {
            "min": min, "max": max, "choices": choices, "help": help, "check": check,
            "cadence": STEP if every_step else ROLLOUT}))
        return self

    def attach(self, model: BaseAlgorithm) -> None:
        """Register the knobs of ``model`` now (``learn()`` does it too); attaching another
        model first unregisters those of the previous one."""
        if self._attached_to is model:
            return
        self.detach()
        self.model = model
        for knob in knobs_for(model):
            if self.only is not None and knob.name not in self.only:
                continue
            value = knob.get(model)
            try:
                self.knobs.add(knob.name, value, self._on_model(knob.apply),
                               min=knob.min, max=knob.max, help=knob.help,
                               check=knob.check(model),
                               cadence=STEP if knob.every_step else ROLLOUT)
            except InvalidValueError as exc:  # the model runs with a value the knob refuses
                warnings.warn(f"livetune: {knob.name} is not live for this run: the value in "
                              f"effect, {value!r}, breaks the knob's rule ({exc}); training goes "
                              "on with it unchanged", stacklevel=2)
        for name, default, apply, options in self._user:
            self.knobs.add(name, default, apply, **options)
        self._step_knobs = bool(self.knobs.names(STEP))
        self._attached_to = model

    def detach(self) -> None:
        """Unregister every knob (learn() called with another model, or the end of use)."""
        self.knobs.close()
        self._step_knobs = False
        self._attached_to = None

    def _on_model(self, apply: Callable[[BaseAlgorithm, Any], None]) -> Callable[[Any], None]:
        return lambda value: apply(self.model, value)

    def _init_callback(self) -> None:
        self.attach(self.model)

    def _on_step(self) -> bool:
        if self._step_knobs:
            events = self.knobs.apply_pending(self.num_timesteps, cadence=STEP)
            if events:
                log_applied(self, events)
        return True

    def _on_rollout_end(self) -> None:
        log_applied(self, self.knobs.apply_pending(self.num_timesteps, cadence=ROLLOUT))
        for name in self.knobs.names(ROLLOUT):
            value = self.knobs[name].value
            if isinstance(value, (int, float)):
                self.logger.record(f"live/{name}", value)
