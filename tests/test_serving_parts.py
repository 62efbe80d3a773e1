"""The small parts serving is built from: ServeOptions (checked once) and EventFeed."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from livetune_rl import discovery
from livetune_rl.feed import EventFeed, Lagged
from livetune_rl.options import DEFAULT_ADDRESS, ServeError, ServeOptions, Serving
from livetune_rl.server import Server
from livetune_rl.sidecar import ProcessServer


def test_serve_options_fill_in_the_defaults_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_TOKEN", "from-env")
    options = ServeOptions(run="r")
    assert options.address is None and options.bind_address == DEFAULT_ADDRESS
    assert options.token == "from-env"
    assert isinstance(options.journal, Path) and options.journal.parent == \
        discovery.journals_dir() and options.journal.name.startswith("r-")
    assert options.journal_path == options.journal
    assert replace(options) == options  # resolving a resolved value changes nothing
    off = ServeOptions("unix:/tmp/x.sock", run="r", journal=False, tls_cert="c.pem",
                       tls_key="k.pem")
    assert off.journal is False and off.journal_path is None
    assert off.tls_cert == Path("c.pem") and replace(off) == off


def test_serve_options_refuse_what_serve_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_TOKEN", raising=False)
    with pytest.raises(ServeError, match=r"non-loopback address 0\.0\.0\.0:1 without a token"):
        ServeOptions("0.0.0.0:1", run="r")
    with pytest.raises(ServeError, match=r"^invalid run name ''"):
        ServeOptions(run="")
    with pytest.raises(ServeError, match="max_calls_per_second must be a positive number"):
        ServeOptions(run="r", max_calls_per_second=0)


def test_both_servers_are_a_serving() -> None:
    assert issubclass(Server, Serving) and issubclass(ProcessServer, Serving)


def test_feed_keeps_order_then_tells_how_many_were_dropped() -> None:
    overflows: list[int] = []
    feed: EventFeed[int] = EventFeed(3, on_overflow=lambda: overflows.append(1))
    for n in range(10):
        feed.push(n)
    assert overflows == [1] and feed.buffered == 3 and feed.dropped == 7
    assert [feed.take() for _ in range(3)] == [0, 1, 2]
    assert feed.take() == Lagged(7) and feed.take() == Lagged(7)  # from then on
    unbounded: EventFeed[int] = EventFeed(0)
    for n in range(5000):
        unbounded.push(n)
    assert unbounded.buffered == 5000 and unbounded.dropped == 0


def test_feed_wakes_its_reader_once_per_burst_and_on_close() -> None:
    wakes: list[int] = []
    feed: EventFeed[int] = EventFeed(10, on_ready=lambda: wakes.append(feed.buffered))
    feed.push(1)
    feed.push(2)
    assert wakes == [1]  # only the push into the empty feed wakes the reader
    assert feed.take() == 1 and feed.take() == 2 and feed.take() is None
    feed.push(3)
    assert wakes == [1, 1]
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.extend([feed.get(), feed.get(), feed.get()]))
    reader.start()
    feed.close()
    reader.join(timeout=5)
    assert got == [3, None, None]  # what it held is still read, then None
    feed.push(4)  # ignored once closed
    assert feed.buffered == 0 and feed.get(timeout=0.01) is None
