"""experiments/restart_cost.py --quick writes a valid JSON, Markdown table and PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "restart_cost.py"


@pytest.mark.timeout(240)
def test_restart_cost_quick(tmp_path: Path) -> None:
    env = {**os.environ, "LIVETUNE_HOME": str(tmp_path / "home")}
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                           "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=230)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "restart_cost.json").read_text())
    live, restart = data["per_change"]["live"], data["per_change"]["restart"]
    assert len(live) == len(restart) == 1
    assert 0 < live[0]["in_effect_s"] < 30 and 0 <= live[0]["training_lost_s"] < 0.1
    assert live[0]["iteration_s"] > 0
    phases = restart[0]["phases"]
    assert set(phases) == {"checkpoint_save", "process_exit", "interpreter_start", "imports",
                           "setup", "checkpoint_load", "serve", "loader_warmup", "first_step"}
    assert all(v >= 0 for v in phases.values())
    assert restart[0]["total_s"] == pytest.approx(sum(phases.values()), rel=1e-6, abs=1e-6)
    assert restart[0]["total_s"] > live[0]["in_effect_s"]
    assert restart[0]["energy_j"] > 0 and restart[0]["energy_method"]
    if not data["energy_source"].startswith(("RAPL", "NVML")):
        assert "ESTIMATE" in restart[0]["energy_method"]
    assert "competition" not in data  # measured by experiments/competition.py
    table = (out / "restart_cost.md").read_text()
    assert "| **mean** |" in table and "Competition" not in table and "5.4 kJ" in table
    assert (out / "restart_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
