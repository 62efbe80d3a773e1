"""``livetune train-vision``: a torchvision VGG classifier with its knobs live, ready to tune.

One call builds the data, the model, the optimizer and the LR schedule, registers the live
knobs and triggers (:mod:`.live`), serves them over gRPC (rank 0; journal in the run directory)
and trains with a progress bar, TensorBoard logs, per-epoch evaluation and checkpoints under
``<runs_root>/<run_name>/``. Under ``torchrun`` it trains with DDP and keeps every rank's knobs
in step (:mod:`.distributed`).

The training thread never locks: at the top of every iteration (the safe point, before the
next batch is fetched) it asks :class:`~.distributed.ControlSync` for a snapshot, which is one
int comparison when nothing changed, and applies it. Every applied change is journaled with
``step`` = global iteration and ``{"epoch", "iteration"}``.

Example::

    >>> from livetune_rl.vision.train import VisionConfig, train
    >>> result = train(VisionConfig(dataset="fake", arch="vgg11", width=0.125,  # doctest: +SKIP
    ...                             epochs=1, runs_root="/tmp/runs", serve=False))
    >>> result.global_step                                                       # doctest: +SKIP
    16
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..evaluation import EVENT, EvaluateEvent
from ..journal import read_journal_tail
from ..options import Serving
from ..private import ensure_private_dir, new_private_dir, write_private
from ..registry import Registry
from ..server import serve
from ..values import LiveTuneError, Value
from .checkpoint import load_checkpoint, restore_training_state, save_checkpoint, unwrap
from .config import OPTIMIZERS, VisionConfig
from .data import build_datasets
from .distributed import ControlSync, init_distributed
from .live import Actions, KnobTargets, LiveControl
from .models import build_vgg
from .sampler import LiveBatchSampler
from .schedule import LRSchedule

Phase = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports; also written to ``<run_dir>/result.json``."""

    run_dir: str
    epoch: int
    iteration: int
    global_step: int
    epochs_completed: float
    samples_seen: int
    elapsed_s: float
    stopped: str
    evaluation: dict[str, float] | None
    checkpoint: str | None
    address: str | None
    values: dict[str, Value]


class _Position:
    def __init__(self, epoch: int = 0, iteration: int = 0, step: int = 0, samples: int = 0,
                 total_samples: int = 0) -> None:
        self.epoch, self.iteration, self.step = epoch, iteration, step
        self.samples, self.total_samples = samples, total_samples  # this rank's shard

    def as_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "iteration": self.iteration, "step": self.step,
                "samples": self.samples, "total_samples": self.total_samples}


