"""Population-based training (PBT, PB2) whose exploit-and-explore steps are live changes.

Ray Tune's :class:`~ray.tune.schedulers.PopulationBasedTraining` improves a population by
replacing a bottom trial with a copy of a top one: it pauses the bottom trial, sets the top
trial's config with some hyperparameters perturbed, and restarts the trial from the top
trial's checkpoint. :class:`LivePBT` makes the same decisions (same quantiles, same
perturbations, same checkpoints to copy from) and carries them out on the running trial:

1. one atomic ``livetune set`` of the perturbed hyperparameters and of ``pbt.checkpoint``
   (the top trial's checkpoint directory), journaled in the trial with the source ``pbt``,
   the step, the old and the new values;
2. a fire of ``pbt.exploit``, whose action (in :func:`~livetune_rl.ray.sb3.sb3_trainable`)
   loads that checkpoint's weights and optimizer state at the next env step.

No process restarts, no env is rebuilt, and the trial's own step count goes on. Tune's record
of the trial (its config and experiment tag) is updated as PBT would. A person's changes and
PBT's share one journal per trial, in one order; and before perturbing, LivePBT reads the
live values of the trial it copies, so a value a person set is where the perturbation starts.

A step falls back to Tune's own pause and restore, with a warning naming why, when the trial
is not in the cluster's directory, a perturbed key is not one of its live variables, the
checkpoint is not a local directory, or the trial refuses the change. Use it like PBT::

    from livetune_rl.ray.pbt import LivePBT

    scheduler = LivePBT(time_attr="timesteps_total", metric="episode_reward_mean",
                        mode="max", perturbation_interval=4096,
                        hyperparam_mutations={"learning_rate": [1e-4, 3e-4, 1e-3]})
    tune.Tuner(sb3_trainable, param_space={"checkpoint": True, ...},
               tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=4)).fit()
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2
from ray.tune.schedulers.pbt import _filter_mutated_params_from_config, _make_experiment_tag

from ..client import ClientError, connect
from .directory import TrialEndpoint, list_trials
from .sb3 import EXPLOIT_CHECKPOINT, EXPLOIT_TRIGGER

log = logging.getLogger(__name__)

SOURCE = "pbt"
"""The client name LivePBT's changes are journaled with."""


class LiveExploit(PopulationBasedTraining):
    """The live exploit-and-explore step, for PopulationBasedTraining and its subclasses
    (:class:`LivePBT`, :class:`LivePB2`): their own decisions, carried out live.

    :param args: the scheduler's arguments.
    :param token: bearer token of the trials (default ``$LIVETUNE_TOKEN``).
    :param kwargs: the scheduler's keyword arguments.
    """

    def __init__(self, *args: Any, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = token if token is not None else os.environ.get("LIVETUNE_TOKEN")
        self.live_exploits = 0
        self.restored_exploits = 0

    # ---------------------------------------------------------------- decisions
    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        """PBT's explore step, from the live values of the trial copied (a person may have
        changed them since Tune last set its config)."""
        endpoint = _endpoint(trial_to_clone)
        if endpoint is not None:
            try:
                live = self._live_values(endpoint)
            except ClientError as exc:
                log.warning("%s: could not read the live values of %s (%s); perturbing "
                            "its config as Tune knows it", type(self).__name__,
                            trial_to_clone.trial_id, exc)
            else:
                config = dict(trial_to_clone.config)
                config.update({k: v for k, v in live.items() if k in config})
                trial_to_clone.set_config(config)
        return super()._get_new_config(trial, trial_to_clone)

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        reason = self._exploit_live(trial, trial_to_clone)
        if reason is None:
            self.live_exploits += 1
            return
        log.warning("%s: %s; exploiting trial %s the way Tune does (pause and restore)",
                    type(self).__name__, reason, trial.trial_id)
        self.restored_exploits += 1
        super()._exploit(tune_controller, trial, trial_to_clone)

    # ---------------------------------------------------------------- live path
    def _exploit_live(self, trial: Trial, trial_to_clone: Trial) -> str | None:
        """Carry out one exploit on the running ``trial``; the reason it could not, if not."""
        endpoint = _endpoint(trial)
        if endpoint is None:
            return f"trial {trial.trial_id} is not in the cluster's livetune directory"
        checkpoint = self._trial_state[trial_to_clone].last_checkpoint
        path = getattr(checkpoint, "path", None)
        if not path or not Path(path).is_dir():
            return f"the checkpoint of trial {trial_to_clone.trial_id} is not a local directory"
        new_config, _ = self._get_new_config(trial, trial_to_clone)
        mutated = _filter_mutated_params_from_config(new_config, self._hyperparam_mutations)
        if any(isinstance(v, Mapping) for v in mutated.values()):
            return "a nested hyperparameter cannot be set live"
        try:
            with connect(endpoint.address, token=self.token, name=SOURCE) as client:
                names = {v.name for v in client.list().state.variables}
                missing = sorted(set(mutated) - names)
                if missing:
                    return f"{missing} are not live variables of trial {trial.trial_id}"
                client.set({**mutated, EXPLOIT_CHECKPOINT: str(path)})
                client.fire(EXPLOIT_TRIGGER)
        except ClientError as exc:
            return f"trial {trial.trial_id} refused the change ({exc})"
        state, clone_state = self._trial_state[trial], self._trial_state[trial_to_clone]
        trial.set_experiment_tag(_make_experiment_tag(state.orig_tag, new_config,
                                                      self._hyperparam_mutations))
        trial.set_config(new_config)
        # Should Tune pause and restore this trial before it reports a checkpoint of its own
        # (PBT pauses a trial to let a pending one run), it restores the weights just loaded
        # live, not its older checkpoint: Tune's own PBT records the copied checkpoint so.
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=copy.copy(checkpoint), metrics=clone_state.last_result)
        self._num_perturbations += 1
        state.last_perturbation_time = clone_state.last_perturbation_time
        state.last_train_time = clone_state.last_train_time
        log.info("%s: trial %s now runs %s with the weights of trial %s, live",
                 type(self).__name__, trial.trial_id, mutated, trial_to_clone.trial_id)
        return None

    def _live_values(self, endpoint: TrialEndpoint) -> dict[str, Any]:
        with connect(endpoint.address, token=self.token, name=SOURCE) as client:
            return {v.name: v.value for v in client.list().state.variables}


class LivePBT(LiveExploit, PopulationBasedTraining):
    """:class:`~ray.tune.schedulers.PopulationBasedTraining` applied live (see the module).

    :param args: PopulationBasedTraining's arguments.
    :param token: bearer token of the trials (default ``$LIVETUNE_TOKEN``).
    :param kwargs: PopulationBasedTraining's keyword arguments.
    """


class LivePB2(LiveExploit, PB2):
    """Ray Tune's :class:`~ray.tune.schedulers.pb2.PB2` (PBT whose explore step picks new
    values with a Gaussian-process bandit over ``hyperparam_bounds``) applied live.

    :param args: PB2's arguments.
    :param token: bearer token of the trials (default ``$LIVETUNE_TOKEN``).
    :param kwargs: PB2's keyword arguments.
    """


def _endpoint(trial: Trial) -> TrialEndpoint | None:
    return next((t for t in list_trials() if t.trial_id == trial.trial_id), None)
