"""The bounded "watch with lagged" buffer between a registry's writer and one reader.

A watcher subscribes :meth:`EventFeed.push` to a registry: the writer thread pushes every
change without ever blocking, and one reader takes them in order. A reader that falls
``maxsize`` events behind is not waited for and does not make memory grow: further events are
dropped, and once the reader has taken what was buffered it gets a :class:`Lagged` (how many
were dropped) instead of silently missing them, so it can take a fresh snapshot. Both
:meth:`livetune_rl.registry.Registry.watch` (a blocking iterator) and the gRPC ``Watch``
stream (asyncio, woken through ``on_ready``) read through one.

Example::

    >>> feed = EventFeed(maxsize=2)
    >>> for n in range(5):
    ...     feed.push(n)
    >>> feed.take(), feed.take(), feed.take(), feed.take()
    (0, 1, Lagged(dropped=3), Lagged(dropped=3))
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Lagged:
    """The reader fell behind: ``dropped`` events were not kept for it."""

    dropped: int


class EventFeed(Generic[T]):
    """Events pushed by a writer thread, taken in order by one reader; bounded.

    :param maxsize: events kept for the reader (0 or less: no limit).
    :param on_ready: called (outside the lock, on the writer's thread) when an event arrives
        in an empty feed: how an asyncio reader is woken.
    :param on_overflow: called once, on the writer's thread, when the feed overflows.
    """

    def __init__(self, maxsize: int, *, on_ready: Callable[[], None] | None = None,
                 on_overflow: Callable[[], None] | None = None) -> None:
        self.maxsize = maxsize
        self._events: deque[T] = deque()
        self._dropped = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())
        self._on_ready = on_ready
        self._on_overflow = on_overflow

    def push(self, event: T) -> None:
        """Keep ``event`` for the reader, or count it dropped; never blocks for long."""
        woke = overflowed = False
        with self._changed:
            if self._closed:
                return
            if self._dropped:
                self._dropped += 1
                return
            if 0 < self.maxsize <= len(self._events):
                self._dropped = 1
                overflowed = True
            else:
                woke = not self._events
                self._events.append(event)
            self._changed.notify()
        if overflowed and self._on_overflow is not None:
            self._on_overflow()
        if woke and self._on_ready is not None:
            self._on_ready()

    def take(self) -> T | Lagged | None:
        """The next event; a :class:`Lagged` once the buffered ones are taken after an
        overflow (and from then on); None if nothing is waiting."""
        with self._changed:
            return self._next()

    def get(self, timeout: float | None = None) -> T | Lagged | None:
        """Like :meth:`take`, but wait up to ``timeout`` seconds (None: until an event
        arrives or the feed is closed) for one; None after the timeout, or once closed and
        the buffered events are taken."""
        with self._changed:
            self._changed.wait_for(
                lambda: bool(self._events) or bool(self._dropped) or self._closed, timeout)
            if self._closed and not self._events:
                return None
            return self._next()

    def _next(self) -> T | Lagged | None:
        if self._events:
            return self._events.popleft()
        if self._dropped:
            return Lagged(self._dropped)
        return None

    @property
    def dropped(self) -> int:
        """Events dropped since the feed overflowed (0: none)."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """Events waiting for the reader."""
        return len(self._events)

    def close(self) -> None:
        """Wake a reader waiting in :meth:`get` (it gets None); later pushes are ignored."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