def _device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def make_optimizer(model: nn.Module, config: VisionConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over all parameters, from ``config``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate,
                               momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                 betas=(config.momentum, 0.999),
                                 weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {OPTIMIZERS}")


def evaluate(model: nn.Module, dataset: Any, *, batch_size: int, device: torch.device,
             sync: ControlSync, workers: int = 0) -> dict[str, float]:
    """Loss and top-1/top-5 accuracy on ``dataset``; in DDP each rank takes a strided share
    and the sums are reduced, so every rank returns the same numbers."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    share = Subset(dataset, range(sync.rank, len(dataset), sync.world_size))
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=workers)
    loss_sum = correct1 = correct5 = count = 0.0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = net(images)
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += float((top[:, 0] == labels).sum())
            correct5 += float((top == labels[:, None]).any(dim=1).sum())
            count += len(labels)
    net.train(was_training)
    loss_sum, correct1, correct5, count = sync.all_reduce_sum([loss_sum, correct1, correct5,
                                                               count])
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "acc1": correct1 / count, "acc5": correct5 / count,
            "samples": count}


class _IterationLog:
    """Per-rank JSONL of what each optimizer step used (for checks across ranks)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[str] = []

    def add(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            self.rows.append(json.dumps(row))
            if len(self.rows) >= 100:
                self.flush()

    def flush(self) -> None:
        if self.path is not None and self.rows:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("\n".join(self.rows) + "\n")
            self.rows.clear()


def saved_config(config: VisionConfig) -> dict[str, Any]:
    """The settings as written to ``config.json`` and checkpoints: whether a token is
    required, never the token."""
    data = asdict(config)
    token = data.pop("token")
    data["token_required"] = bool(token if token is not None
                                  else os.environ.get("LIVETUNE_TOKEN"))
    return data


def _make_run_dir(run_dir: Path, config: VisionConfig,
                  lineage: Mapping[str, Any] | None = None) -> None:
    """A new private run directory (an existing one is refused unless resuming) and its
    ``config.json`` (0600, never through a link; ``lineage`` under ``"lineage"``)."""
    if config.resume and run_dir.exists():
        ensure_private_dir(run_dir)
        try:
            before = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            before = {}
        token = config.token if config.token is not None else os.environ.get("LIVETUNE_TOKEN")
        if isinstance(before, dict) and (before.get("token_required") or before.get("token")) \
                and not token:
            raise LiveTuneError(
                f"the run {run_dir.name!r} required a token; resuming it keeps that: give it "
                "with --token-file FILE or $LIVETUNE_TOKEN")
    else:
        try:
            new_private_dir(run_dir)
        except FileExistsError:
            raise LiveTuneError(
                f"the run directory {run_dir} already exists; livetune never writes into a "
                "run it did not start: pick another --run-name, or continue that run with "
                f"--resume {run_dir}/checkpoints/last.pt") from None
    data = saved_config(config)
    if lineage is not None:
        data["lineage"] = dict(lineage)
    write_private(run_dir / "config.json", json.dumps(data, indent=2))


def _run_name(config: VisionConfig) -> str:
    return config.run_name or f"{config.arch}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


class TrainerCallback:
    """A hook into a :class:`Trainer`'s loop, in the manner of SB3's ``BaseCallback``:
    override the methods you need (each does nothing here) and pass instances as
    ``Trainer(config, callbacks=[...])``, called in their order.

    Example::

        >>> class Count(TrainerCallback):
        ...     def __init__(self) -> None:
        ...         self.safe_points = 0
        ...     def on_safe_point(self, trainer: Trainer) -> None:
        ...         self.safe_points += 1
        >>> import tempfile
        >>> count = Count()
        >>> _ = train(VisionConfig(dataset="synthetic", arch="vgg11", width=0.0625, epochs=1,
        ...                        train_size=32, val_size=8, batch_size=16, serve=False,
        ...                        progress=False, tensorboard=False,
        ...                        runs_root=tempfile.mkdtemp()), callbacks=[count])
        >>> count.safe_points     # one before each of the 2 batches, one that finds no more
        3
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first safe point: the knobs are registered, the server is up."""

    def on_safe_point(self, trainer: Trainer) -> None:
        """At every safe point, before the loop reads its live values (``trainer.pos``: the
        epoch, the iteration within it and the global step). A set or fire made here is
        applied at this safe point."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last safe point, before the stop checkpoint and final evaluation."""


def train(config: VisionConfig, *, registry: Registry | None = None,
          phase: Phase | None = None, callbacks: Sequence[TrainerCallback] = (),
          lineage: Mapping[str, Any] | None = None) -> TrainResult:
    """Train as ``config`` says; returns when the epochs are done or ``stop`` fires.

    Args:
        registry: the registry to put the knobs in on rank 0 (default: a new one).
        phase: called with ``"setup"`` (data, model, optimizer, loader built),
            ``"checkpoint_load"`` (when resuming), ``"serve"`` (gRPC server and TensorBoard
            writer up), ``"loader_warmup"`` (first batch fetched) and ``"first_step"`` as
            start-up reaches them (restart-cost measurements).
        callbacks: hooks into the loop (:class:`TrainerCallback`).
        lineage: where this run comes from (the run it replays), written to
            ``config.json`` under ``"lineage"``.
    """
    return Trainer(config, registry=registry, phase=phase, callbacks=callbacks,
                   lineage=lineage).run()


class Trainer:
    """One ``train-vision`` run, in named phases: the constructor builds (:meth:`_build`),
    puts the knobs in the registry (:meth:`_make_live`), resumes (:meth:`_resume`) and serves
    (:meth:`_serve`); :meth:`run` trains epoch by epoch (:meth:`_epoch`, one optimizer step
    per :meth:`_step`) and ends it (:meth:`_finish`). Triggers act through
    :meth:`checkpoint`, :meth:`evaluate` and :meth:`_handle`.

    :param config: the run's settings.
    :param registry: the registry to put the knobs in on rank 0 (default: a new one).
    :param phase: told the name of each start-up phase as it is reached (see :func:`train`).
    :param callbacks: hooks into the loop (:class:`TrainerCallback`), called in order.
    :param lineage: where this run comes from, written to ``config.json`` (see :func:`train`).
    """

    def __init__(self, config: VisionConfig, *, registry: Registry | None = None,
                 phase: Phase | None = None, callbacks: Sequence[TrainerCallback] = (),
                 lineage: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.callbacks = tuple(callbacks)
        self.lineage = lineage
        self.started = time.time()
        self.mark: Phase = phase or (lambda name: None)
        self.rank, self.world = init_distributed()
        self.primary = self.rank == 0
        self.pos = _Position()
        self.last_eval: dict[str, float] | None = None
        self.last_ckpt: str | None = None
        self.eval_step = -1
        self.stopped = "completed"
        self._bar: Any = None  # the epoch's progress bar (rank 0, --progress)
        self._first_batch = self._first_step = True  # start-up phases still to mark
        self._deadline_fired = False  # --max-seconds has fired stop
        self._build()
        self._make_live(registry)
        self._resume()
        self._serve()

    # ------------------------------------------------------------------ start-up phases
    def _build(self) -> None:
        """The run directory, data, model, optimizer, schedule, sampler and loader."""
        config = self.config
        torch.manual_seed(config.seed)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.device = device = _device(config.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.run_dir = Path(config.runs_root) / _run_name(config)
        if self.primary:
            _make_run_dir(self.run_dir, config, self.lineage)
        self.data = build_datasets(
            config.dataset, config.data_root, image_size=config.image_size,
            augment=config.augment, train_size=config.train_size, val_size=config.val_size,
            num_classes=config.num_classes, seed=config.seed)
        head = config.head or ("small" if self.data.image_size <= 64 else "imagenet")
        model: nn.Module = build_vgg(config.arch, num_classes=self.data.num_classes, head=head,
                                     dropout=config.dropout, width=config.width).to(device)
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.model = model
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, LRSchedule(
            config.schedule, epochs=config.epochs, step_size=config.step_size,
            gamma=config.gamma, milestones=config.milestones,
            warmup_epochs=config.warmup_epochs))
        self.sampler = LiveBatchSampler(len(self.data.train), config.batch_size, shuffle=True,
                                        seed=config.seed, rank=self.rank,
                                        world_size=self.world, boundary=config.batch_boundary)
        self.loader = DataLoader(self.data.train, batch_sampler=self.sampler,
                                 num_workers=config.workers,
                                 persistent_workers=config.workers > 0,
                                 pin_memory=device.type == "cuda")
        self.mark("setup")

    def _make_live(self, registry: Registry | None) -> None:
        """The knobs (in the registry on rank 0) and the run's journal."""
        config = self.config
        self.registry = (registry if registry is not None else Registry()) \
            if self.primary else None
        self.control = LiveControl(
            self.registry, KnobTargets(self.optimizer, self.model, self.sampler,
                                       self.scheduler, config.nesterov),
            initial={"learning_rate": config.learning_rate, "momentum": config.momentum,
                     "weight_decay": config.weight_decay, "batch_size": config.batch_size,
                     "dropout": config.dropout, "lr_drop_factor": config.lr_drop_factor})
        self.journal_path = self.run_dir / "journal.jsonl"
        self._resume_state = load_checkpoint(config.resume) if config.resume else None
        registry = self.registry
        if registry is not None and registry.journal is None:
            if self.journal_path.exists():  # resuming in the same run directory: continue
                last, _ = read_journal_tail(self.journal_path, limit=1)
                registry.continue_versions(last[-1].v if last else 0)
            # what a replay reads: the settings, the thread count (another count sums in
            # another order), and for a resume the checkpoint (last.pt followed) and its step
            data: dict[str, Any] = {"run": self.run_dir.name, "world_size": self.world,
                                    "threads": torch.get_num_threads(),
                                    "settings": saved_config(config)}
            if self._resume_state is not None and config.resume:
                data["resumed_from"] = str(Path(config.resume).resolve())
                data["resumed_step"] = int(self._resume_state["position"]["step"])
            registry.attach_journal(self.journal_path, data=data)

    def _resume(self) -> None:
        """Model, optimizer, schedule, live values and position from ``--resume``; then the
        ``--set`` values."""
        config, state = self.config, self._resume_state
        if state is not None:
            restore_training_state(state, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler)
            self.control.restore(state.get("live", {}))
            self.pos = _Position(**{k: int(v) for k, v in state["position"].items()
                                    if k in _Position().as_dict()})
            self.mark("checkpoint_load")
        if self.registry is not None and config.set_values:
            self.registry.set(config.set_values, source="command line")

    def _serve(self) -> None:
        """The gRPC server (rank 0), TensorBoard, the iteration log and the DDP sync."""
        config, run_dir = self.config, self.run_dir
        self.server: Serving | None = None
        self.address: str | None = None
        if self.registry is not None and config.serve:
            self.server = serve(config.bind, run=run_dir.name, token=config.token,
                                registry=self.registry, journal=self.journal_path, quiet=True,
                                out_of_process=config.serve_process,
                                max_calls_per_second=config.max_calls_per_second or None)
            self.address = address = self.server.address
            write_private(run_dir / "server.json", json.dumps(
                {"address": address, "run": run_dir.name, "pid": os.getpid()}))
            target = f"--run {run_dir.name}" if config.bind is None else f"--addr {address}"
            print(f"livetune: run {run_dir.name!r} serving on {address}; run directory "
                  f"{run_dir}\n  livetune {target} ls\n  livetune {target} set learning_rate "
                  f"0.01 batch_size=128\n  livetune {target} fire evaluate   # also: "
                  f"checkpoint, stop, lr_drop", file=sys.stderr, flush=True)
        self.writer = None
        if self.primary and config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))
        self.mark("serve")
        self.iter_log = _IterationLog(run_dir / f"iterations.rank{self.rank}.jsonl"
                                      if config.iteration_log else None)
        if config.iteration_log and not self.primary:
            run_dir.mkdir(parents=True, exist_ok=True)
        self.sync = ControlSync(self.control, every=config.sync_every,
                                device=self.device if self.device.type == "cuda" else "cpu")
        self.loss_fn = nn.CrossEntropyLoss()

    # ------------------------------------------------------------------ what triggers do
    def checkpoint(self, tag: str) -> str | None:
        """Save ``checkpoints/<tag>.pt`` (rank 0) and journal it; its path."""
        if not self.primary:
            return None
        pos = self.pos
        t0 = time.perf_counter()
        path = save_checkpoint(self.run_dir / "checkpoints", tag, model=self.model,
                               optimizer=self.optimizer, scheduler=self.scheduler,
                               position=pos.as_dict(), live=self.control.state_dict(),
                               extra={"config": saved_config(self.config),
                                      "world_size": self.world})
        seconds = time.perf_counter() - t0
        self.last_ckpt = str(path)
        if self.registry is not None:
            self.registry.record_event("checkpoint", {"path": str(path), "seconds": seconds,
                                                      "epoch": pos.epoch,
                                                      "iteration": pos.iteration},
                                       step=pos.step)
        return self.last_ckpt

    def evaluate(self) -> dict[str, float]:
        """Evaluate on the validation set (every rank), journal and log it (rank 0)."""
        pos = self.pos
        if self.eval_step == pos.step and self.last_eval is not None:
            # this model was evaluated at this step already (a fired evaluate handled right
            # after an epoch's own evaluation): one evaluation, journaled once
            return self.last_eval
        metrics = evaluate(self.model, self.data.val,
                           batch_size=max(int(self.sampler.batch_size), 64),
                           device=self.device, sync=self.sync, workers=0)
        self.last_eval, self.eval_step = metrics, pos.step
        if self.registry is not None:
            event = EvaluateEvent({**metrics, "epoch": pos.epoch, "iteration": pos.iteration})
            self.registry.record_event(EVENT, event.to_data(), step=pos.step)
        if self.writer is not None:
            for key in ("loss", "acc1", "acc5"):
                self.writer.add_scalar(f"val/{key}", metrics[key], pos.step)
        return metrics

    def _handle(self, actions: Actions, bar: Any) -> bool:
        """Say what was applied, evaluate and checkpoint as fired; whether to stop."""
        pos = self.pos
        if actions.applied and self.primary:
            said = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in actions.applied.items())
            _say(bar, f"livetune: applied {said} at epoch {pos.epoch} iteration "
                      f"{pos.iteration} (step {pos.step})")
        for _ in range(actions.evaluate):
            m = self.evaluate()
            if self.primary:
                _say(bar, f"evaluate at step {pos.step}: acc1={m['acc1']:.4f} "
                          f"loss={m['loss']:.4f}")
        if actions.checkpoint:
            path = self.checkpoint(f"step_{pos.step}")
            if self.primary:
                _say(bar, f"checkpoint: {path}")
        return actions.stop

    # ------------------------------------------------------------------ training
    def run(self) -> TrainResult:
        """Train epoch by epoch until the epochs are done, ``stop`` fires, ``--max-steps``
        or ``--max-seconds`` is reached, or Ctrl-C; then end the run (:meth:`_finish`)."""
        try:
            for callback in self.callbacks:
                callback.on_train_start(self)
        except BaseException:
            self._close()
            raise
        try:
            self.model.train()
            while self.pos.epoch < self.config.epochs and self.stopped == "completed":
                self._epoch()
        except KeyboardInterrupt:
            self.stopped = "interrupted"
            if self._bar is not None:
                self._bar.close()
        finally:
            self.iter_log.flush()
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self._finish()

    def _epoch(self) -> None:
        """One epoch (or what is left of it): a safe point before every batch, then the
        epoch's evaluation, schedule step and checkpoint."""
        config, pos = self.config, self.pos
        self.sampler.set_epoch(pos.epoch, start=pos.samples)
        batches = iter(self.loader)
        if self.primary and config.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.sampler) + pos.iteration, initial=pos.iteration,
                             desc=f"epoch {pos.epoch + 1} of {config.epochs}", unit="it",
                             dynamic_ncols=True, leave=False)
        force = True
        while True:
            if self._safe_point(force):
                self.stopped = "stop"
                break
            force = False
            if config.max_steps and pos.step >= config.max_steps:
                self.stopped = "max_steps"
                break
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            if self._first_batch:
                self._first_batch = False
                self.mark("loader_warmup")
            self._step(images, labels)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.stopped != "completed":
            return
        # epoch boundary: evaluate the epoch just done, then step the schedule
        if config.eval_each_epoch:
            m = self.evaluate()
            if self.primary:
                _say(None, f"epoch {pos.epoch + 1} of {config.epochs} done (step "
                           f"{pos.step}): acc1={m['acc1']:.4f} loss={m['loss']:.4f} "
                           f"lr={self.optimizer.param_groups[0]['lr']:.4g}")
        pos.epoch += 1
        pos.iteration = 0
        pos.samples = 0
        self.scheduler.step()
        if config.checkpoint_each_epoch:
            self.checkpoint(f"epoch_{pos.epoch}")

    def _safe_point(self, force: bool) -> bool:
        """Apply what changed (all ranks at the same iteration); whether ``stop`` fired."""
        config, pos, registry = self.config, self.pos, self.registry
        if registry is not None:
            registry.step = pos.step
            if (config.max_seconds and not self._deadline_fired
                    and time.time() - self.started >= config.max_seconds):
                self._deadline_fired = True
                registry.fire("stop", source="max_seconds")
        for callback in self.callbacks:
            callback.on_safe_point(self)
        snap = self.sync.poll(pos.step, force=force)
        return snap is not None and self._handle(
            self.control.apply(snap, epoch=pos.epoch, iteration=pos.iteration, step=pos.step),
            self._bar)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimizer step on one batch, and its logs."""
        config, pos, optimizer, bar = self.config, self.pos, self.optimizer, self._bar
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        group = optimizer.param_groups[0]
        lr = group["lr"]
        loss = self.loss_fn(self.model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pos.step += 1
        pos.iteration += 1
        pos.samples += len(labels)
        pos.total_samples += len(labels)
        if self._first_step:
            self._first_step = False
            self.mark("first_step")
        writer = self.writer
        if config.iteration_log or (
                writer is not None and pos.step % config.log_every == 0) or bar:
            loss_value = float(loss.detach())
            if config.iteration_log:
                momentum = group["betas"][0] if "betas" in group else group["momentum"]
                self.iter_log.add({"step": pos.step - 1, "epoch": pos.epoch,
                                   "iteration": pos.iteration - 1, "lr": lr,
                                   "momentum": momentum, "weight_decay": group["weight_decay"],
                                   "batch": len(labels),
                                   "dropout": self.control.values["dropout"],
                                   "loss": loss_value})
            if writer is not None and pos.step % config.log_every == 0:
                writer.add_scalar("train/loss", loss_value, pos.step)
                writer.add_scalar("train/lr", lr, pos.step)
                writer.add_scalar("train/batch_size", len(labels), pos.step)
            if bar is not None:
                bar.update(1)
                if pos.step % config.log_every == 0:
                    bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.3g}", bs=len(labels))

    def _finish(self) -> TrainResult:
        """The stop checkpoint and final evaluation, ``result.json``, and everything closed."""
        config, pos, stopped = self.config, self.pos, self.stopped
        if stopped == "interrupted" or (stopped in ("stop", "max_steps")
                                        and config.checkpoint_on_stop):
            self.checkpoint(f"{stopped}_step_{pos.step}")
        if config.eval_at_end and self.eval_step != pos.step and stopped != "interrupted":
            self.evaluate()
        elapsed = time.time() - self.started
        result = TrainResult(
            run_dir=str(self.run_dir), epoch=pos.epoch, iteration=pos.iteration,
            global_step=pos.step, epochs_completed=pos.epoch + pos.samples
            / self.sampler.shard_size, samples_seen=pos.total_samples, elapsed_s=elapsed,
            stopped=stopped, evaluation=self.last_eval, checkpoint=self.last_ckpt,
            address=self.address, values=dict(self.control.values))
        if self.primary:
            write_private(self.run_dir / "result.json", json.dumps(asdict(result), indent=2))
            _say(None, f"done ({stopped}): {pos.step} iterations, "
                       f"{result.epochs_completed:.2f} epochs in {elapsed:.1f}s; "
                       f"last evaluation {json.dumps(self.last_eval)}; journal "
                       f"{self.journal_path}")
        self._close()
        return result

    def _close(self) -> None:
        """Close the TensorBoard writer, stop serving, unregister the knobs."""
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.stop()
        if self.registry is not None:
            self.control.close()


def _say(bar: Any, text: str) -> None:
    if bar is not None:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def distributed_cleanup() -> Any:
    """Destroy the process group at the end of a torchrun job (no-op otherwise)."""
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
