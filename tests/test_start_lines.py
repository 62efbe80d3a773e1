"""What serving prints when it starts: where it serves, and where the journal goes."""

from __future__ import annotations

from pathlib import Path

import pytest

import livetune_rl as lt


@pytest.mark.parametrize("out_of_process", [False, True])
def test_serving_says_where_the_journal_goes(tmp_path: Path, out_of_process: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "journal.jsonl"
    with lt.serve("127.0.0.1:0", registry=lt.Registry(), run="lines", journal=journal,
                  discoverable=False, out_of_process=out_of_process):
        pass
    err = capsys.readouterr().err
    assert "run 'lines' serving on 127.0.0.1:" in err
    assert f"livetune: journal {journal}" in err.splitlines()
