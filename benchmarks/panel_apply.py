"""Time from clicking "Apply" in the panel to the training loop applying the value (not a test).

Run it::

    .venv/bin/python benchmarks/panel_apply.py                    # 20 clicks per variable
    .venv/bin/python benchmarks/panel_apply.py --clicks 50 --variable learning_rate

It starts a small ``livetune train`` run (PPO on Hungry-Thirsty, one env, 128-step
rollouts, served from its child process as by default) and ``livetune panel``, opens the panel
in headless Chromium (Debian's ``chromium`` driven by Playwright, as the browser tests do),
and for each variable clicks ``--clicks`` times: type a new value in the variable's field, press
Enter (staged), click Apply, wait until the page shows it applied, pause a random 0-0.3 s (so
clicks fall at any phase of the training loop), and go on.

The click time is the browser's ``Date.now()`` in a click listener this script adds to the
Apply button; the time the training loop saw the value is the ``t`` of the ``applied`` journal
record of that set (written by the training process when its callback applied it). Both
clocks are this machine's. It prints, per variable, the p50, p90, minimum and maximum of
click -> set committed by the run (the ``set`` record's ``t``) and click -> applied by the
training loop. ``learning_rate`` is applied at the end of a rollout (SB3's safe point), the
reward weights at the next env step: the difference is the wait for the safe point.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from livetune_rl.journal import read_journal

LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]
RUN = "panel-bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start(args: list[str], env: dict[str, str], lines: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*LIVETUNE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return proc


def wait_line(lines: list[str], pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(pattern, line)
            if found:
                return found
        time.sleep(0.05)
    raise SystemExit(f"no line matching {pattern!r}:\n{''.join(lines)[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=20, help="clicks per variable")
    parser.add_argument("--variable", action="append", default=None,
                        help="variable to set (repeatable; default: learning_rate and "
                             "reward.scale)")
    parser.add_argument("--chromium", default=os.environ.get("LIVETUNE_CHROMIUM")
                        or shutil.which("chromium"), help="the browser binary")
    args = parser.parse_args()
    variables = args.variable or ["learning_rate", "reward.scale"]
    if not args.chromium:
        raise SystemExit("no chromium: run scripts/browser.sh")
    from playwright.sync_api import expect, sync_playwright

    base = Path(tempfile.mkdtemp(prefix="panel-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVETUNE_")}
    env.update(LIVETUNE_HOME=str(base / "home"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    train_lines: list[str] = []
    panel_lines: list[str] = []
    trainer = start(["train", "--run-name", RUN, "--runs-root", str(base / "runs"),
                     "--timesteps", "10000000", "--n-envs", "1", "--vec", "dummy",
                     "--eval-every", "0", "--no-progress", "--hyper", "n_steps=128",
                     "--hyper", "batch_size=64", "--hyper", "n_epochs=2",
                     "--bind", "127.0.0.1:0"], env, train_lines)
    panel = start(["panel", "--port", "0", "--runs-root", str(base / "runs")], env,
                  panel_lines)
    clicks: dict[str, list[float]] = {}
    try:
        url = wait_line(panel_lines, r"livetune panel: (http://\S+)", 30).group(1)
        wait_line(train_lines, r"try, in another terminal", 120)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url)
            page.wait_for_selector(f'section.run[data-run^="{RUN}."] tr[data-var]')
            page.evaluate("window.__clicks = []; document.querySelector('#apply')"
                          ".addEventListener('click', () => window.__clicks.push(Date.now()))")
            rng = random.Random(0)
            for name in variables:
                row = page.locator(f'section.run[data-run^="{RUN}."] tr[data-var="{name}"]')
                field = row.locator(".field")
                start_value = float(field.input_value())
                before = len(page.evaluate("window.__clicks"))
                for i in range(args.clicks):
                    value = start_value * (0.97 if i % 2 == 0 else 1.0) + (i + 1) * 1e-6
                    text = f"{value:.6g}"
                    field.fill(text)
                    field.press("Enter")
                    page.click("#apply")
                    expect(row.locator(".value")).to_have_text(text)
                    if row.locator(".vstatus").inner_text() != "live":
                        expect(row.locator(".vstatus")).to_contain_text("applied", timeout=30_000)
                    time.sleep(rng.uniform(0.0, 0.3))
                clicks[name] = [t / 1000 for t in page.evaluate("window.__clicks")[before:]]
            browser.close()
        time.sleep(1.0)  # the last applied records reach the journal
    finally:
        for proc in (panel, trainer):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    journal = read_journal(base / "runs" / RUN / "journal.jsonl")
    applied = {e.applies: e for e in journal if e.kind == "applied"}
    print(f"panel apply -> training loop, {args.clicks} clicks per variable "
          f"(livetune train, PPO n_steps=128, one env; {os.cpu_count()} CPUs)")
    print(f"{'variable':<16} {'click->set p50':>15} {'p90':>7} {'click->applied p50':>19} "
          f"{'p90':>7} {'min':>7} {'max':>7}  (ms)")
    for name in variables:
        sets = [e for e in journal if e.kind == "set" and e.name == name
                and "livetune-panel" in e.source]
        if len(sets) != len(clicks[name]):
            raise SystemExit(f"{name}: {len(clicks[name])} clicks but {len(sets)} sets "
                             "journaled")
        to_set = [(e.t - c) * 1000 for e, c in zip(sets, clicks[name], strict=True)]
        to_applied = [(applied[e.v].t - c) * 1000 for e, c in zip(sets, clicks[name],
                                                                 strict=True)]
        print(f"{name:<16} {pct(to_set, 50):>15.1f} {pct(to_set, 90):>7.1f} "
              f"{pct(to_applied, 50):>19.1f} {pct(to_applied, 90):>7.1f} "
              f"{min(to_applied):>7.1f} {max(to_applied):>7.1f}")
    stepped = [e for e in journal if e.kind == "applied" and e.step is not None]
    if len(stepped) >= 2 and stepped[-1].t > stepped[0].t:
        rate = (stepped[-1].step - stepped[0].step) / (stepped[-1].t - stepped[0].t)
        print(f"the training loop ran at {rate:.0f} steps/s meanwhile: a 128-step rollout "
              f"every {128 / rate * 1000:.0f} ms (the learning rate's safe point)")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
