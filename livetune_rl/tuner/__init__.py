"""The automated feedback-driven tuner: a client like any other.

It watches a run's evaluation results through the public gRPC API and, when the metric
stalls, changes live variables within their bounds, keeps a change that helps and reverts one
that does not. It never reads the environment's internals: only what ``livetune watch`` shows.

Example::

    livetune tune --run ht-ppo --metric mean_fitness --knobs 'reward.*'
"""

from .policy import Action, HillClimbPolicy, PolicyConfig
from .runner import Tuner

__all__ = ["Action", "HillClimbPolicy", "PolicyConfig", "Tuner"]
