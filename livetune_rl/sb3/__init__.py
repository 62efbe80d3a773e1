"""Stable-Baselines3 integration: callbacks that make live knobs stick, live schedules that
pickle cleanly, and a replay buffer that re-labels rewards when the reward design changes.

``LiveTuneCallback`` composes the small callbacks (``RewardCallback``, ``KnobsCallback``,
``EpisodeTermsCallback``, ``TriggersCallback``, ``ServeCallback``); each can also be used
alone in a ``CallbackList`` of your own. With nothing serving the registry,
``LiveTuneCallback()`` serves it itself while training (``ServeCallback``).

Example::

    from stable_baselines3 import PPO
    import livetune_rl as lt
    from livetune_rl.sb3 import LiveTuneCallback

    model = PPO("MlpPolicy", "CartPole-v1")
    with lt.serve(run="cartpole"):
        model.learn(200_000, callback=LiveTuneCallback())
"""

from .algorithm_knobs import KNOBS, KnobDef, knobs_for, optimizers
from .buffers import RelabelingReplayBuffer
from .callback import LiveTuneCallback
from .checkpoint import Checkpointer, load_checkpoint, prune_checkpoints
from .episodes import EpisodeTermsCallback
from .evaluation import Evaluator
from .knobs import KnobsCallback
from .replay import ReplayCallback, StartValuesCallback
from .reward import RewardCallback
from .schedules import LiveSchedule, live_schedule
from .serving import ServeCallback
from .train_stats import TrainStatsCallback
from .triggers import TriggersCallback

__all__ = [
    "KNOBS",
    "Checkpointer",
    "EpisodeTermsCallback",
    "Evaluator",
    "KnobDef",
    "KnobsCallback",
    "LiveSchedule",
    "LiveTuneCallback",
    "RelabelingReplayBuffer",
    "ReplayCallback",
    "RewardCallback",
    "ServeCallback",
    "StartValuesCallback",
    "TrainStatsCallback",
    "TriggersCallback",
    "knobs_for",
    "live_schedule",
    "load_checkpoint",
    "optimizers",
    "prune_checkpoints",
]
