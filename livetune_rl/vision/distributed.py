"""DDP: every rank applies each live change at the same iteration.

Rank 0 hosts the registry (and serves it); the other ranks hold none. Every ``every``
iterations, at the step boundary, :meth:`ControlSync.poll` runs one tiny collective: rank 0
broadcasts its control key (the highest version of any knob or trigger) as one int64. When the
key changed since the last broadcast, rank 0 also broadcasts its :class:`~.live.ControlSnapshot`
(``broadcast_object_list``), and every rank returns that same snapshot, which the loop applies
before its next step. No rank can run ahead with an old value: a rank cannot pass the
broadcast of the boundary before rank 0 reaches it, and all ranks get the same snapshot.

Without ``torch.distributed`` (one process) ``poll`` is one int comparison per call.

Example::

    >>> from livetune_rl import Registry
    >>> sync = ControlSync(control=None, every=1)
    >>> sync.world_size, sync.rank
    (1, 0)

Launch a job with ``torchrun --nproc-per-node 2 -m livetune_rl.vision.cli train-vision ...``;
:func:`init_distributed` reads torchrun's environment (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import torch
import torch.distributed as dist

from .live import ControlSnapshot, LiveControl


def init_distributed(backend: str | None = None, timeout_s: float = 600) -> tuple[int, int]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns (rank, world).

    Backend: ``nccl`` when CUDA is available, else ``gloo``, unless ``backend`` says otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ControlSync:
    """Hands every rank the same control snapshot at the same iteration.

    Args:
        control: this rank's :class:`LiveControl` (rank 0's holds the registry).
        every: synchronise at iterations that are multiples of this (1: every iteration).
        device: where the one-int tensor lives (CUDA for NCCL).
    """

    def __init__(self, control: LiveControl | None, every: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.control = control
        self.every = max(1, int(every))
        self.distributed = is_distributed()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.device = torch.device(device)
        self._last_key = 0
        self._buffer = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.syncs = 0

    def poll(self, step: int, *, force: bool = False) -> ControlSnapshot | None:
        """At a boundary (``step % every == 0`` or ``force``): the snapshot to apply, if any.

        Every rank must call it with the same ``step`` sequence (it is a collective in DDP).
        """
        if not force and step % self.every:
            return None
        control = self.control
        if not self.distributed:
            assert control is not None
            key = control.key()
            if key == self._last_key:
                return None
            self._last_key = key
            return control.snapshot()
        self.syncs += 1
        if self.rank == 0:
            assert control is not None
            self._buffer.fill_(control.key())
        dist.broadcast(self._buffer, src=0)
        key = int(self._buffer.item())
        if key == self._last_key:
            return None
        self._last_key = key
        box: list[Any] = [control.snapshot() if self.rank == 0 and control is not None else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over ranks (evaluation counts); identity in one process."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.distributed:
            dist.barrier()
