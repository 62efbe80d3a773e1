"""The ``livetune`` command: find runs, list, get, set, fire, watch and read their history.

Every command talks to one run, chosen by ``--addr``, else ``--run NAME``, else
``$LIVETUNE_ADDR``, else the only live run on this machine. Errors print one line starting
with ``livetune: error:`` and exit non-zero (1 for a refused or failed request, 2 for usage).

Examples::

    livetune runs
    livetune ls
    livetune set learning_rate 1e-4
    livetune set learning_rate=1e-4 reward.hungry_thirsty=-0.5   # atomic: both or neither
    livetune fire checkpoint
    livetune watch --json
    livetune history --limit 20

This module imports neither torch nor stable-baselines3: it must start fast. The training
commands (``livetune train``) import them only when they run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .flags import add_options, from_args
from .values import LiveTuneError

if TYPE_CHECKING:
    from .discovery import RunRecord
    from .fanout import Outcome
    from .journal import ChangeEvent
    from .ray.directory import TrialEndpoint
    from .state import TriggerState, VariableState

# The run commands only talk to a run: for them the parser is built without the training
# commands, whose modules import much more (``livetune set`` must start fast; it is measured
# by benchmarks/cli_set.py), nor the panel (aiohttp). ``replay``, ``export``, ``diff`` and
# ``fork`` read run directories with train's config, so they are built with them.
TRAINING_COMMANDS = ("train", "train-vision", "panel", "replay", "export", "diff", "fork")
RUN_COMMANDS = ("runs", "ls", "get", "set", "fire", "watch", "history", "undo", "tune", "demo")

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(LiveTuneError):
    """Bad command-line input found after argparse (exit code 2)."""


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    delta = max(0.0, time.time() - seconds)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    if delta < 86400:
        return f"{delta / 3600:.1f}h ago"
    return f"{delta / 86400:.1f}d ago"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines)


def _var_json(v: VariableState) -> dict[str, Any]:
    """Every field of the state record, in its order, then ``pending``."""
    record = {f.name: getattr(v, f.name) for f in fields(v)}
    return {**record, "type": v.type.value, "choices": list(v.choices), "pending": v.pending}


def _trigger_json(t: TriggerState) -> dict[str, Any]:
    return {"name": t.name, "type": "trigger", "help": t.help, "fires": t.fires,
            "handled": t.handled, "pending": t.fires - t.handled, "version": t.version,
            "last_fired": t.last_fired, "source": t.source}


def _rule(v: VariableState) -> str:
    if v.choices:
        return "{" + ",".join(_fmt(c) for c in v.choices) + "}"
    if v.min is None and v.max is None:
        return ""
    return f"[{_fmt(v.min) if v.min is not None else '-inf'}, " \
           f"{_fmt(v.max) if v.max is not None else 'inf'}]"


def _status(v: VariableState) -> str:
    if not v.deferred:
        return "live"
    if v.pending:
        return "pending"
    return f"applied@{v.applied_step}" if v.applied_step is not None else "applied"


def _plain(data: Any) -> Any:
    """For display: numbers that came through protobuf's Struct (always doubles) shown short."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, float):
        return int(data) if data.is_integer() and abs(data) < 2**53 else float(f"{data:.6g}")
    return data


def _brief(data: Any) -> Any:
    """``data`` with every list shown as its length (per-episode series stay readable; the
    full record is in ``--json``)."""
    if isinstance(data, dict):
        return {k: _brief(v) for k, v in data.items()}
    if isinstance(data, list):
        return f"<{len(data)} values>"
    return data


def _event_line(e: ChangeEvent) -> str:
    when = dt.datetime.fromtimestamp(e.t).strftime("%Y-%m-%d %H:%M:%S")
    step = f" step={e.step}" if e.step is not None else ""
    if e.kind == "set":
        what = f"set {e.name} {_fmt(e.old)} -> {_fmt(e.new)}"
    elif e.kind == "fire":
        what = f"fire {e.name} (#{e.new})"
    elif e.kind == "applied":
        what = f"applied {e.name} = {_fmt(e.new)} (v{e.applies})"
        epoch, iteration = e.data.get("epoch"), e.data.get("iteration")
        if isinstance(epoch, int) and isinstance(iteration, int):  # a train-vision safe point
            what += f" at epoch {epoch} iteration {iteration}"
    elif e.kind == "start":
        what = f"start {json.dumps(_plain(e.data.get('values', {})), sort_keys=True)}"
    else:
        what = f"event {e.name} {json.dumps(_brief(_plain(e.data)), sort_keys=True)}"
    source = f"  by {e.source}" if e.source and e.kind in ("set", "fire") else ""
    return f"v{e.v:<5} {when}{step}  {what}{source}"


