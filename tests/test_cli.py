"""The ``livetune`` command, run as a subprocess against an in-process server."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LIVETUNE, PYTHON, Children, make_registry

import livetune_rl as lt


@pytest.fixture
def cli(sub_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(LIVETUNE), *args], env=env or sub_env, text=True,
                              capture_output=True, timeout=30)

    return run


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("livetune: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_does_not_import_torch_or_sb3(cli: Any, sub_env: dict[str, str]) -> None:
    proc = cli("--help")
    assert proc.returncode == 0 and "runs" in proc.stdout and "watch" in proc.stdout
    code = ("import sys, livetune_rl.cli as c; c.build_parser(); "
            "heavy = [m for m in ('torch', 'stable_baselines3', 'gymnasium', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    check = subprocess.run([PYTHON, "-c", code], env=sub_env, text=True, capture_output=True,
                           timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "[]", check


def test_run_commands_import_neither_the_server_nor_the_training_modules(
        served: Any, sub_env: dict[str, str]) -> None:
    """``livetune get/set/ls`` must start fast: they load the client, not the server, the
    training commands or torch (their parsers are built only when named, or for --help)."""
    code = ("import sys, livetune_rl.cli as c\n"
            "for argv in (['set', '--addr', sys.argv[1], 'learning_rate', '0.25'],\n"
            "             ['get', '--addr', sys.argv[1], 'learning_rate'],\n"
            "             ['ls', '--addr', sys.argv[1]]):\n"
            "    assert c.main(argv) == 0, argv\n"
            "heavy = ('livetune_rl.server', 'livetune_rl.sidecar', 'livetune_rl.train',\n"
            "         'livetune_rl.vision', 'livetune_rl.tuner', 'torch', 'numpy')\n"
            "print([m for m in heavy if m in sys.modules])\n")
    proc = subprocess.run([PYTHON, "-c", code, served.address], env=sub_env, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    assert served.registry.variable("learning_rate").value == 0.25


def test_importing_the_package_imports_none_of_its_modules(sub_env: dict[str, str]) -> None:
    """``import livetune_rl`` loads names on first use, so the CLI and the client pay only for
    what they touch; the lazy names still resolve to the real objects."""
    code = ("import sys, livetune_rl as lt\n"
            "print(sorted(m for m in sys.modules if m.startswith('livetune_rl.')))\n"
            "from livetune_rl.registry import Registry\n"
            "from livetune_rl.values import VarType\n"
            "assert lt.Registry is Registry and lt.VarType is VarType\n"
            "assert all(hasattr(lt, n) for n in lt.__all__)\n")
    proc = subprocess.run([PYTHON, "-c", code], env=sub_env, text=True, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_run_commands_are_all_the_commands_but_training() -> None:
    from livetune_rl import cli as cli_module

    def commands(parser: Any) -> set[str]:
        (sub,) = [a for a in parser._actions if a.dest == "command"]
        return set(sub.choices)

    light, full = commands(cli_module.build_parser(False)), commands(cli_module.build_parser())
    assert light == set(cli_module.RUN_COMMANDS)
    assert full == light | set(cli_module.TRAINING_COMMANDS)
    assert not cli_module._needs_training_parser(["--addr", "x", "set", "lr", "1"])
    assert cli_module._needs_training_parser(["set", "--help"])
    assert cli_module._needs_training_parser(["trian"])  # an error lists every command
    assert cli_module._needs_training_parser(["train", "--steps", "1"])


def test_runs(cli: Any, served: Any) -> None:
    proc = cli("runs")
    assert proc.returncode == 0
    assert "RUN" in proc.stdout and "test" in proc.stdout and served.address in proc.stdout
    (run,) = json.loads(cli("runs", "--json").stdout)
    assert run["run"] == "test" and run["address"] == served.address
    assert run["token_required"] is False and run["uptime"] >= 0


def test_runs_when_none(cli: Any) -> None:
    proc = cli("runs")
    assert proc.returncode == 0 and "no live runs" in proc.stdout
    assert json.loads(cli("runs", "--json").stdout) == []


def test_ls_text_json_and_patterns(cli: Any, served: Any) -> None:
    served.registry.step = 5
    proc = cli("ls")  # the only live run is found through discovery
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"run test at {served.address}") and "step 5" in lines[0]
    assert lines[1].split()[:3] == ["NAME", "TYPE", "VALUE"]
    row = next(line for line in lines if line.startswith("learning_rate"))
    assert "float" in row and "0.0003" in row and "[1e-07, 1]" in row
    assert any(line.startswith("checkpoint") and "trigger" in line for line in lines)
    data = json.loads(cli("ls", "--json", "reward.*").stdout)
    assert [v["name"] for v in data["variables"]] == ["reward.hungry", "reward.scale"]
    assert data["variables"][0]["min"] == -10.0 and data["triggers"] == []
    assert data["step"] == 5


def test_get(cli: Any, served: Any) -> None:
    assert cli("get", "batch_size").stdout == "64\n"
    assert cli("get", "batch_size", "use_amp").stdout == "batch_size=64\nuse_amp=false\n"
    data = json.loads(cli("get", "--json", "optimizer").stdout)
    assert data["value"] == "adam" and data["choices"] == ["adam", "sgd"]
    line = _one_error_line(cli("get", "learning_rat"))
    assert "did you mean learning_rate" in line


def test_set_forms_and_atomicity(cli: Any, served: Any) -> None:
    reg = served.registry
    proc = cli("set", "learning_rate", "1e-4")
    assert proc.returncode == 0 and "learning_rate: 0.0003 -> 0.0001" in proc.stdout
    assert reg.values()["learning_rate"] == 1e-4
    proc = cli("set", "reward.hungry=-0.5", "batch_size=128", "use_amp=yes")
    assert proc.returncode == 0, proc.stderr
    assert (reg.values()["reward.hungry"], reg.values()["batch_size"]) == (-0.5, 128)
    assert reg.values()["use_amp"] is True
    proc = cli("set", "optimizer", "sgd", "reward.scale=2")  # NAME VALUE, then NAME=VALUE
    assert proc.returncode == 0 and reg.values()["optimizer"] == "sgd"
    records = json.loads(cli("set", "--json", "batch_size=7").stdout)
    assert records[0]["name"] == "batch_size" and records[0]["new"] == 7
    before = (reg.values(), reg.version)
    line = _one_error_line(cli("set", "reward.hungry=-1", "batch_size=5.5"))
    assert "batch_size" in line and "5.5" in line and "not an int" in line
    assert (reg.values(), reg.version) == before  # atomic: neither changed


@pytest.mark.parametrize(("args", "words"), [
    (("set", "learning_rate", "nan"), ["learning_rate", "finite"]),
    (("set", "learning_rate", "5"), ["learning_rate", "5.0", "maximum"]),
    (("set", "optimizer", "rmsprop"), ["optimizer", "not one of"]),
    (("set", "nosuch", "1"), ["nosuch"]),
    (("fire", "nosuch"), ["nosuch"]),
    (("set", "--expect", "batch_size=99", "batch_size", "3"), ["expected version 99"]),
])
def test_refused_requests_exit_1_with_one_line(cli: Any, served: Any, args: tuple,
                                               words: list[str]) -> None:
    line = _one_error_line(cli(*args))
    for word in words:
        assert word in line


@pytest.mark.parametrize("args", [
    ("set", "batch_size"), ("set", "a=1", "=2"), ("set", "a=1", "a=2"),
    ("set", "--expect", "batch_size=x", "batch_size=1"),
])
def test_usage_errors_exit_2_with_one_line(cli: Any, served: Any, args: tuple) -> None:
    _one_error_line(cli(*args), code=2)


def test_argparse_errors_exit_2(cli: Any) -> None:
    proc = cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_compare_and_set(cli: Any, served: Any) -> None:
    var = served.registry.variable("batch_size")
    assert cli("set", "--expect", f"batch_size={var.version}", "batch_size", "3").returncode == 0
    assert var.value == 3


def test_fire(cli: Any, served: Any) -> None:
    proc = cli("fire", "checkpoint", "stop")
    assert proc.returncode == 0 and "fired checkpoint (fire #1" in proc.stdout
    assert "fired stop" in proc.stdout
    record = json.loads(cli("fire", "--json", "checkpoint").stdout)
    assert record["kind"] == "fire" and record["new"] == 1 and record["data"]["coalesced"]
    assert served.registry.trigger("checkpoint").pending == 1  # joined the waiting fire
    assert "joined fire #1" in cli("fire", "checkpoint").stdout


def test_history(cli: Any, served: Any) -> None:
    reg = served.registry
    reg.step = 11
    for n in (1, 2, 3):
        reg.set({"batch_size": n}, source="script")
    reg.fire("stop")
    proc = cli("history")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("v1 ") and "start" in lines[0]
    assert "step=11  set batch_size 64 -> 1  by script" in lines[1]
    assert "fire stop (#1)" in lines[-1]
    records = [json.loads(line) for line in cli("history", "--json", "--since", "2").stdout
               .splitlines()]
    assert [r["v"] for r in records] == [3, 4, 5]
    records = [json.loads(line) for line in cli("history", "--json", "--limit", "1",
                                                "batch_*").stdout.splitlines()]
    assert [(r["name"], r["new"]) for r in records] == [("batch_size", 3)]


@pytest.mark.timeout(60)
def test_watch_json_streams_snapshot_then_changes(children: Children, served: Any) -> None:
    proc = children.popen([str(LIVETUNE), "watch", "--json", "--addr", served.address,
                           "batch_size"])
    assert proc.stdout is not None
    snapshot = json.loads(proc.stdout.readline())["snapshot"]
    assert snapshot["run"] == "test"
    assert [v["name"] for v in snapshot["variables"]] == ["batch_size"]
    served.registry.set({"reward.scale": 3.0})  # filtered out
    for n in (5, 6):
        served.registry.set({"batch_size": n})
    changes = [json.loads(proc.stdout.readline()) for _ in range(2)]
    assert [(c["name"], c["old"], c["new"]) for c in changes] == [("batch_size", 64, 5),
                                                                   ("batch_size", 5, 6)]
    served.stop()  # the run ends: the watcher exits cleanly
    assert proc.wait(timeout=15) == 0


@pytest.mark.timeout(60)
def test_watch_text(children: Children, served: Any) -> None:
    proc = children.popen([str(LIVETUNE), "watch", "--addr", served.address])
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("watching run test at version 1: ")
    served.registry.set({"batch_size": 9})
    assert "set batch_size 64 -> 9" in proc.stdout.readline()


def test_addr_run_and_env_select_the_run(cli: Any, sub_env: dict[str, str],
                                         start_server: Callable[..., Any]) -> None:
    a = start_server(make_registry(), run="alpha", journal=False)
    b = start_server(make_registry(), run="beta", journal=False)
    b.registry.set({"batch_size": 2})
    line = _one_error_line(cli("get", "batch_size"))  # two live runs: must pick one
    assert "several runs are live" in line and "alpha" in line and "beta" in line
    assert cli("get", "batch_size", "--addr", a.address).stdout == "64\n"
    assert cli("get", "batch_size", "--run", "beta").stdout == "2\n"
    env = {**sub_env, "LIVETUNE_ADDR": b.address}
    assert cli("get", "batch_size", env=env).stdout == "2\n"
    assert cli("get", "batch_size", "--addr", a.address, env=env).stdout == "64\n"
    line = _one_error_line(cli("get", "batch_size", "--run", "gamma"))
    assert "no live run named 'gamma'" in line


def test_unreachable_address_is_one_line(cli: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    line = _one_error_line(cli("ls", "--addr", f"127.0.0.1:{port}", "--timeout", "2"))
    assert "cannot reach a livetune run" in line and time.monotonic() - start < 20


def test_no_run_falls_back_to_default_address(cli: Any, sub_env: dict[str, str]) -> None:
    proc = cli("get", "no_such_variable_here", "--timeout", "1")
    assert proc.returncode == 1
    if "127.0.0.1:50051" in proc.stderr:  # nobody serves the default port
        _one_error_line(proc)


def test_state_shows_pending_knob(cli: Any, served: Any) -> None:
    served.registry.set({"clip": 0.5})
    row = next(line for line in cli("ls").stdout.splitlines() if line.startswith("clip"))
    assert "pending" in row
    served.registry.mark_applied("clip", step=4)
    row = next(line for line in cli("ls").stdout.splitlines() if line.startswith("clip"))
    assert "applied@4" in row
    assert isinstance(served.registry, lt.Registry)
