"""The automated feedback-driven tuner: a client like any other.

It watches a run's evaluation results through the public gRPC API and, when the metric
stalls, changes live variables within their bounds, keeps a change that helps and reverts one
that does not. It never reads the environment's internals: only what ``livetune watch`` shows.

Example::

    livetune tune --run ht-ppo --metric mean_fitness --knobs 'reward.*'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .policy import Action, HillClimbPolicy, PolicyConfig

if TYPE_CHECKING:
    from .runner import Tuner

__all__ = ["Action", "HillClimbPolicy", "PolicyConfig", "Tuner"]


def __getattr__(name: str) -> Any:
    if name == "Tuner":  # imports grpc: only when a tuner runs, not for ``livetune --help``
        from .runner import Tuner

        return Tuner
    raise AttributeError(f"module 'livetune_rl.tuner' has no attribute {name!r}")
