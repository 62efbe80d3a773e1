"""The runs the panel shows, and what it streams to the page about them.

A :class:`RunLink` follows one live run through its gRPC API, as any client does: a thread
reads its ``Watch`` stream (the journal records: sets, fires, applied, evaluations,
checkpoints) and, on each snapshot, its recent history; another reads ``ListVariables`` every
``poll`` seconds and right after each change (the state of every variable and trigger, and the
run's step, from which the page draws steps/s). Nothing runs in the training process but the
calls any client makes.

The :class:`Hub` finds live runs through discovery (every ``REFRESH`` seconds: runs that start
later appear), lists ended runs from their journals (read-only), and fans every update out to
the pages connected (:meth:`Hub.subscribe`) as :class:`Message` records.

Example::

    >>> import asyncio
    >>> async def runs_listed() -> list:
    ...     hub = Hub(PanelConfig(runs_root="/nonexistent"), asyncio.get_running_loop())
    ...     return hub.summaries()
    >>> asyncio.run(runs_listed())
    []
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import discovery
from ..client import Client, ClientError, RunState
from ..journal import ChangeEvent, read_journal_tail
from ..state import RegistryState
from .config import PanelConfig
from .views import event_json, state_json

log = logging.getLogger(__name__)

CLIENT_NAME = "livetune-panel"
"""The name the panel's calls claim: journaled as the source of the changes made from it."""
MAX_EVENTS = 5000  # journal records kept (and sent to a new page) per run
MAX_PROGRESS = 3600  # step samples kept per run (an hour at one per second)
MAX_ENDED = 50  # ended runs listed, newest journals first
REFRESH = 2.0  # seconds between looks for runs that started or ended
QUEUE = 10_000  # messages a page may fall behind before it is dropped (it reconnects)
MIN_POLL = 0.1  # seconds: reads of a run's state triggered by changes come no closer

MessageType = Literal["runs", "state", "events", "progress", "status"]


@dataclass(frozen=True)
class RunSummary:
    """A run as the run list shows it; ``id`` is what the HTTP requests name it by."""

    id: str
    name: str
    live: bool
    pid: int | None = None
    address: str = ""
    journal: str = ""
    started: float | None = None
    token_required: bool = False
    tls: bool = False


@dataclass(frozen=True)
class Message:
    """One update for the page: ``type``, the run it is about (None: all) and its data."""

    type: MessageType
    run: str | None
    data: Any

    def json(self) -> dict[str, Any]:
        return {"type": self.type, "run": self.run, "data": self.data}


@dataclass
class _Held:
    """What a link knows of its run (guarded by the link's lock)."""

    state: RegistryState | None = None
    info: RunState | None = None
    events: deque[ChangeEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    progress: deque[tuple[float, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_PROGRESS))
    status: str = "connecting"
    live: bool = True


def run_id(record: discovery.RunRecord) -> str:
    """The id of a live run: its name and pid (two runs may share a name).

    Example::

        >>> run_id(discovery.RunRecord("seed-0", "127.0.0.1:1", 4242, 0.0))
        'seed-0.4242'
    """
    return f"{record.run}.{record.pid}"


def journal_id(path: Path) -> str:
    """The id of an ended run: ``journal-`` and a digest of its journal's path."""
    return "journal-" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]


