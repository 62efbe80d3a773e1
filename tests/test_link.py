"""The typed link of out-of-process serving: messages are dataclasses, errors keep their type."""

from __future__ import annotations

import ctypes
import errno
import pickle
from multiprocessing import Pipe

import pytest

import livetune_rl as lt
from livetune_rl import link, sidecar, sidecar_child
from livetune_rl.options import ServeError, ServeOptions
from livetune_rl.values import (
    InvalidValueError,
    LiveTuneError,
    UnknownNameError,
    VersionConflictError,
)


def across(error: BaseException) -> Exception:
    """``error`` as the other process raises it: sent as a RemoteError, pickled as the
    link's Connection does."""
    return pickle.loads(pickle.dumps(link.RemoteError.of(error))).exception()


@pytest.mark.parametrize("error", [
    UnknownNameError("lr", ["learning_rate", "clip"]),
    InvalidValueError("lr: 5 is above the maximum 1.0"),
    VersionConflictError("lr: expected version 3, but it is at version 4"),
    ServeError("cannot bind 127.0.0.1:1: address in use"),
    LiveTuneError("the serving process has exited; nothing was changed"),
])
def test_errors_keep_their_class_message_and_details(error: Exception) -> None:
    got = across(error)
    assert type(got) is type(error)
    assert str(got) == str(error)
    assert vars(got) == vars(error)  # UnknownNameError's name and suggestions too


def test_an_os_error_stays_an_os_error_and_a_foreign_one_becomes_a_livetune_error() -> None:
    got = across(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(got, OSError) and "No space left" in str(got)
    foreign = across(ZeroDivisionError("division by zero"))
    assert type(foreign) is LiveTuneError
    assert str(foreign) == "ZeroDivisionError: division by zero"


def test_unknown_name_in_the_serving_process_reaches_training_as_unknown_name_error() -> None:
    """A set the training process forwards for a name the replica does not hold is answered
    with a Reply whose error raises UnknownNameError (NOT_FOUND), with its suggestions."""
    reg = lt.Registry()
    lr = lt.LiveVariable("learning_rate", 0.1, min=0.0, max=1.0, registry=reg)
    training_end, serving_end = Pipe()
    start = link.Start(options=ServeOptions("127.0.0.1:0", run="t", journal=False),
                       pid=0, definitions=(sidecar.definition(lr),), version=reg.version,
                       adopt_journal=False, check_timeout=1.0, niceness=0)
    child = sidecar_child.Child(serving_end, start, ctypes.c_int64(-1))
    for definition in start.definitions:
        child.replica.mirror(definition)
    child.handle(link.SetRequest(1, (("learning_rat", 0.2),), {}, "test"))
    reply = training_end.recv()
    assert isinstance(reply, link.Reply) and reply.ident == 1 and not reply.events
    assert reply.error is not None
    error = reply.error.exception()
    assert isinstance(error, UnknownNameError)
    assert error.suggestions == ["learning_rate"]
    child.handle(link.SetRequest(2, (("learning_rate", 0.2),), {"learning_rate": 0}, "test"))
    reply = training_end.recv()
    assert reply.error is None and [(e.name, e.new, e.v) for e in reply.events] == [
        ("learning_rate", 0.2, 1)]
