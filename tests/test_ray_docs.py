"""Every ``python`` block of docs/ray.md runs as shown (each starts a local Ray cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doc_snippets import blocks, run_block

RAY_BLOCKS = blocks(["docs/ray.md"])


def test_the_ray_doc_has_its_blocks() -> None:
    assert len(RAY_BLOCKS) >= 2  # a sweep and a LivePBT run


@pytest.mark.parametrize(("doc", "line", "code"), RAY_BLOCKS,
                         ids=[f"{d}:{n}" for d, n, _ in RAY_BLOCKS])
def test_block_runs_as_shown(doc: str, line: int, code: str, tmp_path: Path,
                             sub_env: dict[str, str]) -> None:
    run_block(doc, line, code, tmp_path, sub_env)
