"""The messages between a training process and its serving process (out-of-process serving).

``serve(out_of_process=True)`` links the two processes with one socket pair
(:mod:`livetune_rl.sidecar` is the training side, :mod:`livetune_rl.sidecar_child` the serving
side). Every message is one of the frozen dataclasses below, pickled by
:class:`multiprocessing.connection.Connection`; each side dispatches on the class. Variables
and triggers travel as their state records (:mod:`livetune_rl.state`), and an error crosses
as a :class:`RemoteError` that raises the same exception class on the other side.

Example::

    >>> from livetune_rl.values import UnknownNameError
    >>> error = RemoteError.of(UnknownNameError("learning_rat", ["learning_rate"]))
    >>> raised = error.exception()
    >>> type(raised).__name__, raised.suggestions
    ('UnknownNameError', ['learning_rate'])
    >>> str(raised)
    "no variable named 'learning_rat'; did you mean learning_rate?"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import ChangeEvent
from .options import ServeError, ServeOptions, TrainingUnavailableError
from .state import TriggerState, VariableState
from .values import (
    DuplicateNameError,
    InvalidNameError,
    InvalidValueError,
    LiveTuneError,
    UnknownNameError,
    Value,
    VersionConflictError,
)

# the exceptions that keep their class across the link; any other arrives as LiveTuneError
_KNOWN: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    InvalidValueError, InvalidNameError, UnknownNameError, DuplicateNameError,
    VersionConflictError, ServeError, TrainingUnavailableError, LiveTuneError, OSError)}


@dataclass(frozen=True)
class RemoteError:
    """An exception raised on one side of the link, to be raised again on the other.

    It keeps the class (for the exceptions of this package and ``OSError``, which the
    server maps to gRPC status codes), the message and the simple attributes (such as
    :class:`~livetune_rl.values.UnknownNameError`'s ``suggestions``).
    """

    kind: str
    message: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> RemoteError:
        """What to send for ``exc``."""
        kind = "OSError" if isinstance(exc, OSError) else type(exc).__name__
        if kind not in _KNOWN:
            kind = "LiveTuneError"
            message = str(exc) if isinstance(exc, LiveTuneError) \
                else f"{type(exc).__name__}: {exc}"
        else:
            message = str(exc)
        simple = (str, int, float, bool, type(None), list, tuple)
        attributes = {k: v for k, v in vars(exc).items()
                      if isinstance(v, simple) and kind != "OSError"}
        return cls(kind, message, attributes)

    def exception(self) -> Exception:
        """The exception to raise here: same class, message and simple attributes."""
        cls = _KNOWN.get(self.kind, LiveTuneError)
        exc = cls.__new__(cls)
        Exception.__init__(exc, self.message)
        vars(exc).update(self.attributes)
        return exc


@dataclass(frozen=True)
class VariableDefinition:
    """A variable of the training process to mirror; its custom check (if ``checked``) stays
    there and is asked for with :class:`CheckRequest`."""

    state: VariableState
    checked: bool


@dataclass(frozen=True)
class TriggerDefinition:
    """A trigger of the training process to mirror."""

    state: TriggerState


Definition = VariableDefinition | TriggerDefinition


# --------------------------------------------------------------- training -> serving
@dataclass(frozen=True)
class Start:
    """The first message: what to serve, and the registry to mirror."""

    options: ServeOptions
    pid: int  # the training process: told to clients, watched for liveness
    definitions: tuple[Definition, ...]
    version: int  # the registry's version: the replica continues from it
    adopt_journal: bool  # the journal exists and is the run's: append, no start record
    check_timeout: float  # seconds a custom check may take in the training process
    niceness: int  # added to the serving process's nice value


@dataclass(frozen=True)
class Define:
    """A variable or trigger was defined in the training process (or replaced)."""

    definition: Definition


@dataclass(frozen=True)
class Remove:
    """A variable or trigger was removed in the training process."""

    name: str


@dataclass(frozen=True)
class Record:
    """A record the training loop made (``applied``, ``event``): journal and stream it."""

    event: ChangeEvent


@dataclass(frozen=True)
class SetRequest:
    """A set made in the training process: commit it (answered with a :class:`Reply`)."""

    ident: int
    changes: tuple[tuple[str, Value], ...]
    expected: dict[str, int]
    source: str


@dataclass(frozen=True)
class FireRequest:
    """A fire made in the training process: commit it (answered with a :class:`Reply`)."""

    ident: int
    name: str
    source: str


@dataclass(frozen=True)
class CheckAnswer:
    """The answer to a :class:`CheckRequest`: the refusal, or None if the value is fine."""

    ident: int
    refusal: str | None


@dataclass(frozen=True)
class Stop:
    """Stop serving (in-flight calls get ``grace`` seconds)."""

    grace: float | None


# --------------------------------------------------------------- serving -> training
@dataclass(frozen=True)
class Ready:
    """The serving process serves: where, and what it wrote."""

    address: str
    line: str  # its start line
    journal: Path | None
    record: Path | None  # the discovery record


@dataclass(frozen=True)
class Failed:
    """The serving process could not start."""

    error: RemoteError


@dataclass(frozen=True)
class Batch:
    """Sets and fires committed by clients (coalesced: the latest per name)."""

    events: tuple[ChangeEvent, ...]


@dataclass(frozen=True)
class Reply:
    """The answer to a :class:`SetRequest` or :class:`FireRequest`."""

    ident: int
    events: tuple[ChangeEvent, ...] = ()
    error: RemoteError | None = None


@dataclass(frozen=True)
class CheckRequest:
    """Run ``name``'s custom check on ``value`` in the training process."""

    ident: int
    name: str
    value: Value
