"""The panel in a real browser: headless Debian chromium driven by Playwright, on a real
``livetune train`` run (and two ``livetune demo`` runs for the side-by-side set).

The browser is Debian's ``chromium`` (``scripts/browser.sh`` installs it; ``$LIVETUNE_CHROMIUM``
names another). Without it, or without Playwright, these tests fail and say so: they are
never skipped. Screenshots go to ``tmp/artifacts/panel/`` (``$LIVETUNE_ARTIFACTS``).

The tests of this module share one training run, one panel and one page, in file order: the
run is stopped by the last test, from the page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import livetune_rl as lt
from livetune_rl import discovery
from livetune_rl.journal import read_journal

REPO = Path(__file__).resolve().parent.parent
LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]
RUN = "panel-e2e"
ARTIFACTS = Path(os.environ.get("LIVETUNE_ARTIFACTS") or REPO / "tmp" / "artifacts") / "panel"
TIMEOUT_MS = 30_000


def chromium() -> str:
    """The browser to drive; fails the test (never skips it) when there is none."""
    path = os.environ.get("LIVETUNE_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("no chromium on this machine: the panel's browser tests need Debian's "
                    "chromium; run scripts/browser.sh (apt-get install -y chromium) or set "
                    "$LIVETUNE_CHROMIUM to a Chromium binary")
    return path


@dataclass
class Proc:
    """A child process whose output is read by a thread (a full pipe would stop it)."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}:\n{self.output[-3000:]}")


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    runs_root: Path
    trainer: Proc
    panel: Proc
    demos: list[Proc]
    url: str

    def address(self, name: str) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for record in discovery.list_runs(self.home / "runs"):
                if record.run == name:
                    return record.address
            if self.trainer.proc.poll() is not None:
                raise AssertionError(f"livetune train ended:\n{self.trainer.output[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"the run {name} never appeared")

    @property
    def journal(self) -> Path:
        return self.runs_root / RUN / "journal.jsonl"


@pytest.fixture(scope="module")
def browser_path() -> str:
    return chromium()


@pytest.fixture(scope="module")
def stack(browser_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("panel-e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVETUNE_")}
    env.update(LIVETUNE_HOME=str(base / "home"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               NO_PROXY="*", no_proxy="*")
    runs_root = base / "runs"
    old = lt.Registry(journal=runs_root / "old-run" / "journal.jsonl")  # an ended run
    lt.LiveVariable("learning_rate", 0.01, registry=old)
    old.set({"learning_rate": 0.02}, source="an earlier session")
    old.journal.close()  # type: ignore[union-attr]

    def start(*args: str) -> Proc:
        return Proc(subprocess.Popen([*LIVETUNE, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env))

    procs: list[Proc] = []
    try:
        procs.append(trainer := start(
            "train", "--run-name", RUN, "--runs-root", str(runs_root), "--timesteps", "2000000",
            "--n-envs", "1", "--vec", "dummy", "--eval-every", "1024", "--eval-episodes", "1",
            "--no-progress", "--hyper", "n_steps=128", "--hyper", "batch_size=64",
            "--hyper", "n_epochs=2", "--bind", "127.0.0.1:0"))
        demos = [start("demo", "--seconds", "300", "--run-name", name, "--bind", "127.0.0.1:0")
                 for name in ("demo-a", "demo-b")]
        procs += demos
        procs.append(panel := start("panel", "--port", "0", "--runs-root", str(runs_root),
                                    "--poll", "0.5"))
        url = panel.wait_for_line(r"livetune panel: (http://\S+)", 30).group(1)
        yield Stack(env, base / "home", runs_root, trainer, panel, demos, url)
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                proc.proc.terminate()
        for proc in procs:
            try:
                proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.proc.kill()


@pytest.fixture(scope="module")
def browser(browser_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[test]' "
                    "(scripts/venv.sh installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(stack.url)
    yield tab
    context.close()
    assert errors == [], f"the page raised: {errors}"


def column(page: Any, name: str) -> Any:
    return page.locator(f'section.run[data-run^="{name}."]')


def row(page: Any, run: str, var: str) -> Any:
    return column(page, run).locator(f'tr[data-var="{var}"]')


def test_the_page_shows_the_run_with_a_control_per_variable(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    stack.address(RUN)
    lr = row(page, RUN, "learning_rate")
    expect(lr.locator('input[type="range"]')).to_have_attribute(
        "aria-label", "learning_rate (log scale)", timeout=90_000)
    expect(row(page, RUN, "n_epochs").locator(".field")).to_have_value("2")
    expect(row(page, RUN, "reward.scale").locator('input[type="range"]')).to_have_attribute(
        "aria-label", "reward.scale (linear)")
    for trigger in ("checkpoint", "evaluate", "stop"):
        expect(column(page, RUN).locator(f'button[data-trigger="{trigger}"]')).to_be_visible()


def test_moving_the_learning_rate_and_apply_changes_the_training_run(stack: Stack,
                                                                     page: Any) -> None:
    from playwright.sync_api import expect

    lr = row(page, RUN, "learning_rate")
    slider = lr.locator('input[type="range"]')
    slider.focus()
    for _ in range(40):
        slider.press("ArrowLeft")
    text = lr.locator(".field").input_value()
    wanted = float(text)
    assert 1e-4 < wanted < 1e-3, text  # 40 of 1000 log steps below the default 1e-3
    expect(page.locator('#staged-list li[data-var="learning_rate"]')).to_contain_text(text)
    page.click("#apply")
    expect(lr.locator(".value")).to_have_text(text)
    expect(lr.locator(".vstatus")).to_contain_text("applied at step")
    with lt.connect(stack.address(RUN)) as client:
        assert client.get("learning_rate").value == wanted
    journal = read_journal(stack.journal)
    (set_event,) = [e for e in journal if e.kind == "set" and e.name == "learning_rate"]
    assert set_event.new == wanted and "livetune-panel" in set_event.source, set_event
    assert any(e.kind == "applied" and e.applies == set_event.v for e in journal)
    stack.trainer.wait_for_line(rf"learning_rate = {wanted} applied", 20)


def test_the_checkpoint_button_writes_a_checkpoint(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    before = set((stack.runs_root / RUN).glob("checkpoints/*/model.zip"))
    item = column(page, RUN).locator(".trigger-item", has=page.locator(
        'button[data-trigger="checkpoint"]'))
    item.locator("button").click()
    deadline = time.monotonic() + 30
    while not set((stack.runs_root / RUN).glob("checkpoints/*/model.zip")) - before:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    expect(item.locator(".count")).to_contain_text("fired 1 · handled 1")


def test_a_refused_value_shows_the_run_s_message_beside_its_control(stack: Stack,
                                                                     page: Any) -> None:
    from playwright.sync_api import expect

    with lt.connect(stack.address(RUN)) as client, pytest.raises(lt.ClientError) as direct:
        client.set_text({"n_epochs": "0"})
    epochs = row(page, RUN, "n_epochs")
    epochs.locator(".field").fill("0")
    epochs.locator(".field").press("Enter")
    page.click("#apply")
    expect(epochs.locator(".error")).to_have_text(str(direct.value))
    expect(page.locator("#apply-result")).to_contain_text("INVALID_ARGUMENT")
    with lt.connect(stack.address(RUN)) as client:
        assert client.get("n_epochs").value == 2
    page.screenshot(path=str(ARTIFACTS / "panel-refused.png"), full_page=True)
    page.click("#discard")
    expect(page.locator("#staged")).to_be_hidden()
    expect(epochs.locator(".error")).to_be_empty()
    expect(epochs.locator(".field")).to_have_value("2")


def test_a_curve_gets_points_and_a_change_marker_with_a_tooltip(stack: Stack,
                                                                page: Any) -> None:
    from playwright.sync_api import expect

    charts = column(page, RUN).locator(".charts")
    reward = charts.locator('[data-chart="evaluate:mean_reward"]')
    expect(reward).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=60_000)
    expect(reward).to_have_attribute("data-markers", re.compile(r"^[1-9]"))
    knob = charts.locator('[data-chart="knob:learning_rate"]')
    expect(knob).to_have_attribute("data-points", re.compile(r"^([3-9]|\d\d)"))
    expect(charts.locator('[data-chart="steps"]')).to_have_attribute(
        "data-points", re.compile(r"^[1-9]"))
    # SB3's losses, from the run's train events (one after each update phase)
    expect(charts.locator('[data-chart="train:loss"]')).to_have_attribute(
        "data-points", re.compile(r"^[1-9]"), timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "panel-train-run.png"), full_page=True)
    # hover along the learning-rate curve until the change marker's tooltip shows (uPlot
    # moves its cursor at the next animation frame: each position is given a moment)
    over = knob.locator(".u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    tip = page.locator("#tooltip")
    for x in range(0, int(box["width"]), 2):
        page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
        page.wait_for_timeout(15)
        if tip.is_visible():
            break
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("learning_rate 0.001 →")
    expect(tip).to_contain_text("by livetune-panel")
    page.screenshot(path=str(ARTIFACTS / "panel-tooltip.png"), full_page=True)


def test_the_journal_timeline_filters(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    col = column(page, RUN)
    col.locator(".journal-tools .filter").fill("learning_rate")
    rows = col.locator("table.journal tbody tr")
    expect(rows.first).to_be_visible()
    names = rows.locator("td:nth-child(5)").all_text_contents()
    # start records have no name; train events carry the learning rate in their data
    assert names and "learning_rate" in names and set(names) <= {"learning_rate", "", "train"}
    col.locator(".journal-tools .kind").select_option("applied")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("applied")
    col.locator(".journal-tools .filter").fill("")
    col.locator(".journal-tools .kind").select_option("all")


def test_one_set_to_a_chosen_subset_of_runs_side_by_side(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    field_a = row(page, "demo-a", "learning_rate").locator(".field")
    expect(field_a).to_be_visible()
    field_a.fill("0.3")
    field_a.press("Enter")
    targets = page.locator("#targets")
    demo_b = page.locator('#targets input[data-target^="demo-b."]')
    demo_b.check()
    expect(targets.locator("input:checked")).to_have_count(2)
    page.click("#apply")
    expect(page.locator("#apply-result")).to_have_text("applied to 2 run(s)")
    values = {}
    for name in ("demo-a", "demo-b", RUN):
        with lt.connect(stack.address(name)) as client:
            values[name] = client.get("learning_rate").value
    assert values["demo-a"] == values["demo-b"] == 0.3
    assert values[RUN] != 0.3
    expect(row(page, "demo-b", "learning_rate").locator(".value")).to_have_text("0.3")
    page.screenshot(path=str(ARTIFACTS / "panel-side-by-side.png"), full_page=True)


def test_undo_sets_the_last_set_back(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    col = column(page, "demo-a")
    col.locator("button.undo").click()
    expect(col.locator(".undo-result")).to_have_text("undone: learning_rate 0.3 → 0.05")
    expect(row(page, "demo-a", "learning_rate").locator(".value")).to_have_text("0.05")
    with lt.connect(stack.address("demo-b")) as client:
        assert client.get("learning_rate").value == 0.3  # only demo-a's set was undone


def test_an_ended_run_is_shown_read_only_from_its_journal(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    page.locator('#run-list input[data-run^="journal-"]').check()
    col = page.locator('section.run:has(h2:text("old-run"))')
    expect(col.locator("h2 .status")).to_have_text("ended: read-only")
    expect(col.locator('tr[data-var="learning_rate"] .value')).to_have_text("0.02")
    expect(col.locator("table.journal tbody tr")).to_have_count(2)
    expect(col.locator("table.journal")).to_contain_text("an earlier session")
    page.locator('#run-list input[data-run^="journal-"]').uncheck()


def test_a_run_the_panel_no_longer_lists_leaves_the_page(stack: Stack, page: Any) -> None:
    """The page follows the panel's list: an ended run whose journal goes leaves it (as does a
    journal listed as ended in the moment before its live run was discovered)."""
    from playwright.sync_api import expect

    gone = lt.Registry(journal=stack.runs_root / "gone-run" / "journal.jsonl")
    lt.LiveVariable("learning_rate", 0.01, registry=gone)
    gone.journal.close()  # type: ignore[union-attr]
    entry = page.locator('#run-list li:has-text("gone-run")')
    expect(entry).to_have_count(1)
    shutil.rmtree(stack.runs_root / "gone-run")
    expect(entry).to_have_count(0)
    expect(page.locator('#run-list li:has-text("old-run")')).to_have_count(1)


def test_stop_ends_the_run_and_its_column_turns_read_only(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    column(page, RUN).locator('button[data-trigger="stop"]').click()
    assert stack.trainer.proc.wait(60) == 0, stack.trainer.output[-3000:]
    assert "stop requested by" in stack.trainer.output
    expect(column(page, RUN).locator("h2 .status")).to_have_text("ended: read-only")
    expect(row(page, RUN, "learning_rate").locator('input[type="range"]')).to_be_disabled()
    expect(page.locator(f'#run-list li:has(input[data-run^="{RUN}."]) .badge')).to_have_text(
        "ended")
    final = stack.runs_root / RUN / "checkpoints" / "final" / "live_values.json"
    assert json.loads(final.read_text())["values"]["learning_rate"] < 1e-3


def test_the_panel_logged_no_error(stack: Stack) -> None:
    """All of the above, and the run ending under it, left nothing in the panel's log."""
    lines = stack.panel.output.splitlines()
    assert lines[0].startswith("livetune panel: http://"), lines
    assert lines[1:] == [], "\n".join(lines)


def test_a_panel_with_a_token_asks_for_it_once_and_never_takes_it_from_the_url(
        browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVETUNE_")}
    env.update(LIVETUNE_HOME=str(tmp_path / "home"), LIVETUNE_TOKEN="s3cret-token",
               PYTHONUNBUFFERED="1")
    panel = Proc(subprocess.Popen([*LIVETUNE, "panel", "--port", "0", "--runs-root",
                                   str(tmp_path / "runs")], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env))
    context = browser.new_context()
    try:
        url = panel.wait_for_line(r"livetune panel: (http://\S+)", 30).group(1)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url + "?token=s3cret-token")  # a token in the URL is not read
        expect(tab).to_have_url(re.compile(r"/login$"))
        tab.fill('input[name="token"]', "a guess")
        tab.click('button[type="submit"]')
        expect(tab.locator("#wrong")).to_be_visible()
        tab.fill('input[name="token"]', "s3cret-token")
        tab.click('button[type="submit"]')
        expect(tab.locator("#connection")).to_have_text("connected")
        cookies = context.cookies()
        assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]
        assert "s3cret-token" not in {c["value"] for c in cookies}
    finally:
        context.close()
        panel.proc.terminate()
        panel.proc.wait(20)
