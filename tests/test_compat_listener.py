"""The listener for the original LiveTune protocol, driven by a protocol client of our own."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

import livetune_rl as lt
from livetune_rl.compat import OriginalProtocolListener, protocol


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def lookup(port: int, tag: str) -> bytes:
    """Ask the dictionary port for ``tag``: the answer (b"" when refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(protocol.lookup_request(tag))
        return read_all(sock)


def send(port: int, tag: str, payload: bytes | None) -> bytes:
    """What ``tune`` does: look ``tag`` up, ask its type, send ``payload``; returns the type."""
    var_port = int(lookup(port, tag))
    with socket.create_connection(("127.0.0.1", var_port), timeout=5) as sock:
        sock.sendall(protocol.UPDATE)
        kind = sock.recv(1024)
        if payload is not None:
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""  # the server never answers a value
    return kind


@pytest.fixture
def reg(tmp_path: Path) -> lt.Registry:
    reg = lt.Registry(journal=tmp_path / "journal.jsonl")
    lt.LiveVariable("epochs", 10, min=1, max=100, registry=reg)
    lt.LiveVariable("lr", 0.1, min=0.0, max=1.0, registry=reg)
    lt.LiveVariable("amp", False, registry=reg)
    lt.LiveVariable("optimizer", "adam", choices=["adam", "sgd"], registry=reg)
    lt.LiveTrigger("save", registry=reg)
    return reg


@pytest.fixture
def listener(reg: lt.Registry) -> Iterator[OriginalProtocolListener]:
    with OriginalProtocolListener(reg, 0, timeout=1.0, quiet=True) as listener:
        yield listener


def sets(reg: lt.Registry) -> list[tuple[str, object, str]]:
    assert reg.journal is not None
    return [(e.name, e.new, e.source) for e in lt.read_journal(reg.journal.path)
            if e.kind in ("set", "fire")]


def test_sets_of_every_type_are_journaled_with_their_source(
        reg: lt.Registry, listener: OriginalProtocolListener) -> None:
    port = listener.port
    assert send(port, "epochs", b"12") == b"int"
    assert send(port, "lr", b"1e-3") == b"float"
    assert send(port, "amp", b"True") == b"bool"
    assert send(port, "optimizer", b"sgd") == b"string"
    assert send(port, "save", protocol.FIRE) == b"trigger"
    wait_for(lambda: listener.stats.changes == 5)
    assert reg.values() == {"epochs": 12, "lr": 0.001, "amp": True, "optimizer": "sgd"}
    assert type(reg.variable("epochs").value) is int
    assert reg.trigger("save").fires == 1
    assert sets(reg) == [("epochs", 12, "livetune-tcp"), ("lr", 0.001, "livetune-tcp"),
                         ("amp", True, "livetune-tcp"), ("optimizer", "sgd", "livetune-tcp"),
                         ("save", 1, "livetune-tcp")]
    assert listener.variable_port("lr") == int(lookup(port, "lr"))  # one port per tag


@pytest.mark.parametrize(("tag", "payload", "reason"), [
    ("epochs", b"500", "above the maximum 100"),
    ("epochs", b"1.5", "is not an int"),
    ("lr", b"nan", "not a finite float"),
    ("optimizer", b"rmsprop", "not one of"),
    ("epochs", protocol.FIRE, "epochs is a variable"),
    ("save", b"1", "save is a trigger"),
])
def test_a_refused_value_changes_nothing(reg: lt.Registry, listener: OriginalProtocolListener,
                                         caplog: pytest.LogCaptureFixture, tag: str,
                                         payload: bytes, reason: str) -> None:
    before = (reg.values(), reg.trigger("save").fires, reg.version)
    send(listener.port, tag, payload)
    wait_for(lambda: listener.stats.refused == 1)
    assert (reg.values(), reg.trigger("save").fires, reg.version) == before
    assert sets(reg) == []
    assert reason in caplog.text and "nothing changed" in caplog.text


def test_no_value_sent_is_no_change(reg: lt.Registry, listener: OriginalProtocolListener) -> None:
    # tune checks the type itself: `tune -v 1.5 -t epochs` closes without sending a value
    send(listener.port, "optimizer", None)
    assert reg.variable("optimizer").value == "adam" and sets(reg) == []


def test_unknown_tag_and_garbage_get_no_answer(reg: lt.Registry,
                                               listener: OriginalProtocolListener) -> None:
    assert lookup(listener.port, "nosuch") == b""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(b"\x00\xff garbage")
        assert read_all(sock) == b""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(b"request_type: dictionary_entry - " + b"x" * 5000)  # too long
        with contextlib.suppress(ConnectionResetError):  # closed, unanswered, nothing kept
            assert read_all(sock) == b""
    wait_for(lambda: listener.stats.refused == 3)
    assert listener.variable_port("nosuch") is None


def test_a_message_split_in_pieces_still_arrives_whole(reg: lt.Registry,
                                                       listener: OriginalProtocolListener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        request = protocol.lookup_request("lr")
        for piece in (request[:10], request[10:33], request[33:]):
            sock.sendall(piece)
            time.sleep(0.05)
        assert int(read_all(sock)) == listener.variable_port("lr")


def test_slow_and_flooding_clients_are_dropped_while_others_go_on(
        reg: lt.Registry) -> None:
    with OriginalProtocolListener(reg, 0, timeout=0.5, max_connections=4,
                                  quiet=True) as listener:
        idle = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(4)]
        try:
            wait_for(lambda: listener._active == 4)
            with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as extra:
                assert read_all(extra) == b""  # over the limit: closed at once
            wait_for(lambda: listener.stats.dropped >= 1)
            started = time.monotonic()
            wait_for(lambda: listener._active == 0, timeout=5)  # the silent ones time out
            assert time.monotonic() - started < 2
        finally:
            for sock in idle:
                sock.close()
        assert listener.stats.dropped == 5
        send(listener.port, "epochs", b"20")  # and the listener still works
        wait_for(lambda: reg.variable("epochs").value == 20)


def test_pacing_bounds_the_rate_of_a_client_in_a_tight_loop(reg: lt.Registry) -> None:
    with OriginalProtocolListener(reg, 0, max_calls_per_second=20, quiet=True) as listener:
        started = time.monotonic()
        for _ in range(10):
            lookup(listener.port, "lr")
        elapsed = time.monotonic() - started
    assert elapsed >= 9 / 20 * 0.9  # ten calls at 20/s take at least ~0.45 s


def test_a_registry_served_from_another_process_is_changed_through_it(
        tmp_path: Path) -> None:
    reg = lt.Registry()
    epochs = lt.LiveVariable("epochs", 10, min=1, max=100, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "j.jsonl",
                      discoverable=False, quiet=True, out_of_process=True)
    try:
        with OriginalProtocolListener(reg, 0, quiet=True) as listener:
            send(listener.port, "epochs", b"30")
            send(listener.port, "epochs", b"300")
            wait_for(lambda: listener.stats.changes + listener.stats.refused == 2)
        assert epochs.value == 30
        with lt.connect(server.address) as client:
            state = client.get("epochs")
        assert (state.value, state.source) == (30, "livetune-tcp")
    finally:
        server.stop()


def test_a_flood_of_refusals_logs_one_warning_a_second(
        reg: lt.Registry, caplog: pytest.LogCaptureFixture) -> None:
    with OriginalProtocolListener(reg, 0, max_calls_per_second=None, quiet=True) as listener:
        for _ in range(20):
            assert lookup(listener.port, "nosuch") == b""
        wait_for(lambda: listener.stats.refused == 20)
    warnings = [r for r in caplog.records if r.name == "livetune_rl.compat.listener"
                and r.levelname == "WARNING"]
    assert 1 <= len(warnings) <= 3  # 20 refusals in well under 3 s


def test_stop_closes_every_port(reg: lt.Registry) -> None:
    listener = OriginalProtocolListener(reg, 0, quiet=True).start()
    port, var_port = listener.port, int(lookup(listener.port, "lr"))
    listener.stop()
    listener.stop()  # idempotent
    for p in (port, var_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()
    assert threading.active_count() < 50


def test_a_failing_custom_check_refuses_and_the_listener_goes_on(
        reg: lt.Registry, listener: OriginalProtocolListener) -> None:
    checks = {"fail": False}  # the default is checked at definition: it passes then

    def sometimes(value: object) -> str | None:
        if checks["fail"]:
            raise ZeroDivisionError("a bug in the program's check")
        return None

    lt.LiveVariable("odd", 1, check=sometimes, registry=reg)
    checks["fail"] = True
    send(listener.port, "odd", b"3")
    wait_for(lambda: listener.stats.refused == 1)
    assert reg.variable("odd").value == 1
    send(listener.port, "epochs", b"11")
    wait_for(lambda: reg.variable("epochs").value == 11)
