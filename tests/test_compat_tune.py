"""The real ``tune`` command of the original LiveTune (0.0.8, installed from PyPI by
scripts/original-livetune.sh into build/original-livetune/) against our listener, and the
example of docs/compat.md run as shown."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import LIVETUNE, PYTHON, REPO, Children, wait_for

import livetune_rl as lt
from livetune_rl.compat import OriginalProtocolListener, liveTrigger, liveVar

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def tune_path() -> Path:
    """The original ``tune`` command (installed on first use, then cached)."""
    done = subprocess.run([str(REPO / "scripts" / "original-livetune.sh")], capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"scripts/original-livetune.sh failed (it needs PyPI once):\n{done.stderr}")
    return Path(done.stdout.strip())


@pytest.fixture
def tune(tune_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str | int) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(tune_path), *map(str, args)], capture_output=True, text=True,
                              timeout=30)
        done.stdout = ANSI.sub("", done.stdout)
        return done
    return run


@pytest.fixture
def run_reg(tmp_path: Path) -> Iterator[tuple[lt.Registry, OriginalProtocolListener]]:
    reg = lt.Registry(journal=tmp_path / "journal.jsonl")
    with OriginalProtocolListener(reg, 0, quiet=True) as listener:
        yield reg, listener


def journaled(reg: lt.Registry) -> list[tuple[str, str, object, str]]:
    assert reg.journal is not None
    return [(e.kind, e.name, e.new, e.source) for e in lt.read_journal(reg.journal.path)
            if e.kind in ("set", "fire")]


def test_tune_sets_each_type_and_fires(run_reg: tuple[lt.Registry, OriginalProtocolListener],
                                       tune: Callable[..., subprocess.CompletedProcess[str]],
                                       ) -> None:
    reg, listener = run_reg
    epochs, lr = liveVar(10, "epochs", max=100, registry=reg), liveVar(0.5, "lr", registry=reg)
    amp, save = liveVar(False, "amp", registry=reg), liveTrigger("save", registry=reg)
    lt.LiveVariable("optimizer", "adam", choices=["adam", "sgd"], registry=reg)
    port = listener.port
    for args in (("-v", 12, "-t", "epochs"), ("-v", 7, "-t", "lr"), ("-v", "True", "-t", "amp"),
                 ("-v", "sgd", "-t", "optimizer"), ("-t", "save", "-tr")):
        done = tune(*args, "-p", port)
        assert (done.returncode, done.stdout) == (0, ""), done
    wait_for(lambda: listener.stats.changes == 5)
    assert (epochs(), lr(), amp()) == (12, 7.0, True)
    assert [type(v()) for v in (epochs, lr, amp)] == [int, float, bool]  # int stays int
    assert [epochs.changed(), epochs.changed(), lr.changed(), amp.changed()] == \
        [True, False, True, True]
    assert [save(), save()] == [True, False]
    assert reg.variable("optimizer").value == "sgd"
    assert journaled(reg) == [("set", "epochs", 12, "livetune-tcp"),
                              ("set", "lr", 7.0, "livetune-tcp"),
                              ("set", "amp", True, "livetune-tcp"),
                              ("set", "optimizer", "sgd", "livetune-tcp"),
                              ("fire", "save", 1, "livetune-tcp")]


def test_refused_values_change_nothing(run_reg: tuple[lt.Registry, OriginalProtocolListener],
                                       tune: Callable[..., subprocess.CompletedProcess[str]],
                                       ) -> None:
    reg, listener = run_reg
    epochs = liveVar(10, "epochs", max=100, registry=reg)
    lr = liveVar(0.5, "lr", registry=reg)
    port = listener.port
    # the run refuses: out of bounds, not finite (tune is not told, as with the original)
    assert tune("-v", 500, "-t", "epochs", "-p", port).returncode == 0
    assert tune("-v", "nan", "-t", "lr", "-p", port).returncode == 0
    wait_for(lambda: listener.stats.refused == 2)
    # tune refuses a float for an int itself
    done = tune("-v", 1.5, "-t", "epochs", "-p", port)
    assert "Expected int, got float" in done.stdout
    # an unknown tag gets no port: tune fails
    done = tune("-v", 1, "-t", "nosuch", "-p", port)
    assert done.returncode == 1 and "invalid literal for int()" in done.stderr
    assert (epochs(), lr(), epochs.changed(), lr.changed()) == (10, 0.5, False, False)
    assert type(epochs()) is int
    assert journaled(reg) == []
    assert listener.stats.changes == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def masked(text: str) -> list[str]:
    """Lines with numbers (pids, ports, times, epochs) masked and spaces collapsed."""
    return [" ".join(re.sub(r"\d+", "N", ANSI.sub("", line)).split())
            for line in text.splitlines() if line.strip()]


def console_blocks(doc: str) -> list[list[tuple[str, list[str]]]]:
    """Each console block of ``doc`` as [(command, shown output lines)]."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", doc, re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


def test_the_docs_example_runs_as_shown(tmp_path: Path, children: Children, tune_path: Path,
                                        ) -> None:
    doc = (REPO / "docs" / "compat.md").read_text()
    script = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    port = str(free_port())
    (tmp_path / "orig_style.py").write_text(script.replace("47001", port))
    program, terminal = console_blocks(doc)
    assert program[0][0] == "python orig_style.py"
    child = children.popen([PYTHON, "orig_style.py"], cwd=tmp_path, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    seen = []
    while not any("serving on" in line for line in seen):
        line = child.stdout.readline()
        assert line, f"the example ended early: {''.join(seen)}"
        seen.append(line)
    tools = {"tune": str(tune_path), "livetune": str(LIVETUNE)}
    for command, shown in terminal:
        argv = [tools.get(word, word.replace("47001", port)) for word in command.split()]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env=children.env)
        assert done.returncode == 0, (command, done.stderr)
        got = masked(done.stdout + done.stderr)
        missing = [line for line in masked("\n".join(shown)) if line not in got]
        assert not missing, (command, missing, got)
    out, _ = child.communicate(timeout=20)  # the last command fired stop: the loop ends
    got = masked("".join(seen) + out)
    missing = [line for line in masked("\n".join(program[0][1])) if line not in got]
    assert not missing, (missing, got)
    assert child.returncode == 0


def test_the_docs_other_python_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (REPO / "docs" / "compat.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)[1:]
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/compat.md", "exec"), {})
    assert "tune -v 1e-4 -t learning_rate -p " in capsys.readouterr().out
