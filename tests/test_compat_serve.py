"""``serve(livetune_port=...)``: the original ``tune`` protocol opened and closed with a run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import wait_for
from test_compat_listener import send

import livetune_rl as lt


@pytest.mark.parametrize("out_of_process", [False, True])
def test_serve_opens_the_original_protocol_and_stop_closes_it(
        tmp_path: Path, out_of_process: bool) -> None:
    reg = lt.Registry()
    lr = lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "j.jsonl",
                      discoverable=False, quiet=True, out_of_process=out_of_process,
                      livetune_port=0)
    try:
        port = server.livetune_listener.port
        send(port, "learning_rate", b"1e-4")
        send(port, "learning_rate", b"5.0")  # above max: refused
        wait_for(lambda: lr.value == 1e-4)
        with lt.connect(server.address) as client:
            state = client.get("learning_rate")
        assert (state.value, state.source) == (1e-4, "livetune-tcp")
    finally:
        server.stop()
    assert [(e.name, e.new, e.source) for e in lt.read_journal(tmp_path / "j.jsonl")
            if e.kind == "set"] == [("learning_rate", 1e-4, "livetune-tcp")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_taken_livetune_port_stops_the_server_it_started(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(lt.LiveTuneError, match="pick another port"):
            lt.serve("127.0.0.1:0", registry=lt.Registry(), journal=False, quiet=True,
                     livetune_port=holder.getsockname()[1])