def _print_json(obj: object) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _parse_assignments(words: Sequence[str]) -> dict[str, str]:
    """``NAME VALUE`` or ``NAME=VALUE ...`` (mixing is allowed after a first NAME VALUE pair)."""
    words = list(words)
    out: dict[str, str] = {}
    if len(words) >= 2 and "=" not in words[0]:
        out[words[0]] = words[1]
        words = words[2:]
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise UsageError(f"cannot read {word!r}: use NAME VALUE or NAME=VALUE ...")
        if name in out:
            raise UsageError(f"{name} is given twice")
        out[name] = value
    if not out:
        raise UsageError("nothing to set: use NAME VALUE or NAME=VALUE ...")
    return out


# ------------------------------------------------------------------------- commands
def cmd_runs(args: argparse.Namespace) -> int:
    if args.ray:
        return _ray_runs_table(args)
    from . import discovery
    from .lineage import Lineage

    runs = discovery.list_runs()
    # a run directory's config.json says where the run comes from (replay, fork)
    lineages = [Lineage.of_run(os.path.dirname(r.journal)) if r.journal else None
                for r in runs]
    if args.json:
        _print_json([{"run": r.run, "address": r.address, "pid": r.pid, "started": r.started,
                      "uptime": r.uptime, "journal": r.journal,
                      "token_required": r.token_required, "tls": r.tls,
                      "lineage": None if lineage is None else lineage.to_data()}
                     for r, lineage in zip(runs, lineages, strict=True)])
        return 0
    if not runs:
        print("no live runs on this machine")
        return 0
    rows = [[r.run, r.address, str(r.pid), _duration(r.uptime),
             ("token " if r.token_required else "") + ("tls" if r.tls else "")]
            for r in runs]
    header = ["RUN", "ADDRESS", "PID", "UPTIME", "AUTH"]
    if any(lineages):  # a column only when a run replays or forks another
        for row, lineage in zip(rows, lineages, strict=True):
            row.append("-" if lineage is None else lineage.describe())
        header.append("LINEAGE")
    print(_table(rows, header))
    return 0


def _ray_trials(args: argparse.Namespace) -> list[TrialEndpoint]:
    """The live trials of the Ray cluster ``--ray`` names."""
    try:
        from .ray.directory import list_trials
    except ImportError as exc:
        raise LiveTuneError(f"--ray needs Ray ({exc}); install it with pip install "
                            "'livetune_rl[ray]'") from None
    try:
        return list_trials(None if args.ray == "auto" else args.ray)
    except ConnectionError as exc:
        raise LiveTuneError(f"cannot reach the Ray cluster at {args.ray}: {exc}") from None
    except TimeoutError as exc:
        raise LiveTuneError(str(exc)) from None


def _ray_runs_table(args: argparse.Namespace) -> int:
    trials = _ray_trials(args)
    if args.json:
        _print_json([{"run": t.run, "experiment": t.experiment, "trial_id": t.trial_id,
                      "trial_name": t.trial_name, "node": t.node, "address": t.address,
                      "pid": t.pid, "started": t.started, "journal": t.journal,
                      "token_required": t.token_required} for t in trials])
        return 0
    if not trials:
        print(f"no live trials in the Ray cluster at {args.ray}")
        return 0
    print(_table([[t.run, t.trial_id, t.node, t.address, str(t.pid),
                   _duration(time.time() - t.started), "token" if t.token_required else ""]
                  for t in trials], ["RUN", "TRIAL ID", "NODE", "ADDRESS", "PID", "UPTIME",
                                     "AUTH"]))
    return 0


def _ray_matches(args: argparse.Namespace) -> list[RunRecord]:
    """The trials ``--run`` names among the cluster's live trials: a glob over
    ``EXPERIMENT/TRIAL``, or one experiment/trial name, trial name or trial id."""
    from .fanout import is_pattern, matching_runs

    trials = _ray_trials(args)
    if args.run and is_pattern(args.run):
        return matching_runs(args.run, [t.record() for t in trials])
    if args.run:
        found = [t for t in trials if args.run in (t.run, t.trial_name, t.trial_id)]
    else:
        found = trials if len(trials) == 1 else []
    if not found:
        known = ", ".join(t.run for t in trials) or "none"
        what = f"named {args.run!r}" if args.run else "chosen: give --run (a name or a glob)"
        raise LiveTuneError(f"no live trial {what} in the Ray cluster at {args.ray} "
                            f"(live trials: {known})")
    return [t.record() for t in found]


