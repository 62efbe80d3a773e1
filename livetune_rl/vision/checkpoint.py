"""Checkpoints of a vision run: model, optimizer (momentum buffers included), scheduler,
position (epoch, iteration, samples seen), live values and the registry version.

Files are written atomically (temporary file, then rename) under ``<run_dir>/checkpoints/``
(0700 directory, 0600 files); ``last.pt`` (a symbolic link) always names the newest one, so
``--resume <run_dir>/checkpoints/last.pt`` works. Loading a checkpoint runs code from it
(``torch.load`` unpickles), so :func:`load_checkpoint` refuses one that is not the user's or
that others could have written.

Example::

    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> path = save_checkpoint("/tmp/ckpt-doc", "e0", model=model, optimizer=opt,
    ...                        position={"epoch": 0, "iteration": 0, "step": 0})
    >>> load_checkpoint(path)["position"]["epoch"]
    0
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..private import check_trusted, ensure_private_dir, open_private

FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def save_checkpoint(
    directory: str | os.PathLike[str],
    tag: str,
    *,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any = None,
    position: dict[str, int],
    live: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<directory>/<tag>.pt`` atomically and point ``last.pt`` at it; returns its path."""
    directory = ensure_private_dir(directory)
    state = {
        "format": FORMAT,
        "time": time.time(),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "position": dict(position),
        "live": live or {},
        "extra": extra or {},
    }
    path = directory / f"{tag}.pt"
    tmp = directory / f".{tag}.pt.tmp"
    tmp.unlink(missing_ok=True)  # a leftover of a killed save (the directory is private)
    with os.fdopen(open_private(tmp), "wb") as out:
        torch.save(state, out)
    os.replace(tmp, path)
    last_tmp = directory / ".last.pt.tmp"
    last_tmp.unlink(missing_ok=True)
    try:
        os.symlink(path.name, last_tmp)  # relative link: the run directory can move
    except OSError:
        shutil.copyfile(path, last_tmp)
    os.replace(last_tmp, directory / "last.pt")
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU); it must be the
    user's and not writable by others (:class:`~livetune_rl.private.UnsafePathError`)."""
    check_trusted(path, "a checkpoint")
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a livetune vision checkpoint")
    return state


def restore_training_state(state: dict[str, Any], *, model: nn.Module, optimizer: Any,
                           scheduler: Any = None) -> None:
    """Load model, optimizer (with its momentum buffers) and scheduler from ``state``."""
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
