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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..evaluation import EVENT, EvaluateEvent
from ..journal import read_journal_tail
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


def _make_run_dir(run_dir: Path, config: VisionConfig) -> None:
    """A new private run directory (an existing one is refused unless resuming) and its
    ``config.json`` (0600, never through a link)."""
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
    write_private(run_dir / "config.json", json.dumps(saved_config(config), indent=2))


def _run_name(config: VisionConfig) -> str:
    return config.run_name or f"{config.arch}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: VisionConfig, *, registry: Registry | None = None,
          phase: Phase | None = None) -> TrainResult:
    """Train as ``config`` says; returns when the epochs are done or ``stop`` fires.

    Args:
        registry: the registry to put the knobs in on rank 0 (default: a new one).
        phase: called with ``"setup"`` (data, model, optimizer, loader built),
            ``"checkpoint_load"`` (when resuming), ``"serve"`` (gRPC server and TensorBoard
            writer up), ``"loader_warmup"`` (first batch fetched) and ``"first_step"`` as
            start-up reaches them (restart-cost measurements).
    """
    started = time.time()
    mark = phase or (lambda name: None)
    rank, world = init_distributed()
    primary = rank == 0
    torch.manual_seed(config.seed)
    device = _device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run_dir = Path(config.runs_root) / _run_name(config)
    if primary:
        _make_run_dir(run_dir, config)

    data = build_datasets(config.dataset, config.data_root, image_size=config.image_size,
                          augment=config.augment, train_size=config.train_size,
                          val_size=config.val_size, num_classes=config.num_classes,
                          seed=config.seed)
    head = config.head or ("small" if data.image_size <= 64 else "imagenet")
    model: nn.Module = build_vgg(config.arch, num_classes=data.num_classes, head=head,
                                 dropout=config.dropout, width=config.width).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(
        config.schedule, epochs=config.epochs, step_size=config.step_size, gamma=config.gamma,
        milestones=config.milestones, warmup_epochs=config.warmup_epochs))
    sampler = LiveBatchSampler(len(data.train), config.batch_size, shuffle=True,
                               seed=config.seed, rank=rank, world_size=world,
                               boundary=config.batch_boundary)
    loader = DataLoader(data.train, batch_sampler=sampler, num_workers=config.workers,
                        persistent_workers=config.workers > 0,
                        pin_memory=device.type == "cuda")
    mark("setup")

    registry = (registry if registry is not None else Registry()) if primary else None
    control = LiveControl(registry, KnobTargets(optimizer, model, sampler, scheduler,
                                                config.nesterov),
                          initial={"learning_rate": config.learning_rate,
                                   "momentum": config.momentum,
                                   "weight_decay": config.weight_decay,
                                   "batch_size": config.batch_size, "dropout": config.dropout,
                                   "lr_drop_factor": config.lr_drop_factor})
    journal_path = run_dir / "journal.jsonl"
    if registry is not None and registry.journal is None:
        if journal_path.exists():  # resuming in the same run directory: continue its versions
            last, _ = read_journal_tail(journal_path, limit=1)
            registry.continue_versions(last[-1].v if last else 0)
        registry.attach_journal(journal_path, data={"run": run_dir.name, "world_size": world})
    pos = _Position()
    if config.resume:
        state = load_checkpoint(config.resume)
        restore_training_state(state, model=model, optimizer=optimizer, scheduler=scheduler)
        control.restore(state.get("live", {}))
        pos = _Position(**{k: int(v) for k, v in state["position"].items()
                           if k in _Position().as_dict()})
        mark("checkpoint_load")
    if registry is not None and config.set_values:
        registry.set(config.set_values, source="command line")

    server = None
    address = None
    if registry is not None and config.serve:
        server = serve(config.bind, run=run_dir.name, token=config.token, registry=registry,
                       journal=journal_path, quiet=True, out_of_process=config.serve_process,
                       max_calls_per_second=config.max_calls_per_second or None)
        address = server.address
        write_private(run_dir / "server.json", json.dumps(
            {"address": address, "run": run_dir.name, "pid": os.getpid()}))
        target = f"--run {run_dir.name}" if config.bind is None else f"--addr {address}"
        print(f"livetune: run {run_dir.name!r} serving on {address}; run directory {run_dir}\n"
              f"  livetune {target} ls\n  livetune {target} set learning_rate 0.01 "
              f"batch_size=128\n  livetune {target} fire evaluate   # also: checkpoint, stop, "
              f"lr_drop", file=sys.stderr, flush=True)

    writer = None
    if primary and config.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    mark("serve")
    iter_log = _IterationLog(run_dir / f"iterations.rank{rank}.jsonl"
                             if config.iteration_log else None)
    if config.iteration_log and not primary:
        run_dir.mkdir(parents=True, exist_ok=True)
    sync = ControlSync(control, every=config.sync_every, device=device
                       if device.type == "cuda" else "cpu")
    loss_fn = nn.CrossEntropyLoss()
    last_eval: dict[str, float] | None = None
    last_ckpt: str | None = None
    eval_step = -1
    stopped = "completed"
    first_batch = first_step = True
    deadline_fired = False
    shard = sampler.shard_size

    def checkpoint(tag: str) -> str | None:
        nonlocal last_ckpt
        if not primary:
            return None
        t0 = time.perf_counter()
        path = save_checkpoint(run_dir / "checkpoints", tag, model=model, optimizer=optimizer,
                               scheduler=scheduler, position=pos.as_dict(),
                               live=control.state_dict(),
                               extra={"config": saved_config(config), "world_size": world})
        seconds = time.perf_counter() - t0
        last_ckpt = str(path)
        if registry is not None:
            registry.record_event("checkpoint", {"path": str(path), "seconds": seconds,
                                                 "epoch": pos.epoch,
                                                 "iteration": pos.iteration}, step=pos.step)
        return last_ckpt

    def run_eval() -> dict[str, float]:
        nonlocal last_eval, eval_step
        if eval_step == pos.step and last_eval is not None:
            # this model was evaluated at this step already (a fired evaluate handled right
            # after an epoch's own evaluation): one evaluation, journaled once
            return last_eval
        metrics = evaluate(model, data.val, batch_size=max(int(sampler.batch_size), 64),
                           device=device, sync=sync, workers=0)
        last_eval, eval_step = metrics, pos.step
        if registry is not None:
            event = EvaluateEvent({**metrics, "epoch": pos.epoch, "iteration": pos.iteration})
            registry.record_event(EVENT, event.to_data(), step=pos.step)
        if writer is not None:
            for key in ("loss", "acc1", "acc5"):
                writer.add_scalar(f"val/{key}", metrics[key], pos.step)
        return metrics

    def handle(actions: Actions, bar: Any) -> bool:
        if actions.applied and primary:
            said = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in actions.applied.items())
            _say(bar, f"livetune: applied {said} at epoch {pos.epoch} iteration "
                      f"{pos.iteration} (step {pos.step})")
        for _ in range(actions.evaluate):
            m = run_eval()
            if primary:
                _say(bar, f"evaluate at step {pos.step}: acc1={m['acc1']:.4f} "
                          f"loss={m['loss']:.4f}")
        if actions.checkpoint:
            path = checkpoint(f"step_{pos.step}")
            if primary:
                _say(bar, f"checkpoint: {path}")
        return actions.stop

    bar = None
    try:
        model.train()
        while pos.epoch < config.epochs and stopped == "completed":
            sampler.set_epoch(pos.epoch, start=pos.samples)
            batches = iter(loader)
            if primary and config.progress:
                from tqdm import tqdm

                bar = tqdm(total=len(sampler) + pos.iteration, initial=pos.iteration,
                           desc=f"epoch {pos.epoch + 1} of {config.epochs}", unit="it",
                           dynamic_ncols=True,
                           leave=False)
            force = True
            while True:
                if registry is not None:
                    registry.step = pos.step
                    if (config.max_seconds and not deadline_fired
                            and time.time() - started >= config.max_seconds):
                        deadline_fired = True
                        registry.fire("stop", source="max_seconds")
                snap = sync.poll(pos.step, force=force)
                force = False
                if snap is not None and handle(
                        control.apply(snap, epoch=pos.epoch, iteration=pos.iteration,
                                      step=pos.step), bar):
                    stopped = "stop"
                    break
                if config.max_steps and pos.step >= config.max_steps:
                    stopped = "max_steps"
                    break
                try:
                    images, labels = next(batches)
                except StopIteration:
                    break
                if first_batch:
                    first_batch = False
                    mark("loader_warmup")
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                group = optimizer.param_groups[0]
                lr = group["lr"]
                loss = loss_fn(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                pos.step += 1
                pos.iteration += 1
                pos.samples += len(labels)
                pos.total_samples += len(labels)
                if first_step:
                    first_step = False
                    mark("first_step")
                if config.iteration_log or (
                        writer is not None and pos.step % config.log_every == 0) or bar:
                    loss_value = float(loss.detach())
                    if config.iteration_log:
                        momentum = group["betas"][0] if "betas" in group else group["momentum"]
                        iter_log.add({"step": pos.step - 1, "epoch": pos.epoch,
                                      "iteration": pos.iteration - 1, "lr": lr,
                                      "momentum": momentum,
                                      "weight_decay": group["weight_decay"],
                                      "batch": len(labels), "dropout": control.values["dropout"],
                                      "loss": loss_value})
                    if writer is not None and pos.step % config.log_every == 0:
                        writer.add_scalar("train/loss", loss_value, pos.step)
                        writer.add_scalar("train/lr", lr, pos.step)
                        writer.add_scalar("train/batch_size", len(labels), pos.step)
                    if bar is not None:
                        bar.update(1)
                        if pos.step % config.log_every == 0:
                            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.3g}",
                                            bs=len(labels))
            if bar is not None:
                bar.close()
                bar = None
            if stopped != "completed":
                break
            # epoch boundary: evaluate the epoch just done, then step the schedule
            if config.eval_each_epoch:
                m = run_eval()
                if primary:
                    _say(None, f"epoch {pos.epoch + 1} of {config.epochs} done (step "
                               f"{pos.step}): "
                               f"acc1={m['acc1']:.4f} loss={m['loss']:.4f} "
                               f"lr={optimizer.param_groups[0]['lr']:.4g}")
            pos.epoch += 1
            pos.iteration = 0
            pos.samples = 0
            scheduler.step()
            if config.checkpoint_each_epoch:
                checkpoint(f"epoch_{pos.epoch}")
    except KeyboardInterrupt:
        stopped = "interrupted"
        if bar is not None:
            bar.close()
    finally:
        iter_log.flush()
    if stopped == "interrupted" or (stopped in ("stop", "max_steps")
                                    and config.checkpoint_on_stop):
        checkpoint(f"{stopped}_step_{pos.step}")
    if config.eval_at_end and eval_step != pos.step and stopped != "interrupted":
        run_eval()
    elapsed = time.time() - started
    result = TrainResult(
        run_dir=str(run_dir), epoch=pos.epoch, iteration=pos.iteration, global_step=pos.step,
        epochs_completed=pos.epoch + pos.samples / shard, samples_seen=pos.total_samples,
        elapsed_s=elapsed, stopped=stopped, evaluation=last_eval, checkpoint=last_ckpt,
        address=address, values=dict(control.values))
    if primary:
        write_private(run_dir / "result.json", json.dumps(asdict(result), indent=2))
        _say(None, f"done ({stopped}): {pos.step} iterations, "
                   f"{result.epochs_completed:.2f} epochs in {elapsed:.1f}s; "
                   f"last evaluation {json.dumps(last_eval)}; journal {journal_path}")
    if writer is not None:
        writer.close()
    if server is not None:
        server.stop()
    if registry is not None:
        control.close()
    return result


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