class RunLink:
    """Follows one live run: a watch thread and a polling thread (see the module docstring).

    :param record: the run's discovery record (its address, and whether it serves TLS).
    :param config: the panel's token, CA certificate, timeout and poll interval.
    :param publish: called (from the link's threads) with every update.
    """

    def __init__(self, record: discovery.RunRecord, config: PanelConfig,
                 publish: Callable[[Message], None]) -> None:
        self.record = record
        self.id = run_id(record)
        self.config = config
        self._publish = publish
        tls_ca = (config.cacert or os.environ.get("LIVETUNE_CACERT")) if record.tls else None
        self.client = Client(record.address, token=config.token, tls_ca=tls_ca,
                             timeout=config.timeout, name=CLIENT_NAME)
        self._lock = threading.Lock()
        self._held = _Held()
        self._stop = threading.Event()
        self._wake = threading.Event()
        if record.tls and not tls_ca:
            self._held.status = (f"{record.address} serves TLS: give `livetune panel` its CA "
                                 "certificate (--cacert FILE or $LIVETUNE_CACERT)")
            self._stop.set()  # nothing to call it with
            return
        self._threads = [threading.Thread(target=self._watch_loop, daemon=True,
                                          name=f"panel-watch-{self.id}"),
                         threading.Thread(target=self._poll_loop, daemon=True,
                                          name=f"panel-poll-{self.id}")]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ what the page reads
    @property
    def live(self) -> bool:
        with self._lock:
            return self._held.live

    def summary(self) -> RunSummary:
        r = self.record
        return RunSummary(self.id, r.run, self.live, r.pid, r.address, r.journal, r.started,
                          r.token_required, r.tls)

    def events(self) -> list[ChangeEvent]:
        with self._lock:
            return list(self._held.events)

    def messages(self) -> list[Message]:
        """Everything a newly connected page needs about this run."""
        with self._lock:
            held = self._held
            out = [Message("status", self.id, {"status": held.status, "live": held.live})]
            if held.state is not None:
                out.append(Message("state", self.id, state_json(held.state)))
            out.append(Message("events", self.id, {"reset": True, "events": [
                event_json(e) for e in held.events]}))
            out.append(Message("progress", self.id, {"reset": True, "samples": [
                list(p) for p in held.progress]}))
        return out

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.client.close()  # ends the watch stream

    # ------------------------------------------------------------ threads
    def _status(self, status: str, *, live: bool = True) -> None:
        with self._lock:
            if (self._held.status, self._held.live) == (status, live):
                return
            self._held.status, self._held.live = status, live
        self._publish(Message("status", self.id, {"status": status, "live": live}))

    def _watch_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                for item in self.client.watch():
                    if item.snapshot is not None:
                        self._on_snapshot(item.snapshot)
                        backoff = 0.5
                    elif item.change is not None:
                        self._on_change(item.change)
                if self._stop.is_set():
                    return  # the panel closed the stream: it is stopping
                self._ended()  # the stream ended with OK: the run stopped serving on purpose
                return
            except ClientError as exc:
                if self._stop.is_set():
                    return
                if not self.record.alive():
                    self._ended()
                    return
                self._status(f"{exc.code.name}: {exc}")
            except Exception as exc:  # a bug here must not end the panel; say it
                log.exception("panel: watching %s failed", self.id)
                self._status(f"watch failed: {exc}")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def _ended(self) -> None:
        """The run is gone: say so, stop polling, let go of the channel (what was shown stays)."""
        self._status("ended", live=False)
        self._stop.set()
        self._wake.set()
        self._threads[1].join(self.config.timeout + 1)
        self.client.close()

    def _on_snapshot(self, snapshot: RunState) -> None:
        """A (re)started stream: its snapshot, then the history up to it."""
        history = self.client.history(limit=MAX_EVENTS)
        upto = snapshot.state.version
        with self._lock:
            self._held.info = snapshot
            self._held.events.clear()
            self._held.events.extend(e for e in history if e.v <= upto)
            events = [event_json(e) for e in self._held.events]
        self._status("live")
        self._publish(Message("events", self.id, {"reset": True, "events": events}))
        self._wake.set()

    def _on_change(self, event: ChangeEvent) -> None:
        with self._lock:
            held = self._held.events
            if held and event.v <= held[-1].v:
                return  # already held (the history raced the stream)
            held.append(event)
        self._publish(Message("events", self.id, {"reset": False, "events": [
            event_json(event)]}))
        if event.kind in ("set", "fire", "applied"):
            self._wake.set()  # read the state now: value, version, applied or pending

    def _poll_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.config.poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            pause = MIN_POLL - (time.monotonic() - last)
            if pause > 0:
                self._stop.wait(pause)
            last = time.monotonic()
            try:
                listed = self.client.list()
            except ClientError:
                continue  # the watch thread says what is wrong
            except Exception:
                log.exception("panel: reading %s failed", self.id)
                continue
            self._on_state(listed.state)

    def _on_state(self, state: RegistryState) -> None:
        now = time.time()
        with self._lock:
            old = self._held.state
            if old is not None and state.version < old.version:
                return  # an answer older than one already shown
            self._held.state = state
            sample = (now, state.step) if state.step is not None else None
            if sample is not None:
                self._held.progress.append(sample)  # type: ignore[arg-type]
        if old is None or old != state:
            self._publish(Message("state", self.id, state_json(state)))
        if sample is not None:
            self._publish(Message("progress", self.id, {"reset": False,
                                                        "samples": [list(sample)]}))


