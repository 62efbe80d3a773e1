"""Mutation testing of the core modules: how many planted bugs the tests catch.

Runs mutmut (pinned in the ``dev`` extra) over each core module group with that group's tests
only, on a seeded random sample of its mutants (or all of them), and prints the score per group
and every surviving mutant as a diff. Not part of CI: it takes minutes, not seconds.

A group is a list of glob patterns of files (see ``TARGETS``), so a module split into several
modules stays one group: ``callback`` is every module of ``livetune_rl/sb3/`` (a package below
it too) but the knob table, which is the group ``algorithm_knobs``. Nothing is excluded from
mutation: no ``# pragma: no mutate`` and no pattern; ``server`` and ``hungry_thirsty`` are
restricted to the functions named in ``TARGETS`` (the status mapping and access checks; the
env's rules), and the output says so.

Each group is mutated in its own copy of the project under ``build/mutation/<group>/``
(mutmut's ``mutants/`` folder lives there), so the working tree is never touched and runs are
incremental: a mutant already killed is not run again unless its function changed; survivors
and new mutants are. ``--fresh`` starts over.

Usage (from the repository root, with the dev extra installed)::

    nice -n 10 .venv/bin/python benchmarks/mutation.py                 # every group
    nice -n 10 .venv/bin/python benchmarks/mutation.py values knobs    # some groups
    nice -n 10 .venv/bin/python benchmarks/mutation.py --sample 0      # every mutant
    .venv/bin/python benchmarks/mutation.py --no-run                   # last results again

A mutant counts as killed when a test fails (or times out) with it in place; the score is
killed / (killed + survived), where "survived" includes mutants no selected test reaches.
A survivor is not necessarily a gap: some mutants cannot change behaviour (an initial value
``reset()`` always overwrites, ``strict=True`` on a zip of equal lengths); judge each diff.

The two SB3 groups (``algorithm_knobs``, ``callback``) train real models for every mutant: run
them on their own, on an otherwise idle machine. Run alongside other heavy jobs, mutmut's
CPU-time limit ended their workers (SIGXCPU), which says nothing about the tests; check the
timeout count the script prints before reading their score.
"""

from __future__ import annotations

import argparse
import filecmp
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "mutation"
KILLED_CODES = {1, 3}  # a test failed; pytest's internal error also means the mutant broke it
TIMEOUT_CODES = {-24, 24, 152, 255, 36}