def _client(args: argparse.Namespace, name: str | None = None,
            run: RunRecord | None = None) -> Any:
    """A client of the run the options name (or of the run ``run`` records, instead)."""
    if run is None and args.ray and not args.addr:
        found = _ray_matches(args)
        if len(found) > 1:
            raise UsageError(f"--run {args.run!r} matches {len(found)} trials; this command "
                             "takes one (ls, set, fire and history take a glob)")
        run = found[0]
    from .client import connect
    from .tokens import token_from

    token = token_from(args.token, args.token_file)
    return connect(args.addr, run=run or args.run, token=token, tls_ca=args.cacert,
                   timeout=args.timeout, name=name)


def _matched_runs(args: argparse.Namespace) -> list[RunRecord] | None:
    """The live runs a glob ``--run`` names (``--run 'seed-*'``), or None when the command
    targets one run (no ``--run``, a plain name or pid, or an explicit ``--addr``)."""
    from .fanout import is_pattern

    if args.addr:
        return None
    if args.ray:
        return _ray_matches(args)
    if not args.run or not is_pattern(args.run):
        return None
    from . import discovery
    from .fanout import matching_runs

    return matching_runs(args.run, discovery.list_runs())


def _each_run(args: argparse.Namespace, runs: list[RunRecord],
              call: Callable[[Any], Any]) -> list[Outcome[Any]]:
    """``call(client)`` on a client of each run in ``runs``, side by side."""
    from .fanout import fan_out

    def one(run: RunRecord) -> Any:
        with _client(args, run=run) as client:
            return call(client)

    return fan_out(runs, one)


def _report(args: argparse.Namespace, outcomes: list[Outcome[Any]],
            lines: Callable[[Any], list[str]], to_json: Callable[[Any], Any]) -> int:
    """One line per answer of each run (``RUN: ...``) or one JSON list; exit status 1 when a
    run refused or could not be reached, after every other run's answer is printed."""
    if args.json:
        _print_json([{"run": o.run, "address": o.address, "ok": o.ok,
                      **({"result": to_json(o.result)} if o.ok else
                         {"error": o.error, "code": o.code})} for o in outcomes])
    else:
        for o in outcomes:
            if o.ok:
                for line in lines(o.result):
                    print(f"{o.run}: {line}")
            else:
                print(f"{o.run}: refused: {o.error}")
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_ls(args: argparse.Namespace) -> int:
    runs = _matched_runs(args)
    if runs is not None:
        return _ls_runs(args, runs)
    with _client(args) as client:
        state = client.list(args.patterns)
    if args.json:
        _print_json({"run": state.run, "pid": state.pid, "address": state.address,
                     "version": state.state.version, "step": state.state.step,
                     "variables": [_var_json(v) for v in state.state.variables],
                     "triggers": [_trigger_json(t) for t in state.state.triggers]})
        return 0
    step = f", step {state.state.step}" if state.state.step is not None else ""
    print(f"run {state.run} at {state.address} (pid {state.pid}, version "
          f"{state.state.version}{step})")
    rows = [[v.name, v.type.value, _fmt(v.value), _rule(v), str(v.version),
             _ago(v.changed_at) if v.version else "-", _status(v), v.help]
            for v in state.state.variables]
    rows += [[t.name, "trigger", f"fired {t.fires}x", "", str(t.version),
              _ago(t.last_fired), f"{t.fires - t.handled} pending" if t.fires > t.handled
              else "idle", t.help] for t in state.state.triggers]
    print(_table(rows, ["NAME", "TYPE", "VALUE", "BOUNDS", "VERSION", "CHANGED", "STATUS",
                        "HELP"]))
    return 0


