"""The original LiveTune API (``liveVar``, ``liveTrigger``, ``setPort``) on our registry."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

import livetune_rl as lt
from livetune_rl.compat import ListenerError, liveTrigger, liveVar, set_port, stop_port


def test_values_keep_their_type_and_read_as_calls() -> None:
    reg = lt.Registry()
    epochs, lr, amp = (liveVar(10, "epochs", registry=reg), liveVar(0.5, "lr", registry=reg),
                       liveVar(False, "amp", registry=reg))
    reg.set({"epochs": "12", "lr": "7", "amp": "True"}, source="test")
    assert (epochs(), lr(), amp()) == (12, 7.0, True)
    assert [type(v()) for v in (epochs, lr, amp)] == [int, float, bool]
    assert str(epochs) == "12" and repr(lr) == "liveVar(7.0, 'lr')"
    with pytest.raises(lt.InvalidValueError):
        reg.set({"epochs": "1.5"})  # an int variable never holds 1.5
    assert epochs() == 12 and type(epochs()) is int


def test_only_numbers_and_bools_as_in_the_original() -> None:
    with pytest.raises(TypeError, match="int, float or bool"):
        liveVar("adam", "optimizer", registry=lt.Registry())


def test_changed_is_true_once_after_an_outside_change() -> None:
    reg = lt.Registry()
    lr = liveVar(0.1, "lr", registry=reg)
    assert lr.changed() is False
    reg.set({"lr": 0.2}, source="test")
    reg.set({"lr": 0.3}, source="test")
    assert [lr.changed(), lr.changed()] == [True, False]  # two changes, one piece of news
    assert lr() == 0.3


def test_update_is_strictly_typed_and_not_reported_as_news() -> None:
    reg = lt.Registry()
    lr, epochs = liveVar(0.1, "lr", registry=reg), liveVar(3, "epochs", registry=reg)
    lr.update(0.05)
    assert lr() == 0.05 and lr.changed() is False
    for var, bad in ((lr, 5), (epochs, 2.0), (epochs, True)):
        with pytest.raises(TypeError, match="holds"):
            var.update(bad)
    assert (lr(), epochs()) == (0.05, 3)
    reg.set({"lr": 0.2}, source="test")  # outside change not read yet...
    lr.update(0.01)                      # ...is still news after a local update
    assert lr.changed() is True and lr() == 0.01


def test_bounds_are_enforced() -> None:
    reg = lt.Registry()
    batch = liveVar(64, "batch", min=1, max=1024, registry=reg)
    with pytest.raises(lt.InvalidValueError, match="above the maximum 1024"):
        reg.set({"batch": 4096})
    assert batch() == 64 and batch.changed() is False


def test_trigger_is_true_once_however_many_fires_wait() -> None:
    reg = lt.Registry()
    save = liveTrigger("save", registry=reg)
    assert save() is False
    for _ in range(3):
        reg.fire("save", source="test")
    assert [save(), save()] == [True, False]  # the original counts waiting fires once
    reg.fire("save", source="test")
    assert save() is True


def test_a_tag_made_again_replaces_its_own_earlier_object(caplog: Any) -> None:
    reg = lt.Registry()
    first = liveVar(1, "n", registry=reg)
    with caplog.at_level(logging.WARNING):
        second = liveVar(2, "n", registry=reg)
    assert "made again" in caplog.text
    reg.set({"n": 5})
    assert (first(), second()) == (1, 5)


def test_a_tag_never_takes_a_name_the_program_registered() -> None:
    reg = lt.Registry()
    lt.LiveVariable("learning_rate", 3e-4, registry=reg)
    with pytest.raises(lt.DuplicateNameError):
        liveVar(0.1, "learning_rate", registry=reg)
    with pytest.raises(lt.InvalidNameError):
        liveTrigger("not a name", registry=reg)


def test_served_over_grpc_as_usual(start_server: Callable[..., Any]) -> None:
    reg = lt.Registry()
    lr = liveVar(0.1, "lr", registry=reg)
    liveTrigger("save", registry=reg)
    server = start_server(reg, journal=False, discoverable=False)
    with lt.connect(server.address) as client:
        names = {v.name: v.value for v in client.list().state.variables}
        assert names == {"lr": 0.1}
        client.set({"lr": 0.25})
        client.fire("save")
    assert lr() == 0.25 and lr.changed() is True


def test_set_port_opens_one_listener_and_moves_it() -> None:
    reg = lt.Registry()
    liveVar(1, "n", registry=reg)
    try:
        first = liveVar.setPort(0, registry=reg)
        assert first.running and first.registry is reg
        assert set_port(first.port, registry=reg, quiet=True) is first
        with socket.socket() as holder:  # a taken port is a clear error
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            taken = holder.getsockname()[1]
            with pytest.raises(ListenerError, match=f"127.0.0.1:{taken}.*pick another port"):
                liveTrigger.setPort(taken, registry=reg)
    finally:
        stop_port()
    assert not first.running
