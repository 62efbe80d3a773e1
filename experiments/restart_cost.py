"""What does a hyperparameter change cost: live (livetune) versus stop-and-restart?

Measured on the ``livetune train-vision`` path (torchvision VGG), each training job a real
separate process started the way a user starts it (``python -m livetune_rl.vision.cli``).

**Cost per change.** One job trains; a fixed sequence of changes is made to it

* *live*: ``Set`` over gRPC; the time from the request to the change being in effect (the
  ``applied`` journal record the training loop writes at its next iteration), and the training
  time lost: the time the training thread spent putting the value into effect (``apply_s``).
* *restart*: the usual way. ``stop`` (the job finishes its iteration, saves a checkpoint
  with model, optimizer and live values, exits), then a new process starts with the new value
  (``--resume last.pt --set NAME=VALUE``): interpreter start, imports, dataset and model set-up,
  checkpoint load, server and TensorBoard start, data-loader warm-up (first batch), until the
  first training step completes again. Every phase is timed (the new process appends
  timestamps to a phase file, ``--phase-file``).

Energy per change: measured from RAPL (``/sys/class/powercap/intel-rapl:*/energy_uj``) or NVML
(GPU total energy) where readable, over the restart window; otherwise **estimated** as the CPU
seconds the restart consumed (new process until its first step + the checkpoint save) times
``--watts-per-core`` (default 10 W per busy core, a typical server-CPU figure; say so when
quoting it). The estimate leaves out the idle power of the machine and of any accelerator held
during the restart, which is what dominates on a GPU node (the paper's 5.4 kJ in 60 s is 90 W).

The competition setting (a wall-clock budget, a person making changes) is measured by
``experiments/competition.py``, which restarts for real under a scripted tuner; this script
only measures what one change costs.

Data: the learnable synthetic set :class:`livetune_rl.vision.data.SyntheticPatterns` by default
(no download; nothing ships a colour image set), or real data with ``--dataset cifar100
--data-root DIR`` (also ``tinyimagenet``, ``imagenet``). Outputs ``experiments/results/
restart_cost.{json,md,png}``. Run::

    .venv/bin/python experiments/restart_cost.py            # about 2 minutes on 2 CPU cores
    .venv/bin/python experiments/restart_cost.py --quick    # under a minute (CI)
    .venv/bin/python experiments/restart_cost.py --dataset cifar100 --data-root ~/data \\
        --arch vgg16_bn --width 1
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livetune_rl.client import Client
from livetune_rl.journal import ChangeEvent, read_journal

RESULTS = Path(__file__).resolve().parent / "results"
PAPER = {"seconds": 60.0, "joules": 5400.0,
         "setting": "VGG on ImageNet-1k, TinyImageNet and CIFAR100 (GPU), per the paper"}
PHASES = ("checkpoint_save", "process_exit", "interpreter_start", "imports", "setup",
          "checkpoint_load", "serve", "loader_warmup", "first_step")
PHASE_HELP = {
    "checkpoint_save": "stop request until the checkpoint is written (ends the iteration)",
    "process_exit": "checkpoint written until the old process has exited",
    "interpreter_start": "new process launched until its main() runs",
    "imports": "torch, torchvision and livetune_rl.vision imports",
    "setup": "dataset, model, optimizer, scheduler, data loader",
    "checkpoint_load": "registry, journal and checkpoint load (model, optimizer, live values)",
    "serve": "gRPC server and TensorBoard writer start",
    "loader_warmup": "first batch from the data loader",
    "first_step": "first training step (forward, backward, optimizer step)",
}


# ------------------------------------------------------------------------- energy
class EnergyMeter:
    """Reads cumulative energy in joules from RAPL or NVML, if this machine exposes either."""

    def __init__(self) -> None:
        self.source = "none"
        self._rapl = sorted(p for p in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj")
                            if p.count(":") == 1)
        self._nvml: Any = None
        if self._rapl and all(os.access(p, os.R_OK) for p in self._rapl):
            try:
                self._read_rapl()
                self.source = "RAPL (CPU packages)"
            except OSError:
                self._rapl = []
        if self.source == "none":
            try:
                import pynvml  # type: ignore[import-not-found]

                pynvml.nvmlInit()
                self._nvml = [pynvml.nvmlDeviceGetHandleByIndex(i)
                              for i in range(pynvml.nvmlDeviceGetCount())]
                self._read_nvml()
                self.source = "NVML (GPU total energy)"
            except Exception:
                self._nvml = None

    def _read_rapl(self) -> float:
        return sum(int(Path(p).read_text()) for p in self._rapl) / 1e6

    def _read_nvml(self) -> float:
        import pynvml

        return sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._nvml) / 1e3

    @property
    def available(self) -> bool:
        return self.source != "none"

    def read(self) -> float | None:
        """Joules since an arbitrary origin (None when nothing is readable)."""
        if self._rapl and self.source.startswith("RAPL"):
            return self._read_rapl()
        if self._nvml is not None:
            return self._read_nvml()
        return None


# ------------------------------------------------------------------------- jobs
@dataclass
class Settings:
    dataset: str
    data_root: str | None
    arch: str
    width: float
    train_size: int
    val_size: int
    num_classes: int
    batch_size: int
    learning_rate: float
    workers: int
    watts_per_core: float
    root: Path
    threads: int = 1
    extra: list[str] = field(default_factory=list)


class Job:
    """One training process (``python -m livetune_rl.vision.cli``) and its gRPC client."""

    def __init__(self, s: Settings, name: str, *, resume: Path | None = None,
                 set_values: dict[str, Any] | None = None, eval_at_end: bool = False) -> None:
        self.name = name
        self.run_dir = s.root / name
        self.phase_file = s.root / f"{name}.phases.jsonl"
        cmd = [sys.executable, "-m", "livetune_rl.vision.cli", "--dataset", s.dataset,
               "--arch", s.arch, "--width", str(s.width), "--train-size", str(s.train_size),
               "--val-size", str(s.val_size), "--num-classes", str(s.num_classes),
               "--batch-size", str(s.batch_size), "--lr", str(s.learning_rate),
               "--workers", str(s.workers), "--epochs", "100000", "--runs-root", str(s.root),
               "--run-name", name, "--bind", "127.0.0.1:0", "--no-progress",
               "--no-eval-each-epoch", "--no-checkpoint-each-epoch",
               "--phase-file", str(self.phase_file), *s.extra]
        if s.data_root:
            cmd += ["--data-root", s.data_root]
        if resume is not None:
            cmd += ["--resume", str(resume)]
        for key, value in (set_values or {}).items():
            cmd += ["--set", f"{key}={value}"]
        if not eval_at_end:
            cmd.append("--no-eval-at-end")
        self.log = open(s.root / f"{name}.log", "w")  # noqa: SIM115
        self.launched = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1",
                                          "OMP_NUM_THREADS": str(s.threads)})
        self.client: Client | None = None

    def connect(self, timeout: float = 300) -> Client:
        deadline = time.time() + timeout
        info = self.run_dir / "server.json"
        while not info.exists():
            self._check(deadline)
            time.sleep(0.01)
        self.client = Client(json.loads(info.read_text())["address"], timeout=10)
        return self.client

    def _check(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"job {self.name} exited with {self.proc.returncode}; see "
                               f"{self.log.name}")
        if time.time() > deadline:
            raise TimeoutError(f"job {self.name} did not get there in time")

    def wait_step(self, step: int, timeout: float = 300) -> int:
        assert self.client is not None
        deadline = time.time() + timeout
        while True:
            now = self.client.list().state.step or 0
            if now >= step:
                return now
            self._check(deadline)
            time.sleep(0.02)

    def phases(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if self.phase_file.exists():
            for line in self.phase_file.read_text().splitlines():
                row = json.loads(line)
                out[row["phase"]] = row
        return out

    def wait_phase(self, name: str, timeout: float = 300) -> dict[str, float]:
        deadline = time.time() + timeout
        while name not in self.phases():
            self._check(deadline)
            time.sleep(0.005)
        return self.phases()[name]

    def journal(self) -> list[ChangeEvent]:
        return read_journal(self.run_dir / "journal.jsonl")

    def stop(self, timeout: float = 300) -> tuple[float, float]:
        """Fire ``stop``; returns (time the request was sent, time the process had exited)."""
        assert self.client is not None
        requested = time.time()
        self.client.fire("stop")
        self.client.close()
        self.proc.wait(timeout)
        exited = time.time()
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"job {self.name} exited with {self.proc.returncode}")
        return requested, exited

    def result(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "result.json").read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


# ------------------------------------------------------------------------- A: per change
def live_change(job: Job, name: str, value: Any) -> dict[str, Any]:
    """Set one value over gRPC; time until the loop's ``applied`` record."""
    assert job.client is not None
    requested = time.time()
    event = job.client.set({name: value})[0]
    acknowledged = time.time()
    deadline = time.time() + 120
    while job.client.get(name).applied_version < event.v:
        job._check(deadline)
        time.sleep(0.002)
    applied = next(e for e in job.client.history(since=event.v, patterns=[name])
                   if e.kind == "applied")
    apply_s = float(applied.data.get("apply_s", 0.0))
    return {"name": name, "value": value, "ack_s": acknowledged - requested,
            "in_effect_s": max(0.0, applied.t - requested), "training_lost_s": apply_s,
            "applied_step": applied.step, "cpu_s": apply_s}


