"""``VisionReplay``: make a journal's changes again in a ``train-vision`` loop, where the
original made them (and ``StartValues``, the values a fork starts with).

A ``train-vision`` run journals each change it applied with its safe point: the global
iteration as ``step``, and the ``epoch`` and ``iteration`` within it. :class:`VisionReplay`
is a :class:`~livetune_rl.vision.train.TrainerCallback` that, at every safe point, sets (or
fires) through the registry each change of its :class:`~livetune_rl.replay.ReplayPlan` that
the original applied at that point, before the loop reads its live values; the loop then
applies it with the same code, at the same epoch and iteration. ``livetune replay`` uses it
for ``train-vision`` run directories (docs/replay.md says what is and is not bit for bit).

Example::

    >>> import tempfile
    >>> from livetune_rl import Registry
    >>> from livetune_rl.replay import Change, ReplayPlan
    >>> from livetune_rl.vision.config import VisionConfig
    >>> from livetune_rl.vision.train import train
    >>> plan = ReplayPlan((Change(3, "learning_rate", "set", 0.01, 9, epoch=0, iteration=3),
    ...                    Change(4, "lr_drop", "fire", None, 12, epoch=1, iteration=0)))
    >>> registry = Registry()
    >>> replay = VisionReplay(registry, plan)
    >>> result = train(VisionConfig(dataset="fake", arch="vgg11", width=0.0625, epochs=2,
    ...                             train_size=64, val_size=16, batch_size=16, serve=False,
    ...                             progress=False, tensorboard=False,
    ...                             checkpoint_each_epoch=False, runs_root=tempfile.mkdtemp()),
    ...                registry=registry, callbacks=[replay])
    >>> replay.replayer.replayed, replay.replayer.late, result.values["learning_rate"]
    (2, [], 0.001)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from ..registry import Registry
from ..replay import Replayer, ReplayPlan
from .train import Trainer, TrainerCallback


class VisionReplay(TrainerCallback):
    """Re-applies a :class:`~livetune_rl.replay.ReplayPlan` at the safe points it names
    (a :class:`~livetune_rl.replay.Replayer` called at each of them).

    Replay with the original's settings: a change lands at the first safe point at or after
    its own, so another batch size or ``--sync-every`` makes it late (counted in
    ``replayer.late``, never lost).

    :param registry: the registry the trainer registers its knobs in (rank 0's).
    :param plan: the changes to make.
    :param until: journaled as how far the replay goes (the trainer's ``max_steps`` ends it).
    :param verbose: 1 prints each change as it is made again.
    """

    def __init__(self, registry: Registry, plan: ReplayPlan, *, until: int | None = None,
                 verbose: int = 0) -> None:
        self.until = until
        # a safe point is (step, epoch): see Change.position
        self.replayer = Replayer(registry, plan, key=operator.attrgetter("position"),
                                 say=print if verbose else None)
        """does the work; its counts are this replay's"""

    def on_train_start(self, trainer: Trainer) -> None:
        self.replayer.start(trainer.pos.step, until=self.until)

    def on_safe_point(self, trainer: Trainer) -> None:
        replayer, pos = self.replayer, trainer.pos
        if not replayer.done or (replayer.noticed and replayer.diverged is None):
            replayer.advance((pos.step, pos.epoch), step=pos.step)

    def on_train_end(self, trainer: Trainer) -> None:
        self.replayer.end(trainer.pos.step)


class StartValues(TrainerCallback):
    """Sets values when training starts; the loop applies them at its first safe point (what
    ``livetune fork --set`` does for a ``train-vision`` run).

    :param registry: the registry the trainer registers its knobs in.
    :param values: ``{name: value}`` (text is parsed with each variable's type).
    :param source: journaled as who set them.
    :param note: journaled first as an event named ``source`` (a fork: where it comes from).
    """

    def __init__(self, registry: Registry, values: Mapping[str, object], *, source: str,
                 note: Mapping[str, Any] | None = None) -> None:
        self.registry, self.values, self.source = registry, dict(values), source
        self.note = dict(note) if note is not None else None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.note is not None:
            self.registry.record_event(self.source, self.note, step=trainer.pos.step)
        if self.values:
            self.registry.set(self.values, source=self.source)
