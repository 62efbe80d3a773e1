"""The change journal: an append-only JSONL file, one record per change, flushed per write.

Every record is a :class:`ChangeEvent`. The registry appends all records of one request in a
single ``write`` and flushes before it publishes or acknowledges anything, so a process killed
at any point leaves a file whose complete lines are exactly the acknowledged history; at most
the last line is torn, and :func:`read_journal` skips it.

Example::

    >>> from livetune_rl.journal import Journal, read_journal
    >>> with Journal("/tmp/example-journal.jsonl") as journal:   # doctest: +SKIP
    ...     journal.append([ChangeEvent(1, 1764380000.0, "set", "lr", 0.1, 0.01, "local")])
    >>> [e.new for e in read_journal("/tmp/example-journal.jsonl")]   # doctest: +SKIP
    [0.01]
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .values import Value

log = logging.getLogger(__name__)

Kind = Literal["set", "fire", "applied", "event", "start"]
KINDS: tuple[Kind, ...] = ("set", "fire", "applied", "event", "start")


@dataclass(frozen=True)
class ChangeEvent:
    """One fact of a run's control history, as journaled and as streamed to watchers.

    ``kind`` is ``set`` (a variable got a new value), ``fire`` (a trigger fired), ``applied``
    (the training loop applied the set or handled the fire whose version is ``applies``),
    ``event`` (something the training loop reports, details in ``data``) or ``start`` (the run
    started or resumed, values in effect in ``data``).
    """

    v: int
    t: float
    kind: Kind
    name: str
    old: Value | None = None
    new: Value | None = None
    source: str = ""
    step: int | None = None
    applies: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON object written to the journal (empty optional fields left out)."""
        record = asdict(self)
        for key in ("old", "new", "step", "applies"):
            if record[key] is None:
                del record[key]
        if not record["data"]:
            del record["data"]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChangeEvent:
        """Inverse of :meth:`to_record`; raises ``ValueError`` on a malformed record."""
        try:
            kind = record["kind"]
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            return cls(
                v=int(record["v"]),
                t=float(record["t"]),
                kind=kind,
                name=str(record.get("name", "")),
                old=record.get("old"),
                new=record.get("new"),
                source=str(record.get("source", "")),
                step=record.get("step"),
                applies=record.get("applies"),
                data=dict(record.get("data") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed journal record {record!r}: {exc}") from None


class Journal:
    """Append-only JSONL writer. Thread-safe; created readable by its owner only (0600).

    Args:
        path: file to append to (created with its parent folders if missing).
        fsync: also ``os.fsync`` after each write (survives power loss, costs milliseconds).
            The default ``flush`` survives the process being killed.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._fsync = fsync
        self._lock = threading.Lock()
        # A torn last line from a killed process must not glue itself to our first record.
        if self.path.stat().st_size > 0:
            with open(self.path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    self._file.write("\n")
                    self._file.flush()

    def append(self, events: Iterable[ChangeEvent]) -> None:
        """Write ``events`` in one write and flush; raises ``OSError`` if that fails."""
        text = "".join(
            json.dumps(e.to_record(), separators=(",", ":"), allow_nan=False) + "\n"
            for e in events
        )
        if not text:
            return
        with self._lock:
            self._file.write(text)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_journal(path: str | os.PathLike[str]) -> Iterator[ChangeEvent]:
    """Yield the records of a journal in file order, skipping torn or corrupt lines."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield ChangeEvent.from_record(json.loads(line))
            except ValueError:
                log.warning("%s:%d: skipping a torn or corrupt journal line", path, number)


def read_journal(path: str | os.PathLike[str]) -> list[ChangeEvent]:
    """All readable records of a journal (an absent file reads as empty)."""
    try:
        return list(iter_journal(path))
    except FileNotFoundError:
        return []
