"""Inside a Ray Tune trial: serve the trial's registry and list it in the cluster's directory.

Wrap the training of a Tune function trainable in :func:`live_trial`; the trial then serves
its registry like any livetune run (the same CLI, journal and API), reported to Tune as
usual, and ``livetune runs --ray`` lists it until it ends or dies::

    from ray import tune
    from stable_baselines3 import PPO
    import livetune_rl as lt
    from livetune_rl.ray import live_trial, TuneReportCallback
    from livetune_rl.sb3 import LiveTuneCallback

    def train(config):
        registry = lt.Registry()
        with live_trial(registry):
            model = PPO("MlpPolicy", "CartPole-v1", learning_rate=config["lr"])
            model.learn(50_000, callback=[LiveTuneCallback(registry, serve=False),
                                          TuneReportCallback(every=2048)])

    tune.Tuner(train, param_space={"lr": tune.grid_search([3e-4, 1e-3])}).fit()
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import ray
import ray.exceptions
from ray import tune

from ..options import Serving
from ..registry import Registry, default_registry
from .directory import TrialEndpoint, directory

_NOT_IN_RUN_NAMES = re.compile(r"[^A-Za-z0-9_.-]")


def _run_name(trial_name: str) -> str:
    """A local run name (``livetune runs`` on the trial's node) from Tune's trial name."""
    name = _NOT_IN_RUN_NAMES.sub("-", trial_name).lstrip(".-") or "trial"
    return name[:64]


@contextmanager
def live_trial(registry: Registry | None = None, *, bind: Literal["loopback", "node"] = "loopback",
               token: str | None = None, journal: str | os.PathLike[str] | None = None,
               out_of_process: bool = True, heartbeat: float = 2.0,
               ttl: float | None = None) -> Iterator[Serving]:
    """Serve ``registry`` for the duration of the block, listed in the cluster's directory.

    :param registry: the trial's registry (default: the process-wide one). Each trial runs in
        its own process, so the default is one registry per trial.
    :param bind: ``loopback`` (127.0.0.1: reachable from the trial's node only) or ``node``
        (the node's IP address, for a CLI on another node; needs a ``token``, as any
        non-loopback bind does).
    :param token: bearer token the trial's server requires (default ``$LIVETUNE_TOKEN``).
    :param journal: journal path (default: ``journal.jsonl`` in Tune's trial directory).
    :param out_of_process: serve from a child process (default, as ``livetune train``), so
        clients cost the trial almost no CPU; False serves from a thread.
    :param heartbeat: seconds between renewals of the directory entry.
    :param ttl: seconds without a heartbeat after which the entry is dropped (default: three
        heartbeats).
    :yields: the started :class:`~livetune_rl.options.Serving`.
    """
    from ..server import serve

    if heartbeat <= 0:
        raise ValueError(f"heartbeat must be > 0 seconds, not {heartbeat!r}")
    ttl = 3 * heartbeat if ttl is None else ttl
    if ttl <= heartbeat:
        raise ValueError(f"ttl ({ttl!r} s) must exceed the heartbeat ({heartbeat!r} s), or a "
                         "live trial would drop out of the listing between two heartbeats")
    context = tune.get_context()
    trial_id = context.get_trial_id()
    if trial_id is None:
        raise RuntimeError("live_trial() runs inside a Ray Tune trial (a function passed to "
                           "tune.Tuner); outside one, use livetune_rl.serve()")
    node = ray.util.get_node_ip_address()
    host = "127.0.0.1" if bind == "loopback" else node
    if journal is None:
        journal = Path(context.get_trial_dir()) / "journal.jsonl"
    registry = registry if registry is not None else default_registry()
    server = serve(f"{host}:0", run=_run_name(context.get_trial_name()), registry=registry,
                   token=token, journal=journal, out_of_process=out_of_process, quiet=True)
    endpoint = TrialEndpoint(
        experiment=context.get_experiment_name(), trial_id=trial_id,
        trial_name=context.get_trial_name(), node=node, address=server.address,
        pid=os.getpid(), started=time.time(), token_required=bool(server.options.token),
        journal=str(server.journal_path or ""), ttl=ttl)
    actor = directory(create=True)
    ray.get(actor.put.remote(endpoint))
    stop = threading.Event()

    def renew() -> None:
        nonlocal actor
        while not stop.wait(heartbeat):
            try:
                if not ray.get(actor.beat.remote(trial_id), timeout=ttl):
                    ray.get(actor.put.remote(endpoint), timeout=ttl)  # dropped: list it again
            except ray.exceptions.RayActorError:  # the directory is gone: start a new one
                actor = directory(create=True)
            except (ray.exceptions.RayError, TimeoutError):  # retried at the next beat
                continue

    beats = threading.Thread(target=renew, name="livetune-trial-heartbeat", daemon=True)
    beats.start()
    try:
        yield server
    finally:
        stop.set()
        beats.join(timeout=ttl)
        try:
            ray.get(actor.remove.remote(trial_id), timeout=ttl)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # the directory is gone or slow: the entry expires after its ttl anyway
        finally:
            server.stop()
