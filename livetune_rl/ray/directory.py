"""Where the live trials of a Ray cluster can be found: one named actor holds their endpoints.

Each trial that serves a registry (:func:`livetune_rl.ray.live_trial`) puts a
:class:`TrialEndpoint` into the cluster's directory, a detached actor named
``livetune-trials`` in the Ray namespace ``livetune`` (created by the first trial that needs it,
with no CPU of its own), and renews it with a heartbeat. An entry whose heartbeat stopped for
longer than its ``ttl`` (a trial killed with its process, a node lost) is dropped the next time
anyone lists, and a trial that ends removes its own, so the listing holds the live trials only.
Should the directory itself be lost, the next heartbeat of each live trial starts a new one
and lists the trial again.
Times are taken from the actor's clock, so nodes with skewed clocks agree.

Any process connected to the cluster can read it (``livetune runs --ray``)::

    import ray
    from livetune_rl.ray import list_trials

    ray.init(address="auto")
    for trial in list_trials():
        print(trial.run, trial.address, trial.node)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..discovery import RunRecord

NAMESPACE = "livetune"
ACTOR_NAME = "livetune-trials"


@dataclass(frozen=True)
class TrialEndpoint:
    """How to reach one live trial.

    :param experiment: Tune's experiment name.
    :param trial_id: Tune's trial id (unique in the experiment).
    :param trial_name: Tune's trial name.
    :param node: IP address of the node the trial runs on.
    :param address: the trial's livetune gRPC address.
    :param pid: the trial's process id (on its node).
    :param started: when the trial started serving (seconds since the epoch, trial's clock).
    :param token_required: whether calls need the run's token.
    :param journal: the trial's journal path (on its node).
    :param ttl: seconds without a heartbeat after which the entry is dropped.
    :param last_seen: the directory's time of the last heartbeat (set by the directory).
    """

    experiment: str
    trial_id: str
    trial_name: str
    node: str
    address: str
    pid: int
    started: float
    token_required: bool = False
    journal: str = ""
    ttl: float = 10.0
    last_seen: float = 0.0

    @property
    def run(self) -> str:
        """``EXPERIMENT/TRIAL``: the name ``--run`` matches (``--run 'exp/*'``).

        >>> TrialEndpoint("ppo", "a1_00000", "train_a1_00000", "10.0.0.2", "10.0.0.2:5", 7,
        ...               0.0).run
        'ppo/train_a1_00000'
        """
        return f"{self.experiment}/{self.trial_name}"

    def record(self) -> RunRecord:
        """The trial as a run record, for the commands that call runs."""
        return RunRecord(self.run, self.address, self.pid, self.started, self.journal,
                         self.token_required)


class TrialDirectory:
    """The directory's state (the named actor runs one of these): endpoints by trial id.

    >>> now = [100.0]
    >>> d = TrialDirectory(clock=lambda: now[0])
    >>> d.put(TrialEndpoint("e", "t1", "t1", "n", "n:1", 1, 0.0, ttl=5.0))
    >>> [e.trial_id for e in d.list()]
    ['t1']
    >>> now[0] = 106.0                  # no heartbeat for 6 s, beyond its ttl of 5 s
    >>> d.list(), d.beat("t1")
    ([], False)
    """

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, TrialEndpoint] = {}

    def put(self, endpoint: TrialEndpoint) -> None:
        """Add or replace the entry of ``endpoint.trial_id``."""
        self._entries[endpoint.trial_id] = replace(endpoint, last_seen=self._clock())

    def beat(self, trial_id: str) -> bool:
        """Renew an entry; False if it is unknown (dropped: the trial should put it again)."""
        entry = self._entries.get(trial_id)
        if entry is None:
            return False
        self._entries[trial_id] = replace(entry, last_seen=self._clock())
        return True

    def remove(self, trial_id: str) -> None:
        self._entries.pop(trial_id, None)

    def list(self) -> list[TrialEndpoint]:
        """Live entries, oldest first; expired ones are dropped."""
        now = self._clock()
        for trial_id, entry in list(self._entries.items()):
            if now - entry.last_seen > entry.ttl:
                del self._entries[trial_id]
        return sorted(self._entries.values(), key=lambda e: (e.started, e.trial_id))


def directory(create: bool = True) -> Any:
    """The cluster's directory actor (this process must be connected to Ray); with
    ``create`` it is started if no trial has started it yet. None if absent and not created."""
    if create:
        # Outside any placement group: a trial's group (Tune puts a trial's child actors in
        # it) is removed when that trial ends, and the directory must outlive every trial.
        actor = ray.remote(TrialDirectory).options(
            name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            num_cpus=0, max_concurrency=1,
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
        return actor.remote()
    try:
        return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def list_trials(address: str | None = None, timeout: float = 10.0) -> list[TrialEndpoint]:
    """The live trials of a Ray cluster, oldest first.

    :param address: the cluster to connect to (``auto``, ``HOST:PORT`` of its GCS, or
        ``ray://...``) when this process is not connected yet; it is disconnected again
        afterwards. None: the cluster this process is connected to (or ``auto``).
    :param timeout: seconds to wait for the directory's answer.
    :raises TimeoutError: the directory did not answer in time.
    """
    connected_here = False
    if not ray.is_initialized():
        ray.init(address=address or "auto", namespace=NAMESPACE, logging_level="ERROR",
                 log_to_driver=False, configure_logging=False)
        connected_here = True
    try:
        actor = directory(create=False)
        if actor is None:
            return []
        try:
            return list(ray.get(actor.list.remote(), timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"the cluster's livetune directory did not answer within "
                               f"{timeout:g} s (a cluster too busy to run its actor?); try "
                               "again") from None
    finally:
        if connected_here:
            ray.shutdown()