@dataclass(frozen=True)
class EndedRun:
    """A run that is not serving, known from its journal (read-only)."""

    summary: RunSummary
    path: Path

    def events(self) -> list[ChangeEvent]:
        """The newest :data:`MAX_EVENTS` records of the journal."""
        events, _ = read_journal_tail(self.path, limit=MAX_EVENTS)
        return events


def ended_journals(runs_root: Path, names: tuple[str, ...] = ()) -> Iterator[EndedRun]:
    """Journals of runs under ``runs_root`` (``<root>/<run>/journal.jsonl``) and in the state
    directory (runs served without a journal path), newest first, at most :data:`MAX_ENDED`;
    with ``names``, only the runs of those names."""
    found: list[tuple[float, str, Path]] = []
    with contextlib.suppress(OSError):
        for path in runs_root.glob("*/journal.jsonl"):
            found.append((path.stat().st_mtime, path.parent.name, path))
    journals = discovery.state_home() / "journals"
    with contextlib.suppress(OSError):
        for path in journals.glob("*.jsonl"):
            found.append((path.stat().st_mtime, path.stem, path))
    found.sort(reverse=True)
    count = 0
    for mtime, name, path in found:
        if names and not any(name == n or name.startswith(f"{n}-") for n in names):
            continue
        yield EndedRun(RunSummary(journal_id(path), name, False, journal=str(path),
                                  started=mtime), path)
        count += 1
        if count >= MAX_ENDED:
            return


class Hub:
    """Every run the panel shows, and the pages it streams to.

    :param config: which runs (``runs``), where ended ones are (``runs_root``), how to call.
    :param loop: the event loop of the HTTP server (updates are queued to it).
    """

    def __init__(self, config: PanelConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.links: dict[str, RunLink] = {}
        self.ended: dict[str, EndedRun] = {}
        self._queues: set[asyncio.Queue[Message | None]] = set()
        self._listed: list[RunSummary] = []
        self._lock = threading.Lock()  # refresh() runs in a worker thread, readers in the loop

    # ------------------------------------------------------------ runs
    def _wanted(self, record: discovery.RunRecord) -> bool:
        names = self.config.runs
        return not names or record.run in names or str(record.pid) in names

    def refresh(self) -> None:
        """Start following runs that started; list ended journals (blocking: file reads)."""
        records = [r for r in discovery.list_runs() if self._wanted(r)]
        journals = list(ended_journals(Path(self.config.runs_root), self.config.runs))
        with self._lock:
            for record in records:
                if run_id(record) not in self.links:
                    self.links[run_id(record)] = RunLink(record, self.config, self.publish)
            live_journals = {str(Path(link.record.journal).resolve())
                             for link in self.links.values() if link.record.journal}
            self.ended = {e.summary.id: e for e in journals
                          if str(e.path.resolve()) not in live_journals}
        listed = self.summaries()
        if listed != self._listed:
            self._listed = listed
            self.publish(Message("runs", None, [asdict(s) for s in listed]))

    def summaries(self) -> list[RunSummary]:
        """Live runs (oldest first), then runs that ended while the panel watched them, then
        ended runs from journals (newest first)."""
        with self._lock:
            links = sorted(self.links.values(), key=lambda link: link.record.started)
            ended = list(self.ended.values())
        return ([link.summary() for link in links if link.live]
                + [link.summary() for link in links if not link.live]
                + [e.summary for e in ended])

    def link(self, run: str) -> RunLink | None:
        with self._lock:
            return self.links.get(run)

    def ended_run(self, run: str) -> EndedRun | None:
        with self._lock:
            return self.ended.get(run)

    def stop(self) -> None:
        with self._lock:
            links = list(self.links.values())
        for link in links:
            link.stop()

    # ------------------------------------------------------------ pages
    def publish(self, message: Message) -> None:
        """Queue ``message`` for every page (safe from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the panel is stopping
            self.loop.call_soon_threadsafe(self._fanout, message)

    def _fanout(self, message: Message) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a page that reads nothing: drop it, it reconnects
                self._queues.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def subscribe(self) -> tuple[asyncio.Queue[Message | None], list[Message]]:
        """A queue of the updates from now on, and what a new page needs first."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(QUEUE)
        self._queues.add(queue)
        first = [Message("runs", None, [asdict(s) for s in self.summaries()])]
        with self._lock:
            links = list(self.links.values())
        for link in links:
            first.extend(link.messages())
        return queue, first

    def unsubscribe(self, queue: asyncio.Queue[Message | None]) -> None:
        self._queues.discard(queue)

    def close_pages(self) -> None:
        """End every page's stream (the panel is stopping)."""
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._queues.clear()
