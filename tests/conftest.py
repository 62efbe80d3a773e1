"""Shared fixtures of the core tests: an isolated LIVETUNE_HOME, in-process servers, child
processes that serve a registry, and subprocess environments.

Every test runs with ``LIVETUNE_HOME`` pointing at its own temporary directory (autouse), so
discovery records and default journals never touch the user's real state or another test's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import livetune_rl as lt

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
LIVETUNE = BIN / "livetune"
GRPCURL = BIN / "grpcurl"


@pytest.fixture(autouse=True)
def livetune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point LIVETUNE_HOME at a fresh directory; drop every other LIVETUNE_* default.

    ``LIVETUNE_SERVE=0``: a test's ``LiveTuneCallback`` does not serve its registry from a
    child process of its own (tests/test_sb3_serve.py checks that behaviour by itself)."""
    home = tmp_path / "livetune-home"
    monkeypatch.setenv("LIVETUNE_HOME", str(home))
    monkeypatch.setenv("LIVETUNE_SERVE", "0")
    for name in ("LIVETUNE_ADDR", "LIVETUNE_TOKEN", "LIVETUNE_CACERT", "LIVETUNE_RUN"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def sub_env(livetune_home: Path) -> dict[str, str]:
    """Environment for subprocesses: this test's LIVETUNE_HOME, no proxies for loopback."""
    env = dict(os.environ)
    env["LIVETUNE_HOME"] = str(livetune_home)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "*"
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        env.pop(key, None)
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory (unix socket paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="lt-", dir="/tmp"))
    try:
        yield path
    finally:
        for child in sorted(path.rglob("*"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir() if child.is_dir() else child.unlink()
        with contextlib.suppress(OSError):
            path.rmdir()


def make_registry(journal: Any = None) -> lt.Registry:
    """A registry with one variable of every type, a deferred knob and two triggers."""
    reg = lt.Registry(journal=journal)
    lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0, help="optimizer step size",
                    registry=reg)
    lt.LiveVariable("batch_size", 64, min=1, max=4096, help="samples per step", registry=reg)
    lt.LiveVariable("use_amp", False, help="mixed precision", registry=reg)
    lt.LiveVariable("optimizer", "adam", choices=["adam", "sgd"], registry=reg)
    lt.LiveVariable("reward.hungry", -1.0, min=-10, max=10, registry=reg)
    lt.LiveVariable("reward.scale", 1.0, registry=reg)
    lt.LiveVariable("clip", 0.2, min=0.0, max=1.0, deferred=True, registry=reg)
    lt.LiveTrigger("checkpoint", help="save a checkpoint", registry=reg)
    lt.LiveTrigger("stop", registry=reg)
    return reg


@pytest.fixture
def start_server() -> Iterator[Callable[..., Any]]:
    """Factory: ``start_server(registry, **serve_kwargs)`` serves on 127.0.0.1:0 (by default)
    quietly, and stops every server it started at teardown."""
    servers: list[Any] = []

    def start(registry: lt.Registry, address: str | None = "127.0.0.1:0", **kwargs: Any) -> Any:
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("run", "test")
        server = lt.serve(address, registry=registry, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=0)


@pytest.fixture
def served(tmp_path: Path, start_server: Callable[..., Any]) -> Any:
    """An in-process server over :func:`make_registry`, journaling to tmp_path/journal.jsonl."""
    reg = make_registry()
    return start_server(reg, journal=tmp_path / "journal.jsonl")


CHILD_SERVER = textwrap.dedent("""
    import sys, time
    import livetune_rl as lt
    reg = lt.Registry()
    lt.LiveVariable("x", 0, registry=reg)
    lt.LiveVariable("shared", 0.0, registry=reg)
    lt.LiveTrigger("go", registry=reg)
    addr = None if sys.argv[2] == "-" else sys.argv[2]
    server = lt.serve(addr, run=sys.argv[1], registry=reg, quiet=True)
    print("ADDR", server.address, flush=True)
    sys.stdin.read()          # serve until the parent closes our stdin (or kills us)
    server.stop()
""")


class Children:
    """Child processes started by a test, all killed at teardown."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(args, **kwargs)
        self.procs.append(proc)
        return proc

    def server(self, run: str, address: str | None = None) -> tuple[subprocess.Popen[str], str]:
        """Start a child serving a small registry; returns it and its address."""
        proc = self.popen([PYTHON, "-c", CHILD_SERVER, run, address or "-"],
                          stdin=subprocess.PIPE)
        return proc, read_address(proc)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.communicate(timeout=10)


def read_address(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited early: {proc.stderr.read() if proc.stderr else ''}")
        if line.startswith("ADDR "):
            return line.split()[1]
    raise AssertionError("child did not report its address")


@pytest.fixture
def children(sub_env: dict[str, str]) -> Iterator[Children]:
    kids = Children(sub_env)
    try:
        yield kids
    finally:
        kids.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