def restart_change(s: Settings, job: Job, name: str, value: Any, index: int,
                   meter: EnergyMeter) -> tuple[dict[str, Any], Job]:
    """Stop ``job`` (checkpoint on stop), start a new one with ``name=value``, to first step."""
    energy0 = meter.read()
    requested, exited = job.stop()
    saved = next(e for e in reversed(job.journal()) if e.kind == "event"
                 and e.name == "checkpoint")
    new = Job(s, f"restart-{index}", resume=job.run_dir / "checkpoints" / "last.pt",
              set_values={name: value})
    first = new.wait_phase("first_step")
    energy1 = meter.read()
    p = new.phases()
    t = {"requested": requested, "saved": saved.t, "exited": exited, "launched": new.launched,
         **{k: v["t"] for k, v in p.items()}}
    phases = {
        "checkpoint_save": t["saved"] - t["requested"],
        "process_exit": t["exited"] - t["saved"],
        "interpreter_start": t["main"] - t["launched"] + (t["launched"] - t["exited"]),
        "imports": t["imports"] - t["main"],
        "setup": t["setup"] - t["imports"],
        "checkpoint_load": t["checkpoint_load"] - t["setup"],
        "serve": t["serve"] - t["checkpoint_load"],
        "loader_warmup": t["loader_warmup"] - t["serve"],
        "first_step": t["first_step"] - t["loader_warmup"],
    }
    cpu = float(first["cpu"]) + float(saved.data.get("seconds", 0.0))
    row: dict[str, Any] = {"name": name, "value": value, "phases": phases,
                           "total_s": t["first_step"] - t["requested"], "cpu_s": cpu}
    if energy0 is not None and energy1 is not None:
        row["energy_j"] = energy1 - energy0
        row["energy_method"] = f"measured: {meter.source}"
    else:
        row["energy_j"] = cpu * s.watts_per_core
        row["energy_method"] = (f"ESTIMATE: CPU seconds x {s.watts_per_core:g} W per busy core "
                                "(no RAPL/NVML readable here)")
    new.connect()
    return row, new


