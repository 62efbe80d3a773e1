"""Mutation testing of the core modules: how many planted bugs the tests catch.

Runs mutmut (pinned in the ``dev`` extra) over each core module with that module's tests only,
on a seeded random sample of its mutants, and prints the score per module and every surviving
mutant as a diff. Not part of CI: it takes minutes, not seconds.

Each module is mutated in its own copy of the project under ``build/mutation/<module>/``
(mutmut's ``mutants/`` folder lives there), so the working tree is never touched and runs are
incremental: a mutant already killed is not run again unless its function changed; survivors
and new mutants are. ``--fresh`` starts over.

Usage (from the repository root, with the dev extra installed)::

    nice -n 10 .venv/bin/python benchmarks/mutation.py                 # every module
    nice -n 10 .venv/bin/python benchmarks/mutation.py values knobs    # some modules
    nice -n 10 .venv/bin/python benchmarks/mutation.py --sample 0      # every mutant

A mutant counts as killed when a test fails (or times out) with it in place; the score is
killed / (killed + survived), where "survived" includes mutants no selected test reaches.

The two SB3 modules (``algorithm_knobs``, ``callback``) train real models for every mutant: run
them on their own, on an otherwise idle machine. Run alongside other heavy jobs, mutmut's
CPU-time limit ended their workers (SIGXCPU), which says nothing about the tests; check the
timeout count the script prints before reading their score.
"""

from __future__ import annotations

import argparse
import filecmp
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
    """One module to mutate: its file, the functions to mutate (None: all) and its tests."""

    file: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] | None = None
    deselect: tuple[str, ...] = ()
    sample: int = 60  # mutants drawn when --sample is not given
    timeout: int = 60  # seconds per test: a mutant that deadlocks uses no CPU, so mutmut's
    # CPU-time limit never ends it


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
    "values": Target("livetune_rl/values.py",
                     ("tests/test_values.py", "tests/test_strength_values.py")),
    "journal": Target("livetune_rl/journal.py",
                      ("tests/test_journal.py", "tests/test_strength_journal.py")),
    "registry": Target("livetune_rl/registry.py",
                       ("tests/test_registry.py", "tests/test_strength_registry.py",
                        "tests/test_concurrency.py::test_threads_local_sets",
                        "tests/test_concurrency.py::"
                        "test_change_event_round_trips_through_journal_under_load",
                        # the out-of-process path (a link to the serving child process)
                        "tests/test_sidecar.py::"
                        "test_sets_and_fires_made_by_the_training_process_go_through_the_child",
                        "tests/test_sidecar.py::test_trigger_fire_is_seen_once_and_its_handling_"
                        "journaled",
                        "tests/test_sidecar.py::test_definitions_made_after_serving_are_served")),
    "knobs": Target("livetune_rl/knobs.py",
                    ("tests/test_registry.py", "tests/test_strength_knobs.py")),
    "wrappers": Target("livetune_rl/wrappers.py",
                       ("tests/test_wrappers.py", "tests/test_strength_wrappers.py")),
    "algorithm_knobs": Target("livetune_rl/sb3/algorithm_knobs.py",
                              ("tests/test_sb3.py", "tests/test_strength_sb3.py"),
                              deselect=_SB3_SLOW, timeout=300),
    # its tests train real SB3 models (seconds per mutant): a smaller sample
    "callback": Target("livetune_rl/sb3/callback.py",
                       ("tests/test_sb3.py", "tests/test_strength_sb3.py"),
                       deselect=_SB3_SLOW, sample=30, timeout=300),
    "server": Target("livetune_rl/server.py",
                     ("tests/test_server.py", "tests/test_auth.py",
                      "tests/test_strength_server.py"),
                     functions=("_status_of", "_deny", "AccessInterceptor.__init__",
                                "AccessInterceptor._token_given",
                                "AccessInterceptor.intercept_service")),
    "options": Target("livetune_rl/options.py",
                      ("tests/test_server.py", "tests/test_strength_server.py"),
                      functions=("is_loopback", "check_serve_args",
                                 "ServeOptions.__post_init__")),
    "hungry_thirsty": Target("envs/hungry_thirsty.py",
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


def stage(name: str, target: Target) -> Path:
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
        "only_mutate": [staged_path(target.file)],
        "pytest_add_cli_args_test_selection": selection,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", f"--timeout={target.timeout}"],
        # grpc and torch are not fork-safe once used: fork workers from a clean server process
        "process_isolation": "forkserver",
        "use_git_change_detection": False,
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
path = sys.argv[1]
print(json.dumps({n: get_diff_for_mutant(n, path=path) for n in sys.argv[2:]}))
"""


def _function_of(mutant: str) -> str:
    """``livetune_rl.values.xǁSpecǁaccept__mutmut_3`` -> ``Spec.accept``."""
    mangled = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("x_"):
        return mangled[2:]
    _, cls, method = mangled.split("ǁ")
    return f"{cls}.{method}"


def _results(root: Path, target: Target) -> dict[str, int | None]:
    meta = root / "mutants" / (staged_path(target.file) + ".meta")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    if target.functions is not None:
        codes = {k: v for k, v in codes.items() if _function_of(k) in target.functions}
    return codes


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # subprocesses the tests start import the mutated package too
    env["PYTHONPATH"] = str(root / "mutants")
    env.setdefault("LIVETUNE_HOME", str(root / "livetune-home"))
    return env


def run_module(name: str, target: Target, *, sample: int, seed: int, jobs: int,
               mutmut: str, verbose: bool, run: bool = True) -> dict[str, object]:
    start = time.monotonic()
    root = stage(name, target) if run else BUILD / name
    env = _env(root)
    if run:
        subprocess.run([sys.executable, "-c", _GENERATE], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    codes = _results(root, target)
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
        codes = _results(root, target)
        # a changed test selection or pytest option makes mutmut forget earlier results,
        # also of mutants this run did not name: run those again
        todo = [n for n in chosen if codes[n] is None]
        ran += len(todo)
        if not todo:
            break
    codes = _results(root, target)
    killed = [n for n in chosen if codes[n] in KILLED_CODES]
    timeouts = [n for n in chosen if codes[n] in TIMEOUT_CODES]
    survivors = [n for n in chosen if codes[n] not in KILLED_CODES | TIMEOUT_CODES]
    diffs: dict[str, str] = {}
    if survivors:
        shown = subprocess.run(
            [sys.executable, "-c", _DIFFS, staged_path(target.file), *survivors], cwd=root,
            env=env, check=True, capture_output=True, text=True)
        diffs = json.loads(shown.stdout)
    detected = len(killed) + len(timeouts)
    return {
        "module": name, "file": target.file, "mutants": len(names), "sampled": len(chosen),
        "ran": ran, "killed": len(killed), "timeouts": len(timeouts),
        "survived": len(survivors), "score": detected / len(chosen) if chosen else 1.0,
        "seconds": round(time.monotonic() - start, 1),
        "survivors": {n: {"status": codes[n], "diff": diffs.get(n, "")} for n in survivors},
    }


_STATUS = {None: "not run", 0: "survived", 33: "no test reaches it", 5: "no test reaches it"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"modules to mutate (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--sample", type=int,
                        help="mutants drawn per module, seeded (0: every mutant; default 60, "
                             "30 for callback)")
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
