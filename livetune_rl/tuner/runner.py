"""Run a :class:`~livetune_rl.tuner.policy.HillClimbPolicy` against a live run over gRPC.

The tuner sees only what any user sees: the run's watch stream (values, and the ``evaluate``
events the training loop journals) and it acts only through ``SetVariables``, with
compare-and-set, so a change a person makes meanwhile is never overwritten: the tuner notices
the conflict, forgets its trial and starts again from the person's values.

Example::

    from livetune_rl import connect
    from livetune_rl.tuner import PolicyConfig, Tuner

    with connect(run="ht-ppo") as client:
        Tuner(client, PolicyConfig(metric="mean_fitness", knobs=("reward.*",))).run()
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..client import Client, ClientError
from ..evaluation import EVENT, EvaluateEvent
from ..values import Value
from .policy import Action, HillClimbPolicy, PolicyConfig


class Tuner:
    """Watches ``event`` records for ``config.metric`` and applies the policy's actions.

    Args:
        client: a connected :class:`~livetune_rl.client.Client`.
        config: the policy's settings.
        event: name of the journal events carrying the metric (the SB3 callback's
            ``evaluate``).
        log: optional JSONL file of every observation and decision.
        echo: print decisions.
    """

    def __init__(self, client: Client, config: PolicyConfig, *, event: str = EVENT,
                 log: str | Path | None = None, echo: bool = True) -> None:
        self.client = client
        self.config = config
        self.event = event
        self.log_path = Path(log) if log is not None else None
        self.echo = echo
        self.policy: HillClimbPolicy | None = None
        self.values: dict[str, Value] = {}
        self.versions: dict[str, int] = {}
        self.decisions: list[dict[str, Any]] = []

    def _record(self, entry: dict[str, Any]) -> None:
        entry = {"t": time.time(), **entry}
        self.decisions.append(entry)
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")
        if self.echo and entry.get("action"):
            print(f"tuner: step {entry.get('step')}: {entry['reason']}", flush=True)

    def _apply(self, action: Action, step: int | None) -> None:
        expected = {n: self.versions[n] for n in action.values if n in self.versions}
        try:
            changes = self.client.set(action.values, expected=expected)
        except ClientError as exc:
            if exc.code.name == "FAILED_PRECONDITION":
                assert self.policy is not None
                self.policy.forget()  # someone changed it under us: start from their values
            self._record({"step": step, "action": action.kind, "values": action.values,
                          "reason": f"{action.reason}; refused: {exc}", "error": True})
            return
        for change in changes:
            self.values[change.name] = change.new  # type: ignore[assignment]
            self.versions[change.name] = change.v
        self._record({"step": step, "action": action.kind, "values": action.values,
                      "reason": action.reason})

    def run(self, max_seconds: float | None = None) -> list[dict[str, Any]]:
        """Tune until the run ends (or ``max_seconds``); returns the decision log."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            for item in self.client.watch(timeout=max_seconds):
                if item.snapshot is not None:
                    variables = item.snapshot.state.variables
                    self.values = {v.name: v.value for v in variables}
                    self.versions = {v.name: v.version for v in variables}
                    if self.policy is None:
                        self.policy = HillClimbPolicy(self.config, variables)
                    else:
                        self.policy.forget()  # resynced after lagging
                    continue
                change = item.change
                if change is None or self.policy is None:
                    continue
                if change.kind == "set":
                    self.values[change.name] = change.new  # type: ignore[assignment]
                    self.versions[change.name] = change.v
                elif change.kind == "event" and change.name == self.event:
                    evaluation = EvaluateEvent.from_data(change.data)
                    metric = evaluation.metric(self.config.metric)
                    if metric is None:
                        continue
                    action = self.policy.observe(
                        metric, self.values, step=change.step,
                        total=evaluation.total_timesteps,
                        episodes=evaluation.train_episodes or None)
                    self._record({"step": change.step, "metric": metric,
                                  "values": {n: self.values[n] for n in self.policy.tunables}})
                    if action is not None:
                        self._apply(action, change.step)
                if deadline is not None and time.monotonic() > deadline:
                    break
        except ClientError as exc:
            if exc.code.name != "DEADLINE_EXCEEDED":
                raise
        return self.decisions
