"""ServeOptions and is_loopback: every rule, its boundary and its message, as a caller of
``lt.serve`` meets them (written to kill the mutants ``benchmarks/mutation.py options`` found)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from livetune_rl import discovery
from livetune_rl.options import ServeError, ServeOptions, check_serve_args, is_loopback


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:50051", True), ("127.9.9.9:1", True), ("localhost:80", True),
    ("[::1]:5000", True), ("[::2]:5000", False), ("0.0.0.0:1", False),
    ("10.1.2.3:4", False), ("example.org:443", False), ("unix:/tmp/x.sock", True),
    ("unix:relative", True), ("unix-abstract:name", False),
])
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("port", [0, 1, 65535])
def test_livetune_port_bounds_accepted(port: int) -> None:
    assert ServeOptions(run="r", journal=False, livetune_port=port).livetune_port == port


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_livetune_port_out_of_range_is_refused_with_the_rule(port: int) -> None:
    with pytest.raises(ServeError) as info:
        ServeOptions(run="r", journal=False, livetune_port=port)
    assert str(info.value) == (f"invalid livetune_port {port}: use a TCP port 0-65535 (0 picks "
                               "a free one), or None to keep it closed")


def test_non_loopback_without_token_names_every_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_TOKEN", raising=False)
    with pytest.raises(ServeError) as info:
        ServeOptions("0.0.0.0:1", run="r", journal=False)
    assert str(info.value) == (
        "refusing to serve on non-loopback address 0.0.0.0:1 without a token: anyone who can "
        "reach it could change this run. Pass token=... (or --token-file, or set "
        "LIVETUNE_TOKEN), or insecure=True if the network is trusted.")
    assert ServeOptions("0.0.0.0:1", run="r", journal=False, insecure=True).token is None
    monkeypatch.setenv("LIVETUNE_TOKEN", "from-env")
    assert ServeOptions("0.0.0.0:1", run="r", journal=False).token == "from-env"
    monkeypatch.setenv("LIVETUNE_TOKEN", "")  # empty: no token
    assert ServeOptions(run="r", journal=False).token is None


def test_tls_needs_both_and_resolves_paths() -> None:
    for one in ({"tls_cert": "c.pem"}, {"tls_key": "k.pem"}):
        with pytest.raises(ServeError) as info:
            ServeOptions(run="r", journal=False, **one)  # type: ignore[arg-type]
        assert str(info.value) == "TLS needs both tls_cert and tls_key"
    both = ServeOptions(run="r", journal=False, tls_cert="c.pem", tls_key="k.pem")  # type: ignore[arg-type]
    assert (both.tls_cert, both.tls_key) == (Path("c.pem"), Path("k.pem"))
    assert isinstance(both.tls_key, Path) and isinstance(both.tls_cert, Path)
    plain = ServeOptions(run="r", journal=False)
    assert (plain.tls_cert, plain.tls_key) == (None, None)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_call_rate_is_refused(rate: float) -> None:
    with pytest.raises(ServeError) as info:
        ServeOptions(run="r", journal=False, max_calls_per_second=rate)
    assert str(info.value) == (f"max_calls_per_second must be a positive number (None: no "
                               f"pacing), got {rate!r}")


def test_call_rate_none_turns_pacing_off_and_a_positive_one_is_kept() -> None:
    assert ServeOptions(run="r", journal=False, max_calls_per_second=None) \
        .max_calls_per_second is None
    assert ServeOptions(run="r", journal=False, max_calls_per_second=0.5) \
        .max_calls_per_second == 0.5


def test_journal_default_path_given_path_or_none(tmp_path: Path) -> None:
    for asked in (None, True):
        path = ServeOptions(run="myrun", journal=asked).journal  # type: ignore[arg-type]
        assert isinstance(path, Path) and path.parent == discovery.journals_dir()
        assert path.name.startswith("myrun-") and path.suffix == ".jsonl"
    given = ServeOptions(run="r", journal=str(tmp_path / "j.jsonl"))  # type: ignore[arg-type]
    assert given.journal == tmp_path / "j.jsonl" and given.journal_path == given.journal
    off = ServeOptions(run="r", journal=False)
    assert off.journal is False and off.journal_path is None


def test_resolving_again_changes_nothing(tmp_path: Path) -> None:
    first = ServeOptions("127.0.0.1:0", run="r", token="t", journal=tmp_path / "j.jsonl",
                         tls_cert=Path("c"), tls_key=Path("k"))
    assert dataclasses.replace(first) == first
    assert dataclasses.replace(first, run="s").journal == tmp_path / "j.jsonl"


def test_check_serve_args_gives_run_and_token() -> None:
    assert check_serve_args("127.0.0.1:0", "demo", "t0ken", None, None, False) == (
        "demo", "t0ken")
    with pytest.raises(ServeError, match="positive number"):
        check_serve_args("127.0.0.1:0", "demo", None, None, None, False,
                         max_calls_per_second=0.0)
    with pytest.raises(ServeError, match="TLS needs both"):
        check_serve_args("127.0.0.1:0", "demo", None, "c.pem", None, False)
