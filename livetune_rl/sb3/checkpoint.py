"""Checkpoints of a live SB3 run: save (model, replay buffer, VecNormalize, live values),
prune the periodic ones, load.

A checkpoint is a private directory (0700, files 0600) ``<run_dir>/checkpoints/<tag>/``
holding ``model.zip``, ``replay_buffer.pkl`` (off-policy), ``vecnormalize.pkl`` (when the env
stack has a ``VecNormalize``) and ``live_values.json`` (algorithm, step, registry version, the
live values in effect, and whether it was periodic).

Example::

    saver = Checkpointer(registry, run_dir="runs/ppo", keep=5)
    path = saver.save(model, tag="before-change")     # journals a `checkpoint` event
    model, values = load_checkpoint(path, env=venv)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from ..private import check_trusted, chmod_private_file, ensure_private_dir, write_private
from ..registry import Registry
from ..values import Value

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("model.zip", "replay_buffer.pkl", "vecnormalize.pkl", "live_values.json")
"""Every file a checkpoint may write (pruning deletes only these)."""


class Checkpointer:
    """Writes checkpoints of one run and journals each as a ``checkpoint`` event.

    Args:
        registry: whose live values are saved and where the event is journaled.
        run_dir: checkpoints go to ``run_dir/checkpoints/<tag>/`` (tag: ``step_<n>``).
        keep: keep the newest this many periodic checkpoints (0: all).
        verbose: 1 prints where each checkpoint went.
    """

    def __init__(self, registry: Registry, run_dir: str | Path | None = None, *,
                 keep: int = 5, verbose: int = 0) -> None:
        self.registry = registry
        self.run_dir = Path(run_dir) if run_dir is not None else Path(".")
        self.keep = keep
        self.verbose = verbose
        self.last: Path | None = None

    def save(self, model: BaseAlgorithm, tag: str | None = None, *,
             periodic: bool = False) -> Path:
        """Save ``model`` (with its replay buffer and VecNormalize statistics) and the live
        values; journal it; returns the directory.

        ``periodic`` checkpoints are marked so in ``live_values.json`` and only the newest
        ``keep`` of them are kept; a directory that already holds a checkpoint made on request
        stays one made on request.
        """
        step = model.num_timesteps
        root = ensure_private_dir(self.run_dir / "checkpoints")
        directory = ensure_private_dir(root / (tag or f"step_{step}"))
        periodic = periodic and _checkpoint_meta(directory).get("periodic", True) is True
        files = [directory / "model.zip"]
        model.save(files[0])
        if getattr(model, "replay_buffer", None) is not None:
            files.append(directory / "replay_buffer.pkl")
            model.save_replay_buffer(files[-1])  # type: ignore[attr-defined]
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            files.append(directory / "vecnormalize.pkl")
            vec_normalize.save(str(files[-1]))
        for path in files:
            chmod_private_file(path)
        files.append(directory / "live_values.json")
        write_private(files[-1], json.dumps({
            "algorithm": type(model).__name__,
            "num_timesteps": step,
            "version": self.registry.version,
            "values": self.registry.values(),
            "periodic": periodic,
        }, indent=2, sort_keys=True))
        self.last = directory
        data: dict[str, Any] = {"path": str(directory), "files": [f.name for f in files]}
        if periodic and self.keep > 0:
            removed = prune_checkpoints(root, self.keep)
            if removed:
                data["removed"] = [str(p) for p in removed]
        self.registry.record_event("checkpoint", data, step=step)
        if self.verbose:
            print(f"livetune: checkpoint written to {directory}")
        return directory


def _checkpoint_meta(directory: Path) -> dict[str, Any]:
    """``live_values.json`` of a checkpoint directory ({} if absent or unreadable)."""
    try:
        meta = json.loads((directory / "live_values.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def prune_checkpoints(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` periodic checkpoints under ``root``; returns what
    was removed.

    Only directories (not links) whose ``live_values.json`` says ``"periodic": true`` count;
    of each, only the files a checkpoint writes are deleted, and the directory is removed
    only if that left it empty (anything else found there is kept and logged).

    :param root: a run's ``checkpoints`` directory.
    :param keep: how many periodic checkpoints to keep (at least 1).
    """
    root = Path(root)
    periodic = []
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            meta = _checkpoint_meta(Path(entry.path))
            if meta.get("periodic") is True:
                periodic.append((int(meta.get("num_timesteps", 0)), Path(entry.path)))
    periodic.sort()
    removed = []
    for _, directory in periodic[:max(0, len(periodic) - max(1, keep))]:
        for name in CHECKPOINT_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        try:
            directory.rmdir()
        except OSError:
            log.warning("livetune: kept %s: it holds files a checkpoint does not write",
                        directory)
        removed.append(directory)
    return removed


def load_checkpoint(directory: str | Path, env: Any = None, **kwargs: Any) -> tuple[
        BaseAlgorithm, dict[str, Value]]:
    """Load a checkpoint written by the ``checkpoint`` trigger: the model (with its replay
    buffer when one was saved) and the live values in effect. Pass ``env`` to continue
    training; wrap it in ``VecNormalize.load(directory/'vecnormalize.pkl', env)`` first when
    that file exists.

    Loading runs code from the files (SB3 unpickles them with cloudpickle), so they, their
    directory and the directory above must be the user's and not writable by anyone else;
    :class:`~livetune_rl.private.UnsafePathError` otherwise.

    :param directory: a checkpoint directory (``runs/<name>/checkpoints/<tag>``).
    :param env: the env to continue training in (optional).
    :param kwargs: passed to the algorithm's ``load`` (``device=``...).
    """
    import stable_baselines3 as sb3

    directory = Path(directory)
    check_trusted(directory.parent, "a checkpoint")
    check_trusted(directory, "a checkpoint")
    for name in CHECKPOINT_FILES:
        if (directory / name).exists():
            check_trusted(directory / name, "a checkpoint")
    meta = json.loads((directory / "live_values.json").read_text())
    algo = getattr(sb3, meta["algorithm"], None)
    if algo is None:
        raise ValueError(f"unknown algorithm {meta['algorithm']!r} in {directory}: expected "
                         "one of stable_baselines3's (PPO, A2C, DQN, SAC, TD3)")
    model = algo.load(directory / "model.zip", env=env, **kwargs)
    if (directory / "replay_buffer.pkl").exists() and hasattr(model, "load_replay_buffer"):
        model.load_replay_buffer(directory / "replay_buffer.pkl")
    return model, dict(meta["values"])