def per_change(s: Settings, changes: list[tuple[str, Any]], meter: EnergyMeter,
               warm_steps: int, between: int = 3) -> dict[str, Any]:
    """Make ``changes`` live on one job, then again by restarts of that same job."""
    live_rows: list[dict[str, Any]] = []
    restart_rows: list[dict[str, Any]] = []
    job = Job(s, "live")
    try:
        job.connect()
        job.wait_step(warm_steps)  # past the first, slow iterations (allocator, kernels)
        for name, value in changes:
            row = live_change(job, name, value)
            first, t0 = job.wait_step(0), time.time()  # the iteration time, for context
            last = job.wait_step(first + between)
            row["iteration_s"] = (time.time() - t0) / max(1, last - first)
            live_rows.append(row)
        baseline = dict(changes)
        for i, (name, _) in enumerate(changes, 1):
            # each restart applies the same change again from the initial value's successor:
            # alternate between two values so every restart really changes something
            value = _other(name, baseline[name])
            baseline[name] = value
            row, job = restart_change(s, job, name, value, i, meter)
            restart_rows.append(row)
            job.wait_step(job.wait_step(0) + between)
        job.stop()
    finally:
        job.kill()
    return {"live": live_rows, "restart": restart_rows}


def _other(name: str, value: Any) -> Any:
    """A different valid value of ``name`` (for the restart half of the per-change runs)."""
    if name == "batch_size":
        return max(1, int(value) // 2)
    return float(value) / 2


# ------------------------------------------------------------------------- report
def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(float(r[key]) for r in rows) if rows else 0.0


def report(data: dict[str, Any]) -> str:
    a = data["per_change"]
    lines = [
        "# Restart cost: live change vs stop-and-restart",
        "",
        f"Command: `{data['command']}`  ",
        f"Machine: {data['machine']}  ",
        f"Job: {data['job']}  ",
        f"Energy: {data['energy_source']}",
        "",
        *(["**Quick mode: a check that the pipeline works, not a measurement.** The job is "
           "measured within its first iterations, which are slow warm-up iterations.", ""]
          if data["quick"] else []),
        "## Per change (seconds)",
        "",
        "| change | iteration time | live: set to in effect | live: training time lost | "
        "restart: total | " + " | ".join(PHASES) + " | restart energy (J) |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(PHASES) + "---:|",
    ]
    for live, rst in zip(a["live"], a["restart"], strict=True):
        lines.append(
            f"| {live['name']}={live['value']} | {live['iteration_s']:.2f} | "
            f"{live['in_effect_s'] * 1e3:.1f} ms | "
            f"{live['training_lost_s'] * 1e6:.0f} us | {rst['total_s']:.2f} | "
            + " | ".join(f"{rst['phases'][p]:.2f}" for p in PHASES)
            + f" | {rst['energy_j']:.0f} |")
    phase_means = {p: statistics.fmean(r["phases"][p] for r in a["restart"]) for p in PHASES}
    lines.append(
        f"| **mean** | {_mean(a['live'], 'iteration_s'):.2f} | "
        f"{_mean(a['live'], 'in_effect_s') * 1e3:.1f} ms | "
        f"{_mean(a['live'], 'training_lost_s') * 1e6:.0f} us | "
        f"**{_mean(a['restart'], 'total_s'):.2f}** | "
        + " | ".join(f"{phase_means[p]:.2f}" for p in PHASES)
        + f" | **{_mean(a['restart'], 'energy_j'):.0f}** |")
    method = a["restart"][0]["energy_method"] if a["restart"] else ""
    lines += [
        "",
        "A live change is in effect at the next iteration boundary: 'set to in effect' is the "
        "wait for the iteration in progress to end (at most one iteration time, about half on "
        "average), during which training goes on; 'training time lost' is the time the "
        "training thread spent applying it. Seconds unless marked.",
        "",
        f"Restart energy: {method}. Live change energy: the CPU time of applying it "
        f"({_mean(a['live'], 'cpu_s') * 1e6:.0f} us), i.e. ~0 J.",
        "",
        f"Saved per change by changing live: **{data['saved']['seconds']:.1f} s** and "
        f"**{data['saved']['joules']:.0f} J** ({data['saved']['joules_method']}). "
        f"Paper: up to {PAPER['seconds']:.0f} s and {PAPER['joules'] / 1e3:.1f} kJ per change "
        f"({PAPER['setting']}). The restart floor here is dominated by Python and torch start-up "
        "and set-up; on a GPU node with a large model and dataset, CUDA context creation, "
        "dataset indexing and loader workers add to it, and the idle power of the held node "
        "(not counted above) dominates the energy.",
        "",
        "Phases: " + "; ".join(f"`{p}`: {PHASE_HELP[p]}" for p in PHASES) + ".",
        "",
    ]
    lines += ["![restart cost](restart_cost.png)", ""]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = data["per_change"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    left = 0.0
    means = {p: statistics.fmean(r["phases"][p] for r in a["restart"]) for p in PHASES}
    colours = plt.get_cmap("tab10")
    for i, p in enumerate(PHASES):
        ax.barh("restart", means[p], left=left, color=colours(i), label=p)
        left += means[p]
    live_s = _mean(a["live"], "in_effect_s")
    ax.barh("live", live_s, color="black", label="live: set to applied")
    ax.text(max(live_s, left * 0.01), 1, f"  {live_s * 1e3:.0f} ms", va="center")
    ax.text(left, 0, f" {left:.1f} s", va="center")
    ax.set_xlim(0, left * 1.15)
    ax.set_ylim(-0.6, 2.6)
    ax.set_xlabel("seconds per hyperparameter change (mean)")
    ax.set_title(f"restart {left:.1f} s vs live {live_s * 1e3:.0f} ms")
    ax.legend(fontsize=7, loc="upper center", ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


# ------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one change (< 60 s)")
    p.add_argument("--dataset", default="synthetic",
                   choices=("synthetic", "fake", "cifar100", "tinyimagenet", "imagenet"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--arch", default="vgg11_bn")
    p.add_argument("--width", type=float, default=None,
                   help="VGG channel multiplier (default 0.25; quick 0.0625)")
    p.add_argument("--train-size", type=int, default=None, help="synthetic/fake only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per job (OMP_NUM_THREADS); 1 keeps a shared "
                        "machine's other load from stalling OpenMP barriers")
    p.add_argument("--watts-per-core", type=float, default=10.0,
                   help="power figure for the CPU-time energy estimate")
    p.add_argument("--out", default=str(RESULTS), help="output folder")
    p.add_argument("--workdir", default=None, help="where jobs write (default: a temp dir)")
    args = p.parse_args(argv)
    # a terminated experiment still ends its training jobs (the finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    quick = args.quick
    width = args.width if args.width is not None else (0.0625 if quick else 0.25)
    train_size = args.train_size or (512 if quick else 4096)
    changes: list[tuple[str, Any]] = [("learning_rate", 0.02)] if quick else [
        ("learning_rate", 0.02), ("momentum", 0.8), ("weight_decay", 1e-4),
        ("batch_size", 2 * args.batch_size), ("dropout", 0.3)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meter = EnergyMeter()
    command = " ".join(["python experiments/restart_cost.py",
                        *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="restart-cost-") as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("LIVETUNE_HOME", str(root / "home"))
        s = Settings(dataset=args.dataset, data_root=args.data_root, arch=args.arch,
                     width=width, train_size=train_size, val_size=512 if not quick else 128,
                     num_classes=20, batch_size=args.batch_size, learning_rate=0.05,
                     workers=args.workers, watts_per_core=args.watts_per_core, root=root,
                     threads=args.threads,
                     extra=["--no-tensorboard"] if quick else [])
        started = time.time()
        load_before = _loadavg()
        print(f"per-change cost: {len(changes)} changes, live then restart ...", flush=True)
        a = per_change(s, changes, meter, warm_steps=3 if quick else 20,
                       between=1 if quick else 3)
        elapsed = time.time() - started
    restart_s = _mean(a["restart"], "total_s")
    live_s = _mean(a["live"], "in_effect_s")
    restart_j = _mean(a["restart"], "energy_j")
    data: dict[str, Any] = {
        "command": command,
        "quick": quick,
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} CPUs, Python {platform.python_version()}; 1-minute load "
                   f"average {load_before} at start, {_loadavg()} at end (other work on the "
                   "machine slows the restarts too)",
        "job": f"{args.arch} width {width:g} (small head), {args.dataset}"
               f"{'' if args.dataset not in ('synthetic', 'fake') else f' {train_size} images'}"
               f", 32x32, batch {args.batch_size}, SGD momentum 0.9, workers {args.workers}, "
               f"{args.threads} torch thread(s)",
        "energy_source": meter.source if meter.available else (
            f"none readable (no /sys/class/powercap, no NVML): energy is an ESTIMATE, CPU "
            f"seconds x {args.watts_per_core:g} W per busy core"),
        "watts_per_core": args.watts_per_core,
        "per_change": a,
        "saved": {"seconds": restart_s - live_s, "joules": restart_j,
                  "joules_method": "measured" if meter.available else "estimate"},
        "paper": PAPER,
        "elapsed_s": elapsed,
    }
    (out / "restart_cost.json").write_text(json.dumps(data, indent=2))
    (out / "restart_cost.md").write_text(report(data))
    plot(data, out / "restart_cost.png")
    print(report(data))
    print(f"wrote {out / 'restart_cost.json'}, .md, .png in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