@dataclass(frozen=True)
class Target:
    """One module group to mutate: its files (repository-relative glob patterns, so a module
    split into several files stays one group), the functions to mutate (None: all) and its
    tests."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    exclude: tuple[str, ...] = ()  # glob patterns of files the group leaves to another group
    functions: tuple[str, ...] | None = None
    deselect: tuple[str, ...] = ()
    sample: int = 60  # mutants drawn when --sample is not given
    timeout: int = 60  # seconds per test: a mutant that deadlocks uses no CPU, so mutmut's
    # CPU-time limit never ends it
    slack: float = 15.0  # mutmut's timeout_multiplier: a mutant's CPU-time limit is this many
    # times its tests' duration in the clean run (mutmut's default); the SB3 groups get more,
    # since on a busy machine their runs vary more than that and would read as timeouts


# The tests that exercise each module. Slow end-to-end SB3 tests (subprocess envs, a served
# registry driven by the CLI, long SAC runs: 5-18 s each) are deselected, so a sample runs in
# minutes on two cores; faster tests check the same knobs and callback paths in process.
_SB3_SLOW = tuple(f"tests/test_sb3.py::{name}" for name in (
    "test_reward_weight_change_reaches_every_subprocess_env_at_one_step",
    "test_ppo_hungry_thirsty_subproc_lr_set_by_another_process_sticks",
    "test_sac_ent_coef_and_learning_rate",
    "test_sac_relabels_replay_after_weight_change",
    "test_triggers_checkpoint_evaluate_stop",
    "test_value_the_algorithm_cannot_take_is_refused_before_ack",
    "test_dqn_exploration_rate_through_its_schedule",
))
TARGETS: dict[str, Target] = {
    "values": Target(("livetune_rl/values.py",),
                     ("tests/test_values.py", "tests/test_strength_values.py")),
    "journal": Target(("livetune_rl/journal.py",),
                      ("tests/test_journal.py", "tests/test_strength_journal.py")),
    "registry": Target(("livetune_rl/registry.py",),
                       ("tests/test_registry.py", "tests/test_strength_registry.py",
                        "tests/test_strength_registry_parts.py", "tests/test_noop_set.py",
                        "tests/test_concurrency.py::test_threads_local_sets",
                        "tests/test_concurrency.py::"
                        "test_change_event_round_trips_through_journal_under_load",
                        # the out-of-process path (a link to the serving child process)
                        "tests/test_sidecar.py::"
                        "test_sets_and_fires_made_by_the_training_process_go_through_the_child",
                        "tests/test_sidecar.py::test_trigger_fire_is_seen_once_and_its_handling_"
                        "journaled",
                        "tests/test_sidecar.py::test_definitions_made_after_serving_are_served",
                        # the serving side's replica, driven in this process
                        "tests/test_link.py", "tests/test_serving_parts.py")),
    # small and quick: every mutant rather than a sample of 60
    "knobs": Target(("livetune_rl/knobs.py",),
                    ("tests/test_registry.py", "tests/test_strength_knobs.py",
                     "tests/test_strength_knobs_groups.py", "tests/test_knobs_safe_points.py"),
                    sample=0),
    "wrappers": Target(("livetune_rl/wrappers.py",),
                       ("tests/test_wrappers.py", "tests/test_strength_wrappers.py"), sample=0),
    "algorithm_knobs": Target(("livetune_rl/sb3/algorithm_knobs.py",),
                              ("tests/test_sb3.py", "tests/test_strength_sb3.py",
                               "tests/test_strength_callback.py", "tests/test_sb3_contrib.py"),
                              deselect=_SB3_SLOW, timeout=300, slack=60.0),
    # LiveTuneCallback and whatever it is composed of: every SB3 module but the knob table
    # (its own group), so a callback split into several modules or a package stays measured.
    # Its tests train real SB3 models (seconds per mutant): a smaller sample
    "callback": Target(("livetune_rl/sb3/*.py", "livetune_rl/sb3/**/*.py"),
                       ("tests/test_sb3.py", "tests/test_sb3_parts.py",
                        "tests/test_strength_sb3.py", "tests/test_strength_callback.py",
                        "tests/test_strength_sb3_parts.py"),
                       exclude=("livetune_rl/sb3/__init__.py",
                                "livetune_rl/sb3/algorithm_knobs.py"),
                       deselect=_SB3_SLOW, sample=30, timeout=300, slack=60.0),
    "server": Target(("livetune_rl/server.py",),
                     ("tests/test_server.py", "tests/test_auth.py",
                      "tests/test_strength_server.py"),
                     functions=("_status_of", "_deny", "AccessInterceptor.__init__",
                                "AccessInterceptor._token_given",
                                "AccessInterceptor.intercept_service")),
    "options": Target(("livetune_rl/options.py",),
                      ("tests/test_server.py", "tests/test_strength_server.py",
                       "tests/test_strength_options.py"),
                      functions=("is_loopback", "check_serve_args",
                                 "ServeOptions.__post_init__")),
    "hungry_thirsty": Target(("envs/hungry_thirsty.py",),
                             ("tests/test_hungry_thirsty.py",
                              "tests/test_strength_hungry_thirsty.py"),
                             functions=("HungryThirstyEnv.__init__",
                                        "HungryThirstyEnv._wall_table",
                                        "HungryThirstyEnv._draw_layout",
                                        "HungryThirstyEnv._corner",
                                        "HungryThirstyEnv.get_layout",
                                        "HungryThirstyEnv.set_layout",
                                        "HungryThirstyEnv.reward_weights",
                                        "HungryThirstyEnv._obs", "HungryThirstyEnv._info",
                                        "HungryThirstyEnv.reset", "HungryThirstyEnv.step")),
}


def group_files(target: Target) -> list[str]:
    """The repository files of a group: its patterns expanded, minus its exclusions."""
    found: set[str] = set()
    for pattern in target.files:
        found.update(str(p.relative_to(REPO)) for p in REPO.glob(pattern) if p.is_file())
    return sorted(f for f in found
                  if not any(fnmatch.fnmatch(f, pattern) for pattern in target.exclude))


def staged_path(file: str) -> str:
    """Where a repository file lies in the staged copy (``envs/`` is ``livetune_rl.envs``)."""
    return "livetune_rl/envs/" + file[len("envs/"):] if file.startswith("envs/") else file


def _sync_tree(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source`` (``.py`` and data files), keeping the mtime of
    unchanged files so mutmut only regenerates the mutants of files that changed."""
    wanted: set[Path] = set()
    for path in source.rglob("*"):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        rel = path.relative_to(source)
        wanted.add(rel)
        dest = target / rel
        if dest.exists() and filecmp.cmp(path, dest, shallow=False):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        os.utime(dest)  # newer than any mutant generated from the old content
    if target.exists():
        for path in target.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts \
                    and path.relative_to(target) not in wanted:
                path.unlink()


