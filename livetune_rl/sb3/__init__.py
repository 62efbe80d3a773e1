"""Stable-Baselines3 integration: a callback that makes live knobs stick, live schedules that
pickle cleanly, and a replay buffer that re-labels rewards when the reward design changes.

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
from .callback import LiveTuneCallback, load_checkpoint
from .schedules import LiveSchedule, live_schedule

__all__ = [
    "KNOBS",
    "KnobDef",
    "LiveSchedule",
    "LiveTuneCallback",
    "RelabelingReplayBuffer",
    "knobs_for",
    "live_schedule",
    "load_checkpoint",
    "optimizers",
]
