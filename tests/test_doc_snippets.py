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
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OWN_TESTS = {"docs/cleanrl.md": "tests/test_cleanrl.py",
             "docs/compat.md": "tests/test_compat_tune.py",
             "docs/ray.md": "tests/test_ray_docs.py"}
"""Documents whose blocks need a running peer or arguments, or start a Ray cluster each
(a file of their own, so the test workers share the long ones out): their own tests run
them."""
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")
                                  if str(p.relative_to(REPO)) not in OWN_TESTS)]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(documents: Sequence[str] = DOCUMENTS) -> list[tuple[str, int, str]]:
    """``(document, line of the opening fence, code)`` for every python block."""
    found = []
    for doc in documents:
        text = (REPO / doc).read_text()
        for match in BLOCK.finditer(text):
            found.append((doc, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def test_the_readme_and_the_docs_have_python_blocks() -> None:
    docs = {doc for doc, _, _ in blocks()}
    assert {"README.md", "docs/rl.md", "docs/vision.md"} <= docs


@pytest.mark.parametrize(("doc", "line", "code"), blocks(),
                         ids=[f"{d}:{n}" for d, n, _ in blocks()])
def test_block_runs_as_shown(doc: str, line: int, code: str, tmp_path: Path,
                             sub_env: dict[str, str]) -> None:
    run_block(doc, line, code, tmp_path, sub_env)


def run_block(doc: str, line: int, code: str, tmp_path: Path, sub_env: dict[str, str]) -> None:
    """Run one block as a reader would: a fresh interpreter in an empty directory."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          env=sub_env | {"OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        f"the python block at {doc}:{line} fails as shown (exit {proc.returncode}); fix the "
        f"block so that a reader can run it as it is:\n{proc.stderr[-3000:]}")