def _ls_runs(args: argparse.Namespace, runs: list[RunRecord]) -> int:
    """``livetune ls --run GLOB``: one table of every matching run's variables and triggers."""
    outcomes = _each_run(args, runs, lambda client: client.list(args.patterns))
    if args.json:
        return _report(args, outcomes, lambda _: [], lambda state: {
            "version": state.state.version, "step": state.state.step,
            "variables": [_var_json(v) for v in state.state.variables],
            "triggers": [_trigger_json(t) for t in state.state.triggers]})
    rows = []
    for o in outcomes:
        if not o.ok:
            rows.append([o.run, "-", "-", "-", "-", f"refused: {o.error}"])
            continue
        rows += [[o.run, v.name, _fmt(v.value), str(v.version), _status(v), v.help]
                 for v in o.result.state.variables]
        rows += [[o.run, t.name, f"fired {t.fires}x", str(t.version),
                  f"{t.fires - t.handled} pending" if t.fires > t.handled else "idle", t.help]
                 for t in o.result.state.triggers]
    print(_table(rows, ["RUN", "NAME", "VALUE", "VERSION", "STATUS", "HELP"]))
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = [client.get(name) for name in args.names]
    if args.json:
        _print_json(_var_json(found[0]) if len(found) == 1 else [_var_json(v) for v in found])
    elif len(found) == 1:
        print(_fmt(found[0].value))
    else:
        for v in found:
            print(f"{v.name}={_fmt(v.value)}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    values = _parse_assignments(args.assignments)
    expected: dict[str, int] = {}
    for item in args.expect or ():
        name, sep, version = item.partition("=")
        if not sep or not version.isdigit():
            raise UsageError(f"--expect takes NAME=VERSION, not {item!r}")
        expected[name] = int(version)
    runs = _matched_runs(args)
    if runs is not None:  # each run sets all of them or none; runs answer on their own
        outcomes = _each_run(args, runs, lambda c: c.set_text(values, expected=expected or None))
        return _report(args, outcomes, lambda changes: [_set_line(e) for e in changes],
                       lambda changes: [e.to_record() for e in changes])
    with _client(args) as client:
        changes = client.set_text(values, expected=expected or None)
    if args.json:
        _print_json([e.to_record() for e in changes])
    else:
        for e in changes:
            print(_set_line(e))
    return 0


def _set_line(e: ChangeEvent) -> str:
    if e.unchanged:
        return f"{e.name}: unchanged, already {_fmt(e.new)} (version {e.v}; nothing journaled)"
    return f"{e.name}: {_fmt(e.old)} -> {_fmt(e.new)} (version {e.v})"


def cmd_fire(args: argparse.Namespace) -> int:
    runs = _matched_runs(args)
    if runs is not None:
        outcomes = _each_run(args, runs, lambda c: [c.fire(name) for name in args.names])
        return _report(args, outcomes, lambda events: [_fire_line(e) for e in events],
                       lambda events: [e.to_record() for e in events])
    with _client(args) as client:
        events = [client.fire(name) for name in args.names]
    for e in events:
        if args.json:
            _print_json(e.to_record())
        else:
            print(_fire_line(e))
    return 0


def _fire_line(e: ChangeEvent) -> str:
    if e.data.get("coalesced"):
        return (f"fired {e.name}: joined fire #{e.new}, which the run has not handled yet "
                f"(version {e.v}); its action runs once, after this fire")
    return f"fired {e.name} (fire #{e.new}, version {e.v})"


def cmd_undo(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError(f"undo {args.count}: give how many of the last changes to undo (1 "
                         "or more)")
    with _client(args) as client:
        done = client.undo(args.count, versions=args.version or (), force=args.force)
    if args.json:
        _print_json({"undone": list(done.versions),
                     "changes": [e.to_record() for e in done.changes]})
        return 0
    for e in done.changes:
        if e.unchanged:
            print(f"{e.name}: unchanged, already {_fmt(e.new)}")
        else:
            print(f"{e.name}: {_fmt(e.old)} -> {_fmt(e.new)} (version {e.v})")
    print(f"undid {', '.join(f'v{v}' for v in done.versions)}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            for item in client.watch(args.patterns):
                if item.snapshot is not None:
                    s = item.snapshot
                    if args.json:
                        _print_json({"snapshot": {
                            "run": s.run, "version": s.state.version,
                            "variables": [_var_json(v) for v in s.state.variables],
                            "triggers": [_trigger_json(t) for t in s.state.triggers]}})
                    else:
                        values = " ".join(f"{v.name}={_fmt(v.value)}" for v in s.state.variables)
                        print(f"watching run {s.run} at version {s.state.version}: {values}",
                              flush=True)
                elif item.change is not None:
                    if args.json:
                        _print_json(item.change.to_record())
                    else:
                        print(_event_line(item.change), flush=True)
                elif item.lagged is not None:
                    if args.json:
                        _print_json({"lagged": item.lagged})
                    else:
                        print(f"!! {item.lagged}", flush=True)
        except KeyboardInterrupt:
            return 0
    print("livetune: the run ended the stream", file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    if args.file:  # a finished (or unreachable) run: read its journal directly
        import fnmatch

        from .journal import iter_journal, read_journal_tail

        if not os.path.exists(args.file):
            raise LiveTuneError(f"no journal at {args.file}")

        def wanted(name: str) -> bool:
            return not args.patterns or any(fnmatch.fnmatchcase(name, p) for p in args.patterns)

        if args.limit:  # read from the end: the cost follows --limit, not the journal's size
            events, _ = read_journal_tail(args.file, since=args.since, limit=args.limit,
                                          match=wanted)
        else:  # corrupt records are skipped with a warning naming their line
            events = [e for e in iter_journal(args.file) if e.v > args.since and wanted(e.name)]
    elif (runs := _matched_runs(args)) is not None:
        return _history_runs(args, runs)
    else:
        with _client(args) as client:
            events = client.history(since=args.since, limit=args.limit,
                                    patterns=args.patterns)
    for e in events:
        if args.json:
            _print_json(e.to_record())
        else:
            print(_event_line(e))
    return 0


def _history_runs(args: argparse.Namespace, runs: list[RunRecord]) -> int:
    """``livetune history --run GLOB``: the matching runs' journals in one time order, each
    record led by its run's name (``--since`` and ``--limit`` apply to each run)."""
    outcomes = _each_run(args, runs, lambda client: client.history(
        since=args.since, limit=args.limit, patterns=args.patterns))
    merged = sorted(((e.t, o.run, e) for o in outcomes if o.ok for e in o.result),
                    key=lambda item: item[:2])
    for _, run, e in merged:
        if args.json:
            _print_json({"run": run, **e.to_record()})
        else:
            print(f"{run}: {_event_line(e)}")
    for o in outcomes:
        if not o.ok:
            print(f"{o.run}: refused: {o.error}", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuner import PolicyConfig, Tuner

    config = from_args(PolicyConfig, args)
    with _client(args, name="livetune-tune") as client:
        decisions = Tuner(client, config, event=args.event, log=args.log).run(args.seconds)
    actions = [d for d in decisions if d.get("action")]
    print(f"tuner: {len(decisions) - len(actions)} evaluations seen, {len(actions)} changes made")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(seconds=args.seconds, address=args.bind, run=args.run_name)


# ------------------------------------------------------------------------- parser
def _target_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options that pick a run. They are accepted before the command
    (``livetune --run x ls``) and after it (``livetune ls --run x``): the subcommand copies use
    SUPPRESS defaults so they only override what was given before the command."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    target = parser.add_argument_group("which run")
    target.add_argument("--addr", default=default(None),
                        help="address of the run (host:port or unix:/path); "
                             "default: $LIVETUNE_ADDR or the only live run")
    target.add_argument("--run", default=default(None),
                        help="name (or pid) of a live run; for ls, set, fire and history a "
                             "glob ('seed-*') targets every live run it matches")
    target.add_argument("--ray", nargs="?", const="auto", default=default(None),
                        metavar="ADDRESS",
                        help="find the run among the live trials of a Ray cluster (ADDRESS: "
                             "its GCS HOST:PORT or ray://...; alone: the local cluster); "
                             "--run then names EXPERIMENT/TRIAL, a trial name or id, or a glob")
    target.add_argument("--token-file", default=default(None), metavar="FILE",
                        help="read the bearer token from FILE (yours, mode 0600 or 0400); "
                             "default: $LIVETUNE_TOKEN")
    target.add_argument("--token", default=default(None),
                        help="bearer token on the command line: visible to every user in "
                             "ps, so warned about; prefer --token-file or $LIVETUNE_TOKEN")
    target.add_argument("--cacert", default=default(None),
                        help="CA certificate (PEM) of a run that serves TLS "
                             "(default: $LIVETUNE_CACERT)")
    target.add_argument("--timeout", type=float, default=default(5.0), help="seconds per call")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="machine-readable output")


def build_parser(training: bool = True, tuning: bool | None = None) -> argparse.ArgumentParser:
    """The ``livetune`` parser; without ``training``, no ``train``/``train-vision`` command
    (their modules are not imported); without ``tuning`` (default: ``training``), ``tune``
    has no options (the tuner package is not imported)."""
    tuning = training if tuning is None else tuning
    common = argparse.ArgumentParser(add_help=False)
    _target_options(common, suppress=True)

    parser = argparse.ArgumentParser(
        prog="livetune",
        description="Change a running training job: list, set and watch its live variables.",
        epilog="Examples: livetune ls | livetune set learning_rate 1e-4 | "
               "livetune set reward.hungry_thirsty=-0.5 reward.scale=5 | "
               "livetune fire checkpoint",
    )
    _target_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("runs", cmd_runs, "list the live runs on this machine")
    p = add("ls", cmd_ls, "list variables and triggers with values, bounds and versions")
    p.add_argument("patterns", nargs="*", help="glob patterns, e.g. 'reward.*'")
    p = add("get", cmd_get, "print the value of one or more variables")
    p.add_argument("names", nargs="+", help="variable names, e.g. learning_rate")
    p = add("set", cmd_set, "set variables atomically: NAME VALUE or NAME=VALUE ...")
    p.add_argument("assignments", nargs="+", metavar="NAME VALUE | NAME=VALUE",
                   help="e.g. learning_rate 1e-4, or reward.hungry_thirsty=-0.5 reward.scale=5")
    p.add_argument("--expect", action="append", metavar="NAME=VERSION",
                   help="compare-and-set: refuse unless NAME is at VERSION")
    p = add("fire", cmd_fire, "fire one or more triggers")
    p.add_argument("names", nargs="+", help="trigger names, e.g. checkpoint evaluate stop")
    p = add("undo", cmd_undo, "revert the last N changes of values (never fires) as new "
                              "sets that name the versions they undo")
    p.add_argument("count", nargs="?", type=int, default=1, metavar="N",
                   help="how many of the last changes not undone yet (default: 1; undo "
                        "again to go further back)")
    p.add_argument("--version", type=int, action="append", metavar="V",
                   help="undo the set of this journal version instead (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="revert even where a later change touched the same variable")
    p = add("watch", cmd_watch, "stream changes as they happen (Ctrl-C to stop)")
    p.add_argument("patterns", nargs="*", help="glob patterns")
    p = add("history", cmd_history, "print the run's journal: who changed what, when")
    p.add_argument("patterns", nargs="*", help="glob patterns")
    p.add_argument("--since", type=int, default=0, help="only versions after this one")
    p.add_argument("--limit", type=int, default=0, help="only the newest N records")
    p.add_argument("--file", default=None, metavar="JOURNAL",
                   help="read a journal file instead (a run that has ended)")

    p = add("tune", cmd_tune, "automated tuner: change knobs when an evaluated metric stalls")
    if tuning:
        from .tuner.policy import PolicyConfig  # stdlib only: no grpc, no torch

        add_options(p, PolicyConfig)
    p.add_argument("--event", default="evaluate", help="name of the evaluation events")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--log", default=None, help="JSONL file of observations and decisions")

    p = sub.add_parser("demo", help="run a small live-tunable loop (no torch needed)")
    p.add_argument("--seconds", type=float, default=60.0, help="run this long")
    p.add_argument("--bind", default=None, help="address to serve on")
    p.add_argument("--run-name", default="demo", help="the name livetune runs shows")
    p.set_defaults(func=cmd_demo)

    if training:
        from .train import add_parser as add_train  # argparse only: no torch/SB3 imported

        add_train(sub)
        from .vision.cli import add_parser as add_train_vision  # argparse only: no torch

        add_train_vision(sub, common)
        from .panel.cli import add_parser as add_panel  # argparse only: no aiohttp

        add_panel(sub)
        from .replay_cli import add_parser as add_replay  # argparse only: no torch/SB3

        add_replay(sub)
        from .export import add_parser as add_export  # no torch/SB3

        add_export(sub)
        from .diff import add_parser as add_diff  # no torch/SB3

        add_diff(sub)
        from .fork import add_parser as add_fork  # no torch/SB3

        add_fork(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpWithDefaults
    return parser


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help states it already or the
    option is a switch (``--no-progress``: the flag says what it does)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.nargs == 0
                or action.default in (None, [], {}, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def _needs_training_parser(argv: Sequence[str]) -> bool:
    """False when ``argv`` names a command of :data:`RUN_COMMANDS` and neither a training
    command nor help: then the parsers of ``train`` and ``train-vision`` cannot be reached
    (and an error lists the same commands as always, as those are parsed in full)."""
    words = set(argv)
    return not words & set(RUN_COMMANDS) or bool(
        words & {*TRAINING_COMMANDS, "-h", "--help"})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    training = _needs_training_parser(argv)
    parser = build_parser(training=training, tuning=training or "tune" in argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"livetune: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LiveTuneError as exc:
        print(f"livetune: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"livetune: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
