"""Where a run comes from: the ``lineage`` its ``config.json`` holds.

``livetune replay`` writes ``{"replay_of": RUN_DIR, "until": STEP}``; ``livetune fork`` writes
``{"fork_of": RUN_DIR, "checkpoint": PATH, "step": N, "values": {...}}``; the replay of a fork
has both (its parent then is the parent's replay). A run started by ``livetune train`` or
``train-vision`` has none. ``livetune runs`` shows it in its ``LINEAGE`` column, and a fork's
journal starts with a ``fork`` event that ``livetune history`` shows.

Pure Python, no I/O but the one read of :meth:`Lineage.of_run`, so ``livetune runs`` stays
fast.

Example::

    >>> Lineage.from_data({"replay_of": "/tmp/runs/ht", "until": None}).describe()
    'replay of ht'
    >>> fork = {"fork_of": "/tmp/runs/ht", "checkpoint": "/tmp/runs/ht/checkpoints/final",
    ...         "step": 12288, "values": {"learning_rate": "1e-4"}}
    >>> Lineage.from_data(fork).describe()
    'fork of ht at step 12288 (learning_rate=1e-4)'
    >>> Lineage.from_data({}) is None
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ForkLineage:
    """Where a fork (``livetune fork``) comes from, as its ``config.json`` holds it under
    ``lineage``.

    :param fork_of: the parent's run directory.
    :param checkpoint: the parent's checkpoint the fork started from.
    :param step: that checkpoint's ``num_timesteps``.
    :param values: the values the fork was started with (``--set``).
    """

    fork_of: str
    checkpoint: str
    step: int
    values: Mapping[str, str] = field(default_factory=dict)

    @property
    def parent_until(self) -> int | None:
        """How far the parent's changes made the fork's start: a checkpoint taken while the
        parent trained (``step_N``, a fired one) was written at the env step ``N``, before
        that step's rollout end, so up to ``N``; its ``final`` one after the last update, so
        all of them (None)."""
        return None if Path(self.checkpoint).name == "final" else self.step

    @classmethod
    def from_data(cls, data: Any) -> ForkLineage | None:
        """The lineage ``config.json`` holds (None: not a fork)."""
        if not isinstance(data, dict) or "fork_of" not in data:
            return None
        return cls(str(data["fork_of"]), str(data["checkpoint"]), int(data["step"]),
                   dict(data.get("values") or {}))


@dataclass(frozen=True)
class Lineage:
    """A run's ``lineage``: the run it replays, the run it was forked from, or both.

    :param replay_of: the run directory this run replays (None: not a replay).
    :param until: the step the replay was cut at (None: the whole run).
    :param fork: where it was forked from (None: not a fork).
    """

    replay_of: str | None = None
    until: int | None = None
    fork: ForkLineage | None = None

    @classmethod
    def from_data(cls, data: Any) -> Lineage | None:
        """The lineage of a ``config.json``'s ``"lineage"`` value (None: none there)."""
        if not isinstance(data, dict):
            return None
        replay_of = data.get("replay_of")
        until = data.get("until")
        fork = ForkLineage.from_data(data)
        if replay_of is None and fork is None:
            return None
        return cls(None if replay_of is None else str(replay_of),
                   until if isinstance(until, int) else None, fork)

    @classmethod
    def of_run(cls, run_dir: str | os.PathLike[str]) -> Lineage | None:
        """The lineage in ``run_dir/config.json`` (None: none, or no readable config)."""
        try:
            data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls.from_data(data.get("lineage")) if isinstance(data, dict) else None

    def to_data(self) -> dict[str, Any]:
        """As ``config.json`` holds it."""
        data: dict[str, Any] = {}
        if self.replay_of is not None:
            data.update(replay_of=self.replay_of, until=self.until)
        if self.fork is not None:
            fork = self.fork
            data.update(fork_of=fork.fork_of, checkpoint=fork.checkpoint, step=fork.step,
                        values=dict(fork.values))
        return data

    def describe(self) -> str:
        """One line: ``replay of NAME [until STEP]``, ``fork of NAME at step N (values)``."""
        parts = []
        if self.replay_of is not None:
            parts.append(f"replay of {Path(self.replay_of).name}"
                         + ("" if self.until is None else f" until {self.until}"))
        if self.fork is not None:
            values = ", ".join(f"{k}={v}" for k, v in self.fork.values.items())
            parts.append(f"fork of {Path(self.fork.fork_of).name} at step {self.fork.step}"
                         + (f" ({values})" if values else ""))
        return "; ".join(parts)
