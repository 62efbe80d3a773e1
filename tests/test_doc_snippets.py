"""Every ``python`` code block of the README and the docs runs as shown.

Each block is run on its own, in a fresh interpreter, in an empty working directory, with
this test's ``LIVETUNE_HOME`` (so discovery records and journals stay in the test's
directory). A block that needs something from an earlier block must repeat it: a reader
copies one block at a time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    """``(document, line of the opening fence, code)`` for every python block."""
    found = []
    for doc in DOCUMENTS:
        text = (REPO / doc).read_text()
        for match in BLOCK.finditer(text):
            found.append((doc, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def test_the_readme_has_python_blocks() -> None:
    assert sum(doc == "README.md" for doc, _, _ in blocks()) >= 2


@pytest.mark.parametrize(("doc", "line", "code"), blocks(),
                         ids=[f"{d}:{n}" for d, n, _ in blocks()])
def test_block_runs_as_shown(doc: str, line: int, code: str, tmp_path: Path,
                             sub_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=sub_env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        f"the python block at {doc}:{line} fails as shown (exit {proc.returncode}); fix the "
        f"block so that a reader can run it as it is:\n{proc.stderr[-3000:]}")