def stage(name: str, target: Target, files: list[str]) -> Path:
    """Lay out (or refresh) the module's copy of the project and its mutmut configuration."""
    root = BUILD / name
    root.mkdir(parents=True, exist_ok=True)
    _sync_tree(REPO / "livetune_rl", root / "livetune_rl")
    _sync_tree(REPO / "envs", root / "livetune_rl" / "envs")
    _sync_tree(REPO / "tests", root / "tests")
    tests = [t for t in target.tests if (REPO / t.partition("::")[0]).exists()]
    selection = tests + [f"--deselect={d}" for d in target.deselect]
    config = {
        "source_paths": ["livetune_rl"],
        "only_mutate": [staged_path(f) for f in files],
        "pytest_add_cli_args_test_selection": selection,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", f"--timeout={target.timeout}"],
        # grpc and torch are not fork-safe once used: fork workers from a clean server process
        "process_isolation": "forkserver",
        "use_git_change_detection": False,
        "timeout_multiplier": target.slack,
    }
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    text = (REPO / "pyproject.toml").read_text() + "\n".join(lines) + "\n"
    pyproject = root / "pyproject.toml"
    if not pyproject.exists() or pyproject.read_text() != text:
        pyproject.write_text(text)
    return root


_GENERATE = """
import os
from mutmut.mutation.trampoline import set_mutant_under_test
import mutmut.__main__ as m
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
m.copy_src_dir(); m.copy_also_copy_files(); m.setup_source_paths(); m.create_mutants(1)
"""

