"""``TriggersCallback``: the ``checkpoint``, ``evaluate`` and ``stop`` triggers (and your own),
run within one env step of a fire, plus periodic checkpoints and evaluations.

* ``checkpoint``: model, replay buffer, VecNormalize and live values
  (:class:`~livetune_rl.sb3.checkpoint.Checkpointer`);
* ``evaluate``: a deterministic evaluation on the eval env
  (:class:`~livetune_rl.sb3.evaluation.Evaluator`), with the training episodes since the last
  one when an :class:`~livetune_rl.sb3.episodes.EpisodeTermsCallback` collects them;
* ``stop``: a ``final`` checkpoint, then ``learn()`` returns.

A trigger whose action raises is logged and journaled with the error; training goes on.

Example::

    triggers = TriggersCallback(registry, checkpointer=Checkpointer(registry, "runs/x"),
                                evaluator=Evaluator(registry, eval_env), eval_every=10_000)
    triggers.add_trigger("snapshot", lambda cb: {"timesteps": cb.num_timesteps})
    model.learn(100_000, callback=triggers)      # elsewhere: livetune fire snapshot
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ..evaluation import EVENT, EvaluateEvent
from ..registry import LiveTrigger, Registry, default_registry
from ..values import LiveTuneError
from .checkpoint import Checkpointer
from .episodes import EpisodeTermsCallback
from .evaluation import Evaluator

log = logging.getLogger(__name__)

TriggerAction = Callable[[Any], "Mapping[str, Any] | None"]
"""``action(owner)``: runs on the training thread; a returned mapping is journaled."""


class TriggersCallback(BaseCallback):
    """Registers the triggers and runs their actions at the next env step after a fire.

    Args:
        registry: where to register (default: the process-wide registry).
        checkpointer: writes the checkpoints (default: under the current directory).
        evaluator: runs the evaluations (default: none, each reports that no eval env was
            given).
        episodes: where the training episodes since the last evaluation come from.
        eval_every: also evaluate every this many env steps (0: only on the trigger).
        checkpoint_every: also checkpoint every this many env steps (0: only on the trigger);
            these are the periodic checkpoints the checkpointer prunes.
        owner: what a user trigger's action receives (default: this callback).
        verbose: passed to SB3.
    """

    def __init__(self, registry: Registry | None = None, *,
                 checkpointer: Checkpointer | None = None, evaluator: Evaluator | None = None,
                 episodes: EpisodeTermsCallback | None = None, eval_every: int = 0,
                 checkpoint_every: int = 0, owner: BaseCallback | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.registry = registry if registry is not None else default_registry()
        self.checkpointer = checkpointer or Checkpointer(self.registry, verbose=verbose)
        self.evaluator = evaluator or Evaluator(self.registry)
        self.episodes = episodes
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.owner: BaseCallback = owner if owner is not None else self
        self.triggers: dict[str, tuple[LiveTrigger, TriggerAction]] = {}
        self._user: list[tuple[str, TriggerAction, str]] = []
        self._seen = -1
        self._next_eval = 0
        self._next_checkpoint = 0
        self._stop = False
        self._attached_to: BaseAlgorithm | None = None

    def add_trigger(self, name: str, action: TriggerAction, help: str = "") -> TriggersCallback:
        """Add a trigger: ``action(owner)`` runs within one env step of a fire; a returned
        mapping is journaled and streamed as an event named after the trigger."""
        self._user.append((name, action, help))
        return self

    def attach(self, model: BaseAlgorithm) -> None:
        """Register the triggers now (``learn()`` does it too)."""
        if self._attached_to is model:
            return
        self.detach()
        self.model = model
        builtin: list[tuple[str, TriggerAction, str]] = [
            ("checkpoint", lambda _: self._fired_checkpoint(),
             "save model, replay buffer, VecNormalize and live values"),
            (EVENT, lambda _: self.evaluate().to_data(), "evaluate the policy on the eval env now"),
            ("stop", lambda _: self._request_stop(), "final checkpoint, then end learn()"),
        ]
        for name, action, text in [*builtin, *self._user]:
            self.triggers[name] = (LiveTrigger(name, text, registry=self.registry), action)
        self._seen = -1
        self._attached_to = model

    def detach(self) -> None:
        """Unregister the triggers."""
        for trigger, _ in self.triggers.values():
            if trigger.name in self.registry:
                self.registry.remove(trigger.name)
        self.triggers = {}
        self._attached_to = None

    @property
    def stopped(self) -> bool:
        """True once the ``stop`` trigger ended ``learn()``."""
        return self._stop

    def _init_callback(self) -> None:
        self.attach(self.model)
        self._seen = -1

    def _on_training_start(self) -> None:
        self._stop = False
        self._next_eval = self.num_timesteps + self.eval_every
        self._next_checkpoint = self.num_timesteps + self.checkpoint_every

    def _on_step(self) -> bool:
        version = self.registry.version
        if version != self._seen:
            self._seen = version  # first: a fire racing with us is seen next step
            for trigger, action in self.triggers.values():
                if trigger.fired(step=self.num_timesteps):
                    self._run(trigger.name, action)
        if self.eval_every and self.num_timesteps >= self._next_eval:
            self._next_eval = self.num_timesteps + self.eval_every
            self.evaluate()
        if self.checkpoint_every and self.num_timesteps >= self._next_checkpoint:
            self._next_checkpoint = self.num_timesteps + self.checkpoint_every
            try:
                self.checkpoint(periodic=True)
            except (OSError, LiveTuneError) as exc:  # a failing checkpoint must not end training
                log.error("livetune: periodic checkpoint failed: %s", exc)
                self.registry.record_event("checkpoint", {"error": str(exc)},
                                           step=self.num_timesteps)
        return not self._stop

    def _run(self, name: str, action: TriggerAction) -> None:
        try:
            result = action(self.owner)
        except Exception as exc:  # a failing trigger must not end training
            log.exception("livetune: trigger %s failed", name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        if result is not None and name not in ("checkpoint", EVENT):  # those journal their own
            self.registry.record_event(name, dict(result), step=self.num_timesteps)

    # ----------------------------------------------------------------- the actions
    def checkpoint(self, tag: str | None = None, *, periodic: bool = False) -> Path:
        """Write a checkpoint now (see :class:`~livetune_rl.sb3.checkpoint.Checkpointer`)."""
        return self.checkpointer.save(self.model, tag, periodic=periodic)

    def evaluate(self) -> EvaluateEvent:
        """Evaluate now; the event carries the training episodes since the last evaluation."""
        episodes = self.episodes
        if self.evaluator.eval_env is None or episodes is None:
            return self.evaluator.run(self.model, step=self.num_timesteps)
        return self.evaluator.run(self.model, step=self.num_timesteps,
                                  train_episodes=episodes.drain(),
                                  train_keys=episodes.info_keys)

    def _fired_checkpoint(self) -> None:
        self.checkpoint()

    def _request_stop(self) -> dict[str, Any]:
        path = self.checkpoint(tag="final")
        self._stop = True
        return {"checkpoint": str(path)}
