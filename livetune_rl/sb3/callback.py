"""``LiveTuneCallback``: live hyperparameters, reward weights and triggers for any SB3 model.

Attach it to ``learn()``. It registers, in the process's registry, a live variable for every
knob the running algorithm has (see :mod:`livetune_rl.sb3.algorithm_knobs`), one per reward
weight of a :class:`~livetune_rl.wrappers.LiveRewardWrapper` found in the env, and the
triggers ``checkpoint``, ``evaluate`` and ``stop``. Everything is applied on the main thread:

* reward weights, DQN's ``exploration_rate`` and triggers: in ``_on_step``, so a change or a
  fire takes effect within one env step. Weights are pushed to every env of the vector with
  ``env_method`` (DummyVecEnv or SubprocVecEnv alike), so all envs switch at the same step;
* optimizer and loss knobs: at the end of each rollout, right before ``train()`` (for
  on-policy algorithms once per rollout; for off-policy ones before every training phase).

Each applied change is recorded as ``live/<name>`` in SB3's logger (TensorBoard) and as an
``applied`` journal record carrying ``num_timesteps``. The callback puts nothing on the model
but picklable schedules, so ``model.save()`` works while it is attached.

Example::

    import livetune_rl as lt
    from livetune_rl.sb3 import LiveTuneCallback

    model = PPO("MlpPolicy", env)
    with lt.serve(run="ppo-demo"):
        model.learn(1_000_000, callback=LiveTuneCallback(run_dir="runs/ppo-demo"))
    # elsewhere: livetune set learning_rate 1e-4 ; livetune fire checkpoint
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from ..knobs import Knobs
from ..private import check_trusted, chmod_private_file, ensure_private_dir, write_private
from ..registry import LiveTrigger, LiveVariable, Registry, default_registry
from ..values import Check, LiveTuneError, Value
from .algorithm_knobs import knobs_for
from .buffers import RelabelingReplayBuffer

log = logging.getLogger(__name__)

TriggerAction = Callable[["LiveTuneCallback"], "Mapping[str, Any] | None"]


@dataclass
class _UserKnob:
    name: str
    default: Value
    apply: Callable[[Any], Any]
    min: float | int | None
    max: float | int | None
    choices: Sequence[Value] | None
    help: str
    check: Check | None
    every_step: bool


_MAX_TRAIN_EPISODES = 1000
"""Training episodes kept between two evaluations (the oldest are dropped beyond)."""


class LiveTuneCallback(BaseCallback):
    """Make an SB3 run live-tunable. See the module docstring for what is applied when.

    Args:
        registry: where to register (default: the process-wide registry, the one
            ``livetune_rl.serve()`` serves by default).
        knobs: only these algorithm knobs (default: every knob the algorithm has).
        reward: own the reward weights of a ``LiveRewardWrapper`` in the env (pushed mode).
        run_dir: checkpoints go to ``run_dir/checkpoints/step_<n>/``.
        eval_env: env for the ``evaluate`` trigger and ``eval_every`` (default: none; the
            trigger then evaluates on a copy-free fallback, the training env is never used).
        n_eval_episodes: episodes per evaluation.
        eval_every: also evaluate every this many env steps (0: only on the trigger).
        checkpoint_every: also checkpoint every this many env steps (0: only on the trigger).
        keep_checkpoints: keep the newest this many of the ``checkpoint_every`` checkpoints
            (0: all). Checkpoints of the ``checkpoint`` trigger, ``final`` and ``interrupted``
            are never deleted; of a checkpoint directory only the files it wrote are removed.
        reset_reward_stats: with ``VecNormalize(norm_reward=True)`` in the stack, reset its
            return statistics when the reward weights change (else only warn).
        episode_info_keys: numbers to collect from each training episode's last ``info``
            (e.g. ``("fitness",)``). With the per-term totals a ``LiveRewardWrapper`` reports
            (``reward.<component>``), they go into the next ``evaluate`` event as
            ``train_episodes``: one list per key, one value per training episode ended since
            the previous evaluation (what ``livetune tune --credit`` correlates), and each
            key's mean as ``train_mean_<key>`` (a metric ``livetune tune --metric`` can
            follow: the training policy explores, so it answers a change before the
            deterministic evaluation does).
        verbose: 1 prints every applied change.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        knobs: Sequence[str] | None = None,
        reward: bool = True,
        run_dir: str | Path | None = None,
        eval_env: VecEnv | Any | None = None,
        n_eval_episodes: int = 10,
        eval_every: int = 0,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 5,
        reset_reward_stats: bool = True,
        episode_info_keys: Sequence[str] = (),
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.registry = registry if registry is not None else default_registry()
        self.only_knobs = set(knobs) if knobs is not None else None
        self.own_reward = reward
        self.run_dir = Path(run_dir) if run_dir is not None else Path(".")
        self.eval_env = eval_env
        self.n_eval_episodes = n_eval_episodes
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.reset_reward_stats = reset_reward_stats
        self.train_knobs = Knobs(self.registry)
        self.step_knobs = Knobs(self.registry)
        self.reward_vars: dict[str, LiveVariable] = {}
        self.reward_scale: LiveVariable | None = None
        self.triggers: dict[str, tuple[LiveTrigger, TriggerAction]] = {}
        self.last_evaluation: dict[str, Any] | None = None
        self.last_checkpoint: Path | None = None
        self._user_knobs: list[_UserKnob] = []
        self.episode_info_keys = tuple(episode_info_keys)
        self.train_episodes: list[dict[str, float]] = []
        self._reward_wrapped = False
        self._user_triggers: list[tuple[str, TriggerAction, str]] = []
        self._seen = -1
        self._next_eval = 0
        self._next_checkpoint = 0
        self._stop = False
        self._attached_to: BaseAlgorithm | None = None

    # ----------------------------------------------------------------- user extensions
    def add_knob(
        self,
        name: str,
        default: Value,
        apply: Callable[[Any], Any],
        *,
        min: float | int | None = None,
        max: float | int | None = None,
        choices: Sequence[Value] | None = None,
        help: str = "",
        check: Check | None = None,
        every_step: bool = False,
    ) -> LiveTuneCallback:
        """Add a knob of your own: ``apply(value)`` runs on the main thread at the rollout end
        (or at the next step with ``every_step=True``). Returns self, for chaining."""
        self._user_knobs.append(_UserKnob(name, default, apply, min, max, choices, help, check,
                                          every_step))
        return self

    def add_trigger(self, name: str, action: TriggerAction, help: str = "") -> LiveTuneCallback:
        """Add a trigger: ``action(callback)`` runs within one env step of a fire; a returned
        mapping is journaled and streamed as an event named after the trigger."""
        self._user_triggers.append((name, action, help))
        return self

    # ----------------------------------------------------------------- set-up
    def attach(self, model: BaseAlgorithm) -> None:
        """Register the knobs, reward weights and triggers for ``model`` now (``learn()`` does
        it too; call this first to have them listed before training starts)."""
        if self._attached_to is model:
            return
        self._detach()
        self.model = model
        for knob in knobs_for(model):
            if self.only_knobs is not None and knob.name not in self.only_knobs:
                continue
            knobs = self.step_knobs if knob.name == "exploration_rate" else self.train_knobs
            knobs.add(knob.name, knob.get(model), self._model_apply(knob.apply), min=knob.min,
                      max=knob.max, help=knob.help, check=knob.check(model))
        for k in self._user_knobs:
            target = self.step_knobs if k.every_step else self.train_knobs
            target.add(k.name, k.default, k.apply, min=k.min, max=k.max, choices=k.choices,
                       help=k.help, check=k.check)
        env = model.get_env()
        self._reward_wrapped = env is not None and env.has_attr("get_reward_spec")
        if self.own_reward:
            self._register_reward()
        builtin: list[tuple[str, TriggerAction, str]] = [
            ("checkpoint", lambda cb: cb.checkpoint(),
             "save model, replay buffer, VecNormalize and live values"),
            ("evaluate", lambda cb: cb.evaluate(), "evaluate the policy on the eval env now"),
            ("stop", lambda cb: cb._request_stop(), "final checkpoint, then end learn()"),
        ]
        for name, action, text in [*builtin, *self._user_triggers]:
            self.triggers[name] = (LiveTrigger(name, text, registry=self.registry), action)
        self._attached_to = model

    def _init_callback(self) -> None:
        self.attach(self.model)
        self._seen = -1
        self._next_eval = self.num_timesteps + self.eval_every
        self._next_checkpoint = self.num_timesteps + self.checkpoint_every

    def _model_apply(self, apply: Callable[[BaseAlgorithm, Any], None]) -> Callable[[Any], None]:
        return lambda value: apply(self.model, value)


    def _register_reward(self) -> None:
        env = self.training_env
        if not self._reward_wrapped:
            return
        spec = env.env_method("get_reward_spec", indices=[0])[0]
        if spec.get("live"):
            return  # the wrapper reads its own live variables in this process
        low, high = spec["bounds"]
        for component in spec["components"]:
            self.reward_vars[component] = LiveVariable(
                f"reward.{component}", float(spec["weights"][component]), min=low, max=high,
                deferred=True, help=f"reward weight of '{component}'", registry=self.registry)
        self.reward_scale = LiveVariable("reward.scale", float(spec["scale"]), min=0.0,
                                         max=float(spec.get("scale_max", 100.0)),
                                         deferred=True,
                                         help="overall reward multiplier (sigma)",
                                         registry=self.registry)

    def _detach(self) -> None:
        """Unregister what a previous attach registered (learn() called again, or re-use)."""
        self.train_knobs.close()
        self.step_knobs.close()
        for var in [*self.reward_vars.values(), self.reward_scale]:
            if var is not None and var.name in self.registry:
                self.registry.remove(var.name)
        for trig, _ in self.triggers.values():
            if trig.name in self.registry:
                self.registry.remove(trig.name)
        self.reward_vars, self.reward_scale, self.triggers = {}, None, {}
        self._attached_to = None

    def close(self) -> None:
        """Unregister every variable and trigger of this callback."""
        self._detach()

    @property
    def stopped(self) -> bool:
        """True once the ``stop`` trigger ended ``learn()``."""
        return self._stop

    def _on_training_start(self) -> None:
        self._stop = False
        self.registry.step = self.num_timesteps
        if self.reward_vars:
            self._push_reward(initial=True)

    # ----------------------------------------------------------------- safe points
    def _on_step(self) -> bool:
        registry = self.registry
        registry.step = self.num_timesteps
        if registry.version != self._seen:
            self._seen = registry.version  # first: a set racing with us is seen next step
            if self.reward_vars:
                self._push_reward()
            self._log_applied(self.step_knobs.apply_pending(self.num_timesteps))
            for trig, action in self.triggers.values():
                if trig.fired(step=self.num_timesteps):
                    self._run_trigger(trig.name, action)
        if self._reward_wrapped:  # only a LiveRewardWrapper reports episode term totals
            for info in self.locals.get("infos", ()):
                terms = info.get("episode_reward_components")
                if terms is not None:
                    self._collect_episode(terms, info)
        if self.eval_every and self.num_timesteps >= self._next_eval:
            self._next_eval = self.num_timesteps + self.eval_every
            self.evaluate()
        if self.checkpoint_every and self.num_timesteps >= self._next_checkpoint:
            self._next_checkpoint = self.num_timesteps + self.checkpoint_every
            try:
                self.checkpoint(periodic=True)
            except (OSError, LiveTuneError) as exc:  # a failing checkpoint must not end training
                log.error("livetune: periodic checkpoint failed: %s", exc)
                self.registry.record_event("checkpoint", {"error": str(exc)},
                                           step=self.num_timesteps)
        return not self._stop

    def _on_rollout_end(self) -> None:
        self._log_applied(self.train_knobs.apply_pending(self.num_timesteps))
        for name in self.train_knobs.names():
            value = self.train_knobs[name].value
            if isinstance(value, (int, float)):
                self.logger.record(f"live/{name}", value)

    def _log_applied(self, events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event.new, (int, float)):
                self.logger.record(f"live/{event.name}", event.new)
            if self.verbose:
                print(f"livetune: applied {event.name}={event.new} at step {event.step}")

    # ----------------------------------------------------------------- reward weights
    def _push_reward(self, initial: bool = False) -> None:
        variables = [*self.reward_vars.values(), self.reward_scale]
        pending = {v.name: v.version for v in variables
                   if v is not None and v.version > v.applied_version}
        if not pending and not initial:
            return
        weights = {c: float(v.value) for c, v in self.reward_vars.items()}
        scale = float(self.reward_scale.value) if self.reward_scale is not None else 1.0
        self.training_env.env_method("set_reward_weights", weights, scale)
        buffer = getattr(self.model, "replay_buffer", None)
        if isinstance(buffer, RelabelingReplayBuffer):
            buffer.set_reward_weights(weights, scale)
        data = self._on_reward_change() if pending else {}
        for name, version in pending.items():
            event = self.registry.mark_applied(name, step=self.num_timesteps, version=version,
                                               data=data)
            if event is not None:
                self._log_applied([event])

    def _on_reward_change(self) -> dict[str, Any]:
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is None or not vec_normalize.norm_reward:
            return {}
        if self.reset_reward_stats:
            vec_normalize.ret_rms = RunningMeanStd(shape=())
            vec_normalize.returns = np.zeros(vec_normalize.num_envs)
            return {"vecnormalize": "reward statistics reset"}
        warnings.warn(
            "reward weights changed under VecNormalize(norm_reward=True): its return "
            "statistics still reflect the old reward, so the scale shifts until they adapt",
            stacklevel=2,
        )
        return {"vecnormalize": "reward statistics kept (warned)"}

    # ----------------------------------------------------------------- triggers
    def _run_trigger(self, name: str, action: TriggerAction) -> None:
        try:
            result = action(self)
        except Exception as exc:  # a failing trigger must not end training
            log.exception("livetune: trigger %s failed", name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        if result is not None and name not in ("checkpoint", "evaluate"):
            self.registry.record_event(name, dict(result), step=self.num_timesteps)

    def _request_stop(self) -> dict[str, Any]:
        path = self.checkpoint(tag="final")
        self._stop = True
        return {"checkpoint": str(path)}

    def checkpoint(self, tag: str | None = None, *, periodic: bool = False) -> Path:
        """Save model, replay buffer, VecNormalize statistics and live values; journal it.

        The checkpoint directory and its files are private (0700/0600). ``periodic``
        checkpoints (``checkpoint_every``) are marked so in ``live_values.json`` and only the
        newest ``keep_checkpoints`` of them are kept; a directory that already holds a
        checkpoint made on request stays one made on request.
        """
        root = ensure_private_dir(self.run_dir / "checkpoints")
        directory = ensure_private_dir(root / (tag or f"step_{self.num_timesteps}"))
        periodic = periodic and _checkpoint_meta(directory).get("periodic", True) is True
        files = [directory / "model.zip"]
        self.model.save(files[0])
        if getattr(self.model, "replay_buffer", None) is not None:
            files.append(directory / "replay_buffer.pkl")
            self.model.save_replay_buffer(files[-1])
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:
            files.append(directory / "vecnormalize.pkl")
            vec_normalize.save(str(files[-1]))
        for path in files:
            chmod_private_file(path)
        files.append(directory / "live_values.json")
        write_private(files[-1], json.dumps({
            "algorithm": type(self.model).__name__,
            "num_timesteps": self.num_timesteps,
            "version": self.registry.version,
            "values": self.registry.values(),
            "periodic": periodic,
        }, indent=2, sort_keys=True))
        self.last_checkpoint = directory
        data: dict[str, Any] = {"path": str(directory), "files": [f.name for f in files]}
        if periodic and self.keep_checkpoints > 0:
            removed = prune_checkpoints(root, self.keep_checkpoints)
            if removed:
                data["removed"] = [str(p) for p in removed]
        self.registry.record_event("checkpoint", data, step=self.num_timesteps)
        if self.verbose:
            print(f"livetune: checkpoint written to {directory}")
        return directory

    def _collect_episode(self, terms: Mapping[str, float], info: Mapping[str, Any]) -> None:
        episode = {f"reward.{name}": float(total) for name, total in terms.items()}
        for key in self.episode_info_keys:
            value = info.get(key)
            if isinstance(value, (int, float, np.number)):
                episode[key] = float(value)
        self.train_episodes.append(episode)
        if len(self.train_episodes) > _MAX_TRAIN_EPISODES:
            del self.train_episodes[0]

    def _drain_train_episodes(self) -> dict[str, list[float]]:
        """The episodes since the last evaluation, as one list per key (keys all share)."""
        episodes, self.train_episodes = self.train_episodes, []
        if not episodes:
            return {}
        keys = set.intersection(*(set(e) for e in episodes))
        return {k: [round(e[k], 6) for e in episodes] for k in sorted(keys)}

    def evaluate(self) -> dict[str, Any]:
        """Run ``evaluate_policy`` on the eval env; log, journal and return the result."""
        if self.eval_env is None:
            result: dict[str, Any] = {"error": "no eval_env given to LiveTuneCallback"}
            self.registry.record_event("evaluate", result, step=self.num_timesteps)
            return result
        train_norm = self.model.get_vec_normalize_env()
        if train_norm is not None and hasattr(self.eval_env, "obs_rms"):
            sync_envs_normalization(self.training_env, self.eval_env)
        fitness: list[float] = []

        def collect(locals_: dict[str, Any], _globals: dict[str, Any]) -> None:
            if locals_.get("done") and "fitness" in locals_.get("info", {}):
                fitness.append(float(locals_["info"]["fitness"]))

        rewards, lengths = evaluate_policy(self.model, self.eval_env,
                                           n_eval_episodes=self.n_eval_episodes,
                                           deterministic=True, callback=collect,
                                           return_episode_rewards=True, warn=False)
        result = {
            "mean_reward": float(np.mean(rewards)),
            "std_reward": float(np.std(rewards)),
            "mean_length": float(np.mean(lengths)),
            "episodes": len(rewards),
        }
        if fitness:
            result["mean_fitness"] = float(np.mean(fitness))
            result["std_fitness"] = float(np.std(fitness))
        for key, value in result.items():
            self.logger.record(f"eval/{key}", value)
        total = getattr(self.model, "_total_timesteps", 0)
        if total:  # the run's step budget: lets a watcher (the tuner) see how long is left
            result["total_timesteps"] = int(total)
        train_episodes = self._drain_train_episodes()
        if train_episodes:
            result["train_episodes"] = train_episodes
            for key in self.episode_info_keys:  # the stochastic policy's side of the metric
                if key in train_episodes:
                    result[f"train_mean_{key}"] = float(np.mean(train_episodes[key]))
        self.last_evaluation = result
        self.registry.record_event("evaluate", result, step=self.num_timesteps)
        return result


_CHECKPOINT_FILES = ("model.zip", "replay_buffer.pkl", "vecnormalize.pkl", "live_values.json")


def _checkpoint_meta(directory: Path) -> dict[str, Any]:
    """``live_values.json`` of a checkpoint directory ({} if absent or unreadable)."""
    try:
        meta = json.loads((directory / "live_values.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def prune_checkpoints(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` periodic checkpoints under ``root``; returns what
    was removed.

    Only directories (not links) whose ``live_values.json`` says ``"periodic": true`` count;
    of each, only the files a checkpoint writes are deleted, and the directory is removed
    only if that left it empty (anything else found there is kept and logged).

    :param root: a run's ``checkpoints`` directory.
    :param keep: how many periodic checkpoints to keep (at least 1).
    """
    root = Path(root)
    periodic = []
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            meta = _checkpoint_meta(Path(entry.path))
            if meta.get("periodic") is True:
                periodic.append((int(meta.get("num_timesteps", 0)), Path(entry.path)))
    periodic.sort()
    removed = []
    for _, directory in periodic[:max(0, len(periodic) - max(1, keep))]:
        for name in _CHECKPOINT_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        try:
            directory.rmdir()
        except OSError:
            log.warning("livetune: kept %s: it holds files a checkpoint does not write",
                        directory)
        removed.append(directory)
    return removed


def load_checkpoint(directory: str | Path, env: Any = None, **kwargs: Any) -> tuple[
        BaseAlgorithm, dict[str, Value]]:
    """Load a checkpoint written by the ``checkpoint`` trigger: the model (with its replay
    buffer when one was saved) and the live values in effect. Pass ``env`` to continue
    training; wrap it in ``VecNormalize.load(directory/'vecnormalize.pkl', env)`` first when
    that file exists.

    Loading runs code from the files (SB3 unpickles them with cloudpickle), so they, their
    directory and the directory above must be the user's and not writable by anyone else;
    :class:`~livetune_rl.private.UnsafePathError` otherwise."""
    import stable_baselines3 as sb3

    directory = Path(directory)
    check_trusted(directory.parent, "a checkpoint")
    check_trusted(directory, "a checkpoint")
    for name in _CHECKPOINT_FILES:
        if (directory / name).exists():
            check_trusted(directory / name, "a checkpoint")
    meta = json.loads((directory / "live_values.json").read_text())
    algo = getattr(sb3, meta["algorithm"], None)
    if algo is None:
        raise ValueError(f"unknown algorithm {meta['algorithm']!r} in {directory}")
    model = algo.load(directory / "model.zip", env=env, **kwargs)
    if (directory / "replay_buffer.pkl").exists() and hasattr(model, "load_replay_buffer"):
        model.load_replay_buffer(directory / "replay_buffer.pkl")
    return model, dict(meta["values"])
