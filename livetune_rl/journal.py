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
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .private import open_private
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

    @property
    def unchanged(self) -> bool:
        """A set that left its variable as it was (the value it already had): acknowledged,
        never journaled (see :meth:`Registry.set <livetune_rl.registry.Registry.set>`)."""
        return self.kind == "set" and self.data.get("unchanged") is True

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
    def from_record(cls, record: Any) -> ChangeEvent:
        """Inverse of :meth:`to_record`; raises ``ValueError`` on a malformed record.

        Every field is checked, so a record that parses as JSON but could not be sent or shown
        (a text ``step``, a time beyond year 9999, a version beyond 64 bits, a non-finite
        number, data nested deeper than :data:`MAX_DATA_DEPTH`) is refused here, not later.
        """
        if not isinstance(record, dict):
            raise ValueError(f"a journal record is a JSON object, not {type(record).__name__}")
        try:
            kind = record["kind"]
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            v = _int_field(record["v"], "v")
            t = record["t"]
            if (isinstance(t, bool) or not isinstance(t, (int, float))
                    or not 0 <= t < _MAX_TIME):
                raise ValueError(f"t must be seconds since 1970 before year 10000, not {t!r}")
            name, source = record.get("name", ""), record.get("source", "")
            if not isinstance(name, str) or not isinstance(source, str):
                raise ValueError("name and source must be text")
            data = record.get("data") or {}
            if not isinstance(data, dict):
                raise ValueError(f"data must be an object, not {type(data).__name__}")
            _check_data(data, 1)
            return cls(
                v=v,
                t=float(t),
                kind=kind,
                name=name,
                old=_value_field(record.get("old"), "old"),
                new=_value_field(record.get("new"), "new"),
                source=source,
                step=_int_field(record.get("step"), "step", optional=True),
                applies=_int_field(record.get("applies"), "applies", optional=True),
                data=data,
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc}") from None


MAX_DATA_DEPTH = 32
"""Deepest nesting of lists/objects accepted in a record's ``data`` (protobuf's Struct, which
carries it to clients, stops at 100)."""
_MAX_TIME = 253402300800.0  # 10000-01-01 UTC: the first time datetime cannot show
_INT64 = 2**63 - 1


def _int_field(value: Any, key: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64:
        raise ValueError(f"{key} must be an integer from 0 to 2**63-1, not {value!r:.40}")
    return value


def _value_field(value: Any, key: str) -> Value | None:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and -_INT64 - 1 <= value <= _INT64:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(f"{key} must be a finite number, a bool or text, not {value!r:.40}")


def _check_data(obj: Any, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ValueError(f"data nested deeper than {MAX_DATA_DEPTH} levels")
    items = obj.values() if isinstance(obj, dict) else obj
    for item in items:
        if isinstance(item, (dict, list)):
            _check_data(item, depth + 1)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("data holds a non-finite number")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**53:
            raise ValueError(f"data holds an integer beyond 2**53: {item!r:.40}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a journal holds")


def parse_line(line: str | bytes) -> ChangeEvent:
    """One journal line as a :class:`ChangeEvent`; ``ValueError`` naming what is wrong."""
    try:
        return ChangeEvent.from_record(json.loads(line, parse_constant=_reject_constant))
    except RecursionError:
        raise ValueError("nested too deeply") from None


class Journal:
    """Append-only JSONL writer. Thread-safe; created readable by its owner only (0600).

    Args:
        path: file to append to (created with its parent folders if missing).
        fsync: also ``os.fsync`` after each write (survives power loss, costs milliseconds).
            The default ``flush`` survives the process being killed.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # never through a symbolic link planted where the journal goes, never someone else's
        fd = open_private(self.path, "a")
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
    """Yield the records of a journal in file order, skipping torn or corrupt lines (each
    skipped line is logged as a warning naming the file, the line number and the reason)."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield parse_line(line)
            except ValueError as exc:
                log.warning("%s:%d: skipping a torn or corrupt journal record: %s", path,
                            number, exc)


def read_journal(path: str | os.PathLike[str]) -> list[ChangeEvent]:
    """All readable records of a journal (an absent file reads as empty)."""
    try:
        return list(iter_journal(path))
    except FileNotFoundError:
        return []


_BLOCK = 1 << 16


def _lines_from_end(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` from the last line of the file to the first, read in blocks."""
    with open(path, "rb") as file:
        end = file.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - _BLOCK)
            file.seek(start)
            block = file.read(end - start) + rest
            end = start
            parts = block.split(b"\n")
            rest = parts.pop(0)  # may continue in the previous block
            offset = end + len(rest) + 1
            found = []
            for part in parts:
                found.append((offset, part))
                offset += len(part) + 1
            yield from reversed(found)
        if rest:
            yield 0, rest


def iter_journal_backwards(path: str | os.PathLike[str]) -> Iterator[ChangeEvent]:
    """The records of ``path`` from the newest to the oldest, read from the end in blocks, so
    a reader that stops early pays only for what it read. Corrupt lines are skipped with a
    warning naming their byte offset; an absent file raises ``FileNotFoundError``.

    :param path: the journal.
    """
    for offset, line in _lines_from_end(path):
        if not line.strip():
            continue
        try:
            yield parse_line(line.decode("utf-8", errors="replace"))
        except ValueError as exc:
            log.warning("%s (byte %d): skipping a torn or corrupt journal record: %s",
                        path, offset, exc)


def read_journal_tail(path: str | os.PathLike[str], *, since: int = 0, limit: int,
                      match: Callable[[str], bool] | None = None,
                      ) -> tuple[list[ChangeEvent], bool]:
    """The newest ``limit`` records with version above ``since`` (and, with ``match``, whose
    name it accepts), oldest first, and whether older ones matched too.

    Reads from the end of the file and stops as soon as it has ``limit`` + 1 records or meets
    a record at or below ``since`` (versions increase along a journal, a resumed run
    continues them), so the cost follows what is asked, not the journal's size. Corrupt lines
    are skipped with a warning naming their byte offset, as :func:`iter_journal` does.

    :param path: the journal (an absent file reads as empty).
    :param since: only versions above this one.
    :param limit: at most this many records (at least 1).
    :param match: a test on the record's name (None: every name).

    Example::

        >>> events, more = read_journal_tail("runs/x/journal.jsonl", limit=20)  # doctest: +SKIP
    """
    limit = max(1, int(limit))
    found: list[ChangeEvent] = []
    try:
        for event in iter_journal_backwards(path):
            if event.v <= since:
                break
            if match is None or match(event.name):
                found.append(event)
                if len(found) > limit:
                    break
    except FileNotFoundError:
        return [], False
    more = len(found) > limit
    return found[:limit][::-1], more
