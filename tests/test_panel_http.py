"""The panel's HTTP API without a browser: what it passes to a run, what it refuses itself (with
the words and status the run would use), and who may call it (Host, Origin, token)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_registry, wait_for
from panel_helpers import PanelThread

import livetune_rl as lt
from livetune_rl.journal import read_journal
from livetune_rl.panel.config import PanelConfig


@pytest.fixture
def start_panel(tmp_path: Path) -> Iterator[Callable[..., PanelThread]]:
    panels: list[PanelThread] = []

    def start(**options: Any) -> PanelThread:
        options.setdefault("runs_root", str(tmp_path / "runs"))
        panel = PanelThread(PanelConfig(port=0, poll=0.2, **options))
        panels.append(panel)
        return panel

    yield start
    for panel in panels:
        panel.stop()


def run_id(panel: PanelThread, name: str = "test") -> str:
    """The id of the live run ``name`` once the panel follows it."""

    def find() -> str | None:
        runs = panel.request("GET", "/api/runs").body
        return next((r["id"] for r in runs if r["name"] == name and r["live"]), None)

    return wait_for(find, timeout=10, interval=0.05)


def test_a_set_reaches_the_run_and_names_the_panel_as_its_source(
        served: Any, tmp_path: Path, start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run = run_id(panel)
    reply = panel.request("POST", "/api/set", {"runs": [run], "values": {
        "learning_rate": "1e-4", "optimizer": "sgd"}})
    assert reply.status == 200, reply.body
    (result,) = reply.body["results"]
    assert result["ok"] and {c["name"] for c in result["changes"]} == {"learning_rate",
                                                                        "optimizer"}
    assert served.registry.variable("learning_rate").value == 1e-4
    sets = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "set"]
    assert {e.name for e in sets} == {"learning_rate", "optimizer"}
    assert all("livetune-panel" in e.source for e in sets), sets


def test_a_refused_value_comes_back_with_the_run_s_message_and_status(
        served: Any, start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run = run_id(panel)
    with lt.connect(served.address) as client, pytest.raises(lt.ClientError) as direct:
        client.set_text({"learning_rate": "5", "batch_size": "8"})
    reply = panel.request("POST", "/api/set", {"runs": [run], "values": {
        "learning_rate": "5", "batch_size": "8"}})
    assert reply.status == 400
    (result,) = reply.body["results"]
    assert result == {"run": run, "ok": False, "status": "INVALID_ARGUMENT",
                      "error": str(direct.value)}
    # atomic: neither value changed
    assert served.registry.variable("batch_size").value == 64
    unknown = panel.request("POST", "/api/set", {"runs": [run],
                                                  "values": {"learning_rat": "1"}})
    assert unknown.status == 404 and unknown.body["results"][0]["status"] == "NOT_FOUND"
    assert "did you mean" in unknown.body["results"][0]["error"]


@pytest.mark.parametrize(("body", "words"), [
    ({"runs": ["x"], "values": {"learning rate": "1"}}, "invalid name 'learning rate'"),
    ({"runs": ["x"], "values": {"learning_rate": 0.1}}, "sent as text"),
    ({"runs": ["x"], "values": {}}, "one or more names"),
    ({"runs": [], "values": {"learning_rate": "1"}}, "one or more run ids"),
    ({"runs": ["x"], "values": {"a": "1"}, "token": "t"}, "unknown field(s) 'token'"),
    ({"runs": ["x"], "values": {"a": "1"}, "expected": {"a": -1}}, "expected version -1"),
    ([1, 2], "a JSON object, not list"),
])
def test_a_malformed_set_is_refused_before_any_run_is_called(
        body: Any, words: str, served: Any, start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run_id(panel)
    before = served.registry.version
    reply = panel.request("POST", "/api/set", body)
    assert reply.status == 400 and reply.body["status"] == "INVALID_ARGUMENT"
    assert words in reply.body["error"], reply.body
    assert served.registry.version == before


def test_bodies_and_runs_the_panel_does_not_know(served: Any,
                                                 start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run_id(panel)
    assert panel.request("POST", "/api/set", raw=b"{not json").status == 400
    big = panel.request("POST", "/api/set", raw=b" " * ((1 << 20) + 16))
    assert big.status == 429 and big.body["status"] == "RESOURCE_EXHAUSTED"  # as gRPC says
    nobody = panel.request("POST", "/api/fire", {"runs": ["nobody.1"], "name": "checkpoint"})
    assert nobody.status == 404 and "no live run with id 'nobody.1'" in \
        nobody.body["results"][0]["error"]


def test_only_the_panel_s_own_page_may_change_something(
        served: Any, start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run = run_id(panel)
    body = {"runs": [run], "values": {"learning_rate": "0.5"}}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": None}):
        reply = panel.request("POST", "/api/set", body, headers=headers)
        assert reply.status == 403 and "panel's own page" in reply.body["error"]
    form = panel.request("POST", "/api/set", body, headers={"Content-Type": "text/plain"})
    assert form.status == 400 and "application/json" in form.body["error"]
    rebound = panel.request("GET", "/api/runs", headers={"Host": "evil.example:80"})
    assert rebound.status == 403 and "not to the host 'evil.example:80'" in \
        rebound.body["error"]
    assert served.registry.variable("learning_rate").value == 3e-4
    page = panel.request("GET", "/")
    assert page.status == 200 and "frame-ancestors 'none'" in \
        page.headers["Content-Security-Policy"]


def test_fire_and_undo(served: Any, tmp_path: Path,
                       start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    run = run_id(panel)
    fired = panel.request("POST", "/api/fire", {"runs": [run], "name": "checkpoint"})
    assert fired.status == 200 and fired.body["results"][0]["changes"][0]["new"] == 1
    assert served.registry.trigger("checkpoint").fires == 1
    panel.request("POST", "/api/set", {"runs": [run], "values": {"learning_rate": "0.01",
                                                                  "batch_size": "32"}})
    reg = served.registry
    undone = panel.request("POST", "/api/undo", {"run": run})
    assert undone.status == 200, undone.body
    assert (reg.variable("learning_rate").value, reg.variable("batch_size").value) == (3e-4, 64)
    sets = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "set"]
    assert all("livetune-panel" in e.source for e in sets), sets
    undos = [e for e in sets if e.source.startswith("undo of ")]  # the run's own undo
    assert {e.name for e in undos} == {"learning_rate", "batch_size"}
    again = panel.request("POST", "/api/undo", {"run": run})  # an undo is not undone again,
    assert again.status == 400 and "nothing to undo" in again.body["results"][0]["error"]
    assert (reg.variable("learning_rate").value, reg.variable("batch_size").value) == (3e-4, 64)


def test_nothing_to_undo(served: Any, start_panel: Callable[..., PanelThread]) -> None:
    panel = start_panel()
    reply = panel.request("POST", "/api/undo", {"run": run_id(panel)})
    assert reply.status == 400 and "nothing to undo" in reply.body["results"][0]["error"]


def test_the_undo_button_undoes_the_newest_request_or_is_refused(served: Any) -> None:
    """What /api/undo sends: the versions of the newest request to the run's Undo, which
    refuses (FAILED_PRECONDITION) when a later change touched one of its variables."""
    from livetune_rl.panel.undo import newest_request

    reg = served.registry
    reg.set({"learning_rate": 0.01, "batch_size": 32})
    with lt.connect(served.address) as client:
        versions = newest_request(client.history())
        assert len(versions) == 2
        reg.set({"batch_size": 16})  # another client, between the read and the undo
        with pytest.raises(lt.ClientError) as refused:
            client.undo(versions=versions)
    assert refused.value.code.name == "FAILED_PRECONDITION"
    assert (reg.variable("learning_rate").value, reg.variable("batch_size").value) == (0.01, 16)


def test_set_to_a_chosen_subset_of_runs(children: Any, start_panel: Callable[..., PanelThread]
                                        ) -> None:
    _, first = children.server("seed-0", "127.0.0.1:0")
    _, second = children.server("seed-1", "127.0.0.1:0")
    _, third = children.server("seed-2", "127.0.0.1:0")
    panel = start_panel()
    ids = [run_id(panel, f"seed-{i}") for i in range(3)]
    reply = panel.request("POST", "/api/set", {"runs": ids[:2], "values": {"x": "7"}})
    assert reply.status == 200 and [r["ok"] for r in reply.body["results"]] == [True, True]
    values = []
    for address in (first, second, third):
        with lt.connect(address) as client:
            values.append(client.get("x").value)
    assert values == [7, 7, 0]
    partial = panel.request("POST", "/api/set", {"runs": [ids[0], "gone.1"],
                                                  "values": {"x": "8"}})
    assert partial.status == 404
    assert [r["ok"] for r in partial.body["results"]] == [True, False]


def test_a_token_is_asked_once_by_the_page_and_sent_to_the_runs(
        tmp_path: Path, start_server: Callable[..., Any],
        start_panel: Callable[..., PanelThread]) -> None:
    served = start_server(make_registry(), token="s3cret", journal=False)
    panel = start_panel(token="s3cret")
    for path in ("/api/runs", "/api/runs?token=s3cret"):  # never read from the URL
        reply = panel.request("GET", path)
        assert reply.status == 401 and reply.body["login"] is True
    page = panel.request("GET", "/", follow=False)
    assert page.status == 303 and page.headers["Location"] == "/login"
    started = time.monotonic()
    wrong = panel.request("POST", "/login", raw=b"token=guess", follow=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status == 303 and wrong.headers["Location"] == "/login#wrong"
    assert time.monotonic() - started >= 0.9  # a wrong token waits before its answer
    right = panel.request("POST", "/login", raw=b"token=s3cret", follow=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert right.status == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    runs = wait_for(lambda: [r for r in panel.request("GET", "/api/runs", headers=session).body
                             if r["live"]], timeout=10)
    assert runs[0]["token_required"] is True
    reply = panel.request("POST", "/api/set", {"runs": [runs[0]["id"]], "values": {
        "learning_rate": "0.125"}}, headers=session)
    assert reply.status == 200, reply.body
    assert served.registry.variable("learning_rate").value == 0.125


def test_a_non_loopback_panel_needs_a_token() -> None:
    from livetune_rl.panel.config import PanelConfigError

    with pytest.raises(PanelConfigError, match="without a token"):
        PanelConfig(bind="0.0.0.0", port=0).check()
    assert PanelConfig(bind="0.0.0.0", port=0, token="t").check().loopback is False


def test_ended_runs_are_listed_from_their_journals(tmp_path: Path,
                                                   start_panel: Callable[..., PanelThread]
                                                   ) -> None:
    journal = tmp_path / "runs" / "old-run" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    reg = lt.Registry(journal=journal)
    lt.LiveVariable("lr", 0.1, registry=reg)
    reg.set({"lr": 0.2})
    reg.journal.close()  # type: ignore[union-attr]
    panel = start_panel()
    runs = wait_for(lambda: panel.request("GET", "/api/runs").body, timeout=10)
    (ended,) = [r for r in runs if r["name"] == "old-run"]
    assert ended["live"] is False
    events = panel.request("GET", f"/api/runs/{ended['id']}/journal").body["events"]
    assert [e["kind"] for e in events] == ["start", "set"] and events[1]["new"] == 0.2
    refused = panel.request("POST", "/api/set", {"runs": [ended["id"]], "values": {"lr": "1"}})
    assert refused.status == 400 and "read-only" in refused.body["results"][0]["error"]
    assert os.path.getsize(journal) > 0


def test_a_run_that_serves_tls_needs_the_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    from livetune_rl.discovery import RunRecord
    from livetune_rl.panel.hub import RunLink

    monkeypatch.delenv("LIVETUNE_CACERT", raising=False)
    published: list[Any] = []
    link = RunLink(RunRecord("secure", "127.0.0.1:1", os.getpid(), 0.0, tls=True),
                   PanelConfig(), published.append)
    (status, *_) = link.messages()
    assert "serves TLS" in status.data["status"] and "--cacert" in status.data["status"]
    link.stop()


def test_run_names_choose_the_runs_shown(children: Any,
                                         start_panel: Callable[..., PanelThread]) -> None:
    children.server("seed-0", "127.0.0.1:0")
    _, wanted = children.server("seed-1", "127.0.0.1:0")
    panel = start_panel(runs=("seed-1",))
    run_id(panel, "seed-1")
    listed = panel.request("GET", "/api/runs").body
    assert [(r["name"], r["address"]) for r in listed] == [("seed-1", wanted)]