_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
pairs = json.loads(sys.argv[1])
print(json.dumps({n: get_diff_for_mutant(n, path=path) for n, path in pairs.items()}))
"""


def _file_of(mutant: str, files: list[str]) -> str:
    """The staged file a mutant lives in: ``livetune_rl.sb3.callback.xǁ..`` -> its path."""
    module = mutant.partition("__mutmut_")[0].rpartition(".")[0]
    for file in files:
        if staged_path(file)[:-len(".py")].replace("/", ".") == module:
            return staged_path(file)
    raise LookupError(f"no file of the group holds {mutant}")


def _function_of(mutant: str) -> str:
    """``livetune_rl.values.xǁSpecǁaccept__mutmut_3`` -> ``Spec.accept``."""
    mangled = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("x_"):
        return mangled[2:]
    _, cls, method = mangled.split("ǁ")
    return f"{cls}.{method}"


def _results(root: Path, target: Target, files: list[str]) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for file in files:
        meta = root / "mutants" / (staged_path(file) + ".meta")
        if meta.exists():  # a file with nothing to mutate gets none
            codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    if target.functions is not None:
        codes = {k: v for k, v in codes.items() if _function_of(k) in target.functions}
    return codes


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # subprocesses the tests start import the mutated package too
    env["PYTHONPATH"] = str(root / "mutants")
    # one torch/BLAS thread per worker: two workers on two cores, and no spinning threads
    # eating the CPU-time limit mutmut sets on each mutant
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(name, "1")
    env.setdefault("LIVETUNE_HOME", str(root / "livetune-home"))
    return env


def run_module(name: str, target: Target, *, sample: int, seed: int, jobs: int,
               mutmut: str, verbose: bool, run: bool = True) -> dict[str, object]:
    start = time.monotonic()
    files = group_files(target)
    if not files:
        raise SystemExit(f"{name}: no file matches {target.files}")
    root = stage(name, target, files) if run else BUILD / name
    env = _env(root)
    if run:
        subprocess.run([sys.executable, "-c", _GENERATE], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    codes = _results(root, target, files)
    names = sorted(codes)
    chosen = names if sample <= 0 or sample >= len(names) else sorted(
        random.Random(f"{seed}:{name}").sample(names, sample))
    todo = [n for n in chosen if codes[n] not in KILLED_CODES | TIMEOUT_CODES] if run else []
    ran = len(todo)
    for _ in range(2 if todo else 0):
        out = None if verbose else subprocess.DEVNULL
        done = subprocess.run([mutmut, "run", "--max-children", str(jobs), *todo], cwd=root,
                              env=env, stdout=out, stderr=out)
        if done.returncode != 0:
            print(f"{name}: mutmut exited {done.returncode}; rerun with -v to see why",
                  file=sys.stderr)
        codes = _results(root, target, files)
        # a changed test selection or pytest option makes mutmut forget earlier results,
        # also of mutants this run did not name: run those again
        todo = [n for n in chosen if codes[n] is None]
        ran += len(todo)
        if not todo:
            break
    codes = _results(root, target, files)
    killed = [n for n in chosen if codes[n] in KILLED_CODES]
    timeouts = [n for n in chosen if codes[n] in TIMEOUT_CODES]
    survivors = [n for n in chosen if codes[n] not in KILLED_CODES | TIMEOUT_CODES]
    diffs: dict[str, str] = {}
    if survivors:
        shown = subprocess.run(
            [sys.executable, "-c", _DIFFS,
             json.dumps({n: _file_of(n, files) for n in survivors})], cwd=root,
            env=env, check=True, capture_output=True, text=True)
        diffs = json.loads(shown.stdout)
    detected = len(killed) + len(timeouts)
    return {
        "module": name, "files": files, "mutants": len(names), "sampled": len(chosen),
        "ran": ran, "killed": len(killed), "timeouts": len(timeouts),
        "survived": len(survivors), "score": detected / len(chosen) if chosen else 1.0,
        "seconds": round(time.monotonic() - start, 1),
        "survivors": {n: {"status": codes[n], "diff": diffs.get(n, "")} for n in survivors},
    }


_STATUS = {None: "not run", 0: "survived", 33: "no test reaches it", 5: "no test reaches it"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="GROUP",
                        help=f"groups to mutate (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--sample", type=int,
                        help="mutants drawn per group, seeded (0: every mutant; default 60, "
                             "30 for callback, every mutant of knobs and wrappers)")
    parser.add_argument("--seed", type=int, default=18, help="seed of the sample (default 18)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--no-run", action="store_true",
                        help="only report the results of earlier runs")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="show mutmut's output")
    args = parser.parse_args(argv)
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or \
        shutil.which("mutmut")
    if mutmut is None:
        parser.error("mutmut is not installed: pip install -e '.[dev]'")
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(TARGETS)}")
    modules = args.modules or list(TARGETS)
    results = []
    for name in modules:
        if args.fresh:
            shutil.rmtree(BUILD / name, ignore_errors=True)
        target = TARGETS[name]
        sample = target.sample if args.sample is None else args.sample
        result = run_module(name, target, sample=sample, seed=args.seed,
                            jobs=args.jobs, mutmut=mutmut, verbose=args.verbose,
                            run=not args.no_run)
        results.append(result)
        print(f"{name:16s} {result['score']:6.1%}  killed {result['killed']}"
              f"+{result['timeouts']} timeouts of {result['sampled']} sampled "
              f"({result['mutants']} mutants; {result['ran']} run now, "
              f"{result['seconds']} s)", flush=True)
        print(f"{'':16s} files: {', '.join(result['files'])}")  # type: ignore[arg-type]
        if target.functions is not None:
            print(f"{'':16s} only these functions: {', '.join(target.functions)}")
    print("\nsurviving mutants")
    for result in results:
        for mutant, info in result["survivors"].items():  # type: ignore[union-attr]
            status = _STATUS.get(info["status"], f"exit {info['status']}")
            print(f"\n--- {mutant} ({status})")
            print(info["diff"].rstrip())
    print(f"\nscore per module (seed {args.seed})")
    for result in results:
        print(f"  {result['module']:16s} {result['score']:6.1%} "
              f"({result['killed'] + result['timeouts']} killed of {result['sampled']} "
              f"sampled from {result['mutants']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
