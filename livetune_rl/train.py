"""``livetune train``: the main job. An SB3 run with the registry embedded, ready to tune.

It trains an SB3 algorithm (PPO by default) on Hungry-Thirsty or any Gymnasium id, with every
knob of the algorithm and every reward weight registered live, n parallel envs, a progress
bar, TensorBoard logs, a journal and checkpoints under ``runs/<name>/``, and prints the
address plus ready-to-paste ``livetune`` commands. Nothing else needs to be started.

Example::

    livetune train --timesteps 200000 --n-envs 4 --run-name ht-ppo
    # another terminal:
    livetune ls
    livetune set reward.not_hungry_thirsty 0.5 reward.scale=5
    livetune fire evaluate
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env_ids import HUNGRY_THIRSTY_ID
from .evaluation import EVENT, EvaluateEvent
from .flags import add_options, from_args, option
from .journal import ChangeEvent
from .options import MAX_CALLS_PER_SECOND
from .private import write_private
from .registry import Registry
from .tokens import add_token_file
from .values import LiveTuneError

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback

ALGORITHMS = ("ppo", "a2c", "dqn", "sac", "td3")
FAST_DEFAULTS: dict[str, dict[str, Any]] = {
    # Chosen by a one-seed sweep on Hungry-Thirsty with the fitness-aligned reward (see
    # docs/experiments.md): fitness ~70/200 after 100k steps, ~2 min on 2 quiet cores,
    # where SB3's defaults (2048 steps x 10 epochs of batch 64) are slower and learn less by
    # then. --hyper overrides any of them.
    "ppo": {"n_steps": 256, "batch_size": 128, "n_epochs": 10, "learning_rate": 1e-3,
            "ent_coef": 0.01},
}


class TrainError(LiveTuneError, ValueError):
    """A run that cannot start as configured (its directory exists, the algorithm does not fit
    the env's action space, the checkpoint to resume is not one). ``livetune train`` prints it
    and exits with status 1."""


def _parse_pairs(text: str | None, cast: Any = float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = cast(value.strip())
    return out


def _hyper(text: str) -> dict[str, Any]:
    """One ``--hyper KEY=VALUE[,KEY=VALUE]``: JSON values, else text."""
    return _parse_pairs(text, _literal)


def _bounds(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"LOW {low} is above HIGH {high}")
    return low, high


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass
class TrainConfig:
    """Arguments of ``livetune train`` (also usable from Python: ``train(TrainConfig(...))``).

    Every field declared with :func:`~livetune_rl.flags.option` is a flag of the command,
    with the help text written here.
    """

    env: str = option(HUNGRY_THIRSTY_ID, "Gymnasium id")
    algo: str = option("ppo", "SB3 algorithm", choices=ALGORITHMS)
    timesteps: int = option(200_000, "env steps to train")
    n_envs: int = option(4, "parallel envs")
    vec: str = option("subproc", "SB3 vec env: one process per env, or all in this one",
                      choices=("subproc", "dummy"))
    seed: int = option(0, "seed of the model and the envs")
    run_name: str | None = option(None, "default: <algo>-<env>-<time>")
    runs_root: str = option("runs", "run directories go here")
    bind: str | None = option(None, "serve address (default 127.0.0.1:50051)")
    token: str | None = None  # never written anywhere; config.json says token_required
    livetune_port: int | None = option(
        None, "also accept the original LiveTune `tune` command on 127.0.0.1:PORT (tune -v "
        "VALUE -t NAME -p PORT; see docs/compat.md); default: off", metavar="PORT")
    reward: dict[str, float] = option(
        help="initial reward weights, e.g. hungry_thirsty=-1,not_hungry_thirsty=1",
        factory=dict, parse=_parse_pairs, metavar="C=W,...")
    scale: float = option(1.0, "initial reward.scale")
    reward_bounds: tuple[float, float] = option(
        (-10.0, 10.0), "bounds of the live reward weights (default -10,10)", parse=_bounds,
        metavar="LOW,HIGH")
    layout_seed: int | None = option(
        None, "Hungry-Thirsty food/water layout shared by all envs (default: seed)")
    eval_every: int = option(20_000, "evaluate every N steps (0: only on `livetune fire "
                                     "evaluate`)")
    eval_episodes: int = option(10, "episodes per evaluation")
    checkpoint_every: int = option(
        0, "also checkpoint every N steps (0: only on `livetune fire checkpoint`)")
    keep_checkpoints: int = option(
        5, "keep the newest N of the --checkpoint-every checkpoints (default %(default)s; 0: "
        "keep all). Checkpoints fired by hand, final and interrupted are never deleted",
        metavar="N")
    relabel: bool = option(True, "off-policy: do not re-label the replay buffer on reward "
                                 "changes")
    progress: bool = option(True, "no progress bar")
    hyper: dict[str, Any] = option(
        help="algorithm argument, e.g. --hyper n_steps=256 (JSON values)", factory=dict,
        parse=_hyper, repeat=True, metavar="KEY=VALUE")
    device: str = option("cpu", "torch device (auto, cpu, cuda)")
    threads: int = option(1, "torch CPU threads (1 is fastest for small MLPs)")
    resume: str | None = option(
        None, "continue a run from runs/<name>/checkpoints/<tag>: its settings, model, replay "
        "buffer and live values; the journal goes on. Loading a checkpoint runs code from "
        "it: only yours, not writable by others", metavar="CHECKPOINT_DIR")
    serve_process: bool = option(
        True, "serve from a child process (the default): requests, even a storm of them, take "
        "no CPU from the training process; changes reach it coalesced, at most ~50 times/s. "
        "--no-serve-process serves from a thread of the training process", both=True)
    max_calls_per_second: float = option(
        MAX_CALLS_PER_SECOND, "pace the calls of all clients together to N/s (default "
        "%(default)g; 0: no pacing)", metavar="N")


def describe(event: ChangeEvent) -> str | None:
    """The line ``livetune train`` prints for a journal event (None: nothing to say).

    Example::

        >>> describe(ChangeEvent(7, 0.0, "applied", "learning_rate", None, 1e-4, "training", 512))
        'livetune: step 512: learning_rate = 0.0001 applied'
        >>> describe(ChangeEvent(8, 0.0, "event", "evaluate", step=2048,
        ...          data={"mean_reward": 3.5, "mean_length": 200.0, "mean_fitness": 41.0}))
        'livetune: step 2048: evaluation: fitness 41.0 of 200 steps, mean reward 3.5'
    """
    step = f"step {event.step}" if event.step is not None else "start"
    if event.kind == "applied" and event.name not in ("checkpoint", "evaluate", "stop"):
        return f"livetune: {step}: {event.name} = {event.new} applied"
    if event.kind == "fire" and event.name == "stop":
        return f"livetune: {step}: stop requested by {event.source or 'a client'}"
    if event.kind == "event" and event.name == EVENT:
        evaluation = EvaluateEvent.from_data(event.data)
        if evaluation.error is not None:
            return f"livetune: {step}: evaluation failed: {evaluation.error}"
        parts = []
        fitness, length = evaluation.metric("mean_fitness"), evaluation.metric("mean_length")
        if fitness is not None:
            parts.append(f"fitness {fitness:.1f}" + (f" of {length:.0f} steps" if length else ""))
        reward = evaluation.metric("mean_reward")
        if reward is not None:
            parts.append(f"mean reward {reward:.3g}")
        return f"livetune: {step}: evaluation: {', '.join(parts) or 'no metrics'}"
    if event.kind == "event" and event.name == "checkpoint":
        where = event.data.get("path") or f"failed: {event.data.get('error')}"
        return f"livetune: {step}: checkpoint {where}"
    return None


def add_parser(sub: Any) -> None:
    """Add ``train`` to the ``livetune`` subcommands: a flag per :class:`TrainConfig` option,
    plus how the token is given (the config holds the token itself, never a flag)."""
    p = sub.add_parser("train", help="train an SB3 agent with live knobs (the main job)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_options(p, TrainConfig)
    add_token_file(p)
    p.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: ps shows it
    p.add_argument("--no-token", action="store_true",
                   help="with --resume: serve without a token although the run required one")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .tokens import token_from

    if args.token is not None:
        raise SystemExit("livetune: error: --token would show the token to every user of this "
                         "machine (ps, /proc) for as long as training runs; put it in a file "
                         "(chmod 600) and pass --token-file FILE, or set $LIVETUNE_TOKEN")
    if args.no_token and not args.resume:
        raise SystemExit("livetune: error: --no-token only applies with --resume (a new run "
                         "serves without a token unless given one)")
    token = "" if args.no_token else token_from(None, args.token_file)
    config = from_args(TrainConfig, args, token=token)
    try:
        if config.resume:
            config = _resumed_config(
                config, args.timesteps != TrainConfig.timesteps, drop_token=args.no_token,
                keep_given=args.keep_checkpoints != TrainConfig.keep_checkpoints)
        train(config)
    except LiveTuneError as exc:  # the library raises, the command prints and exits 1
        raise SystemExit(f"livetune: error: {exc}") from None
    return 0


def saved_config(config: TrainConfig) -> dict[str, Any]:
    """What ``config.json`` holds: the settings, with whether a token is required, never the
    token itself."""
    data = asdict(config)
    token = data.pop("token")  # "" (--no-token): none, even with $LIVETUNE_TOKEN set
    data["token_required"] = bool(token if token is not None
                                  else os.environ.get("LIVETUNE_TOKEN"))
    return data


def _resumed_config(given: TrainConfig, timesteps_given: bool, *, drop_token: bool = False,
                    keep_given: bool = False) -> TrainConfig:
    """The saved settings of the run being resumed; this invocation's budget (if given),
    address, token and progress bar. A run that required a token still requires one unless
    ``drop_token`` (``--no-token``)."""
    from .private import check_trusted

    checkpoint = Path(given.resume)  # type: ignore[arg-type]
    saved_path = checkpoint.parent.parent / "config.json"
    if not (checkpoint / "model.zip").is_file() or not saved_path.is_file():
        raise TrainError(f"{checkpoint} is not a checkpoint of a livetune train run "
                         "(expected model.zip there and ../../config.json)")
    for path in (checkpoint.parent.parent, saved_path, checkpoint.parent, checkpoint,
                 *sorted(p for p in checkpoint.iterdir() if not p.name.startswith("."))):
        check_trusted(path, "a checkpoint")  # loading it runs code from it
    data = json.loads(saved_path.read_text())
    required = bool(data.get("token_required", data.get("token")))  # old configs: the token
    saved = TrainConfig(**{k: v for k, v in data.items()
                           if k in TrainConfig.__dataclass_fields__ and k != "token"})
    if required and not given.token and not drop_token:
        raise TrainError(
            f"the run {checkpoint.parent.parent.name!r} required a token; "
            "resuming keeps that: give it with --token-file FILE or $LIVETUNE_TOKEN (or "
            "pass --no-token to serve this run without one from now on)")
    saved.resume = str(checkpoint)
    saved.run_name = checkpoint.parent.parent.name
    saved.runs_root = str(checkpoint.parent.parent.parent)
    saved.bind, saved.token, saved.progress = given.bind, given.token, given.progress
    saved.serve_process = given.serve_process
    saved.max_calls_per_second = given.max_calls_per_second
    if timesteps_given:
        saved.timesteps = given.timesteps
    if keep_given:
        saved.keep_checkpoints = given.keep_checkpoints
    return saved


def _run_directory(config: TrainConfig, name: str) -> Path:
    """The run directory, private (0700): created new for a new run (an existing one, or a
    link planted there, is refused); the checked existing one on ``--resume``."""
    from .private import ensure_private_dir, new_private_dir

    run_dir = Path(config.runs_root) / name
    if config.resume:
        return ensure_private_dir(run_dir)
    try:
        return new_private_dir(run_dir)
    except FileExistsError:
        raise TrainError(
            f"the run directory {run_dir} already exists; livetune never "
            f"writes into a run it did not start: pick another --run-name, or continue "
            f"that run with --resume {run_dir}/checkpoints/<tag>") from None


def _journaled_values(path: Path) -> tuple[int, dict[str, tuple[int, Any]]]:
    """The journal's last version and, per variable, ``(version, value)`` it last recorded
    (a set's new value, or the value a start record lists)."""
    from .journal import iter_journal

    last, values = 0, {}
    try:
        for event in iter_journal(path):
            last = max(last, event.v)
            if event.kind == "set":
                values[event.name] = (event.v, event.new)
            elif event.kind == "start":
                for name, value in (event.data.get("values") or {}).items():
                    values[name] = (event.v, value)
    except FileNotFoundError:
        pass
    return last, values


def _env_factory(config: TrainConfig, weights: dict[str, float] | None) -> Any:
    """A picklable env constructor (SubprocVecEnv sends it to the workers)."""
    return _EnvFactory(config.env, _env_kwargs(config), weights, config.scale,
                       tuple(config.reward_bounds))


def _env_kwargs(config: TrainConfig) -> dict[str, Any]:
    if config.env == HUNGRY_THIRSTY_ID:
        layout = config.layout_seed if config.layout_seed is not None else config.seed
        return {"layout_seed": layout}  # one food/water layout for every copy
    return {}


def _outcome_keys(env_id: str) -> tuple[str, ...]:
    """The ``info`` numbers that measure what ``env_id`` is really for (Hungry-Thirsty:
    ``fitness``, the steps not hungry; other envs: none, their reward is the outcome)."""
    return ("fitness",) if env_id == HUNGRY_THIRSTY_ID else ()


def _register_envs(env_id: str) -> None:
    if env_id.startswith("livetune/"):
        import livetune_rl.envs  # noqa: F401  (registers the livetune/ ids)


class _EnvFactory:
    def __init__(self, env_id: str, kwargs: dict[str, Any], weights: dict[str, float] | None,
                 scale: float, bounds: tuple[float, float] = (-10.0, 10.0)) -> None:
        self.env_id, self.kwargs, self.weights, self.scale = env_id, kwargs, weights, scale
        self.bounds = bounds

    def __call__(self) -> Any:
        import gymnasium as gym

        from .wrappers import LiveRewardWrapper

        _register_envs(self.env_id)  # in a SubprocVecEnv worker too
        env = gym.make(self.env_id, **self.kwargs)
        if self.weights:
            env = LiveRewardWrapper(env, self.weights, scale=self.scale, bounds=self.bounds)
        return env


def train(config: TrainConfig, *, registry: Registry | None = None,
          callbacks: Sequence[BaseCallback] = (),
          lineage: Mapping[str, Any] | None = None) -> Any:
    """Run the main job; returns the trained model.

    :param config: the run's settings (``livetune train``'s options).
    :param registry: the registry to serve and register the knobs in (default: a new one).
    :param callbacks: SB3 callbacks that run before the live ones at every hook (what
        :mod:`livetune_rl.replay` adds to re-apply a journal); they see every step.
    :param lineage: where this run comes from (the run it replays), written to
        ``config.json`` under ``"lineage"``.
    :raises TrainError: the run cannot start as configured (nothing was trained).
    :raises LiveTuneError: a refused serve setting (address, run name, pacing).
    """
    import gymnasium as gym
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from .sb3.buffers import RelabelingReplayBuffer
    from .sb3.callback import LiveTuneCallback
    from .server import check_serve_args, serve

    _register_envs(config.env)
    name = config.run_name or (
        f"{config.algo}-{config.env.split('/')[-1].lower()}-{time.strftime('%Y%m%d-%H%M%S')}")
    # an unsafe bind, a bad run name or pacing rate: refused before anything is created
    check_serve_args(config.bind, name, config.token, None, None, False,
                     config.max_calls_per_second or None)
    run_dir = _run_directory(config, name)
    saved = saved_config(config)
    if lineage:
        saved["lineage"] = dict(lineage)
    write_private(run_dir / "config.json", json.dumps(saved, indent=2))

    weights = dict(config.reward)
    if config.env == HUNGRY_THIRSTY_ID:
        from livetune_rl.envs import DEFAULT_REWARD_WEIGHTS

        # start from the fitness-aligned reward (1 when not hungry); --reward overrides some
        weights = {**DEFAULT_REWARD_WEIGHTS, **weights}
    vec_cls = SubprocVecEnv if config.vec == "subproc" and config.n_envs > 1 else DummyVecEnv
    venv = make_vec_env(_env_factory(config, weights or None), n_envs=config.n_envs,
                        seed=config.seed, vec_env_cls=vec_cls)
    eval_env = make_vec_env(_EnvFactory(config.env, _env_kwargs(config), None, 1.0), n_envs=1,
                            seed=config.seed + 10_000)

    if config.threads > 0:
        import torch

        torch.set_num_threads(config.threads)
    algo_cls = getattr(sb3, config.algo.upper())
    kwargs: dict[str, Any] = {"seed": config.seed, "device": config.device,
                              "tensorboard_log": str(run_dir / "tb"), "verbose": 0,
                              **FAST_DEFAULTS.get(config.algo, {})}
    if issubclass(algo_cls, OffPolicyAlgorithm) and weights and config.relabel:
        kwargs["replay_buffer_class"] = RelabelingReplayBuffer
        kwargs["replay_buffer_kwargs"] = {"components": list(weights)}
    kwargs.update(config.hyper)
    space = venv.action_space
    if config.algo in ("sac", "td3") and not isinstance(space, gym.spaces.Box):
        venv.close()
        eval_env.close()
        raise TrainError(f"{config.algo} needs a continuous action space; {config.env} has "
                         f"{space}: pick ppo, a2c or dqn for it")
    if config.algo == "dqn" and not isinstance(space, gym.spaces.Discrete):
        venv.close()
        eval_env.close()
        raise TrainError(f"dqn needs a discrete action space; {config.env} has {space}: "
                         "pick ppo, a2c, sac or td3 for it")
    registry = registry if registry is not None else Registry()
    journal = run_dir / "journal.jsonl"
    saved_values: dict[str, Any] = {}
    journaled: dict[str, tuple[int, Any]] = {}
    if config.resume:
        from .sb3.checkpoint import load_checkpoint

        model, saved_values = load_checkpoint(config.resume, env=venv, device=config.device,
                                              tensorboard_log=str(run_dir / "tb"))
        last_version, journaled = _journaled_values(journal)
        registry.continue_versions(last_version)  # `history` reads as one run
    else:
        model = algo_cls("MlpPolicy", venv, **kwargs)
    callback = LiveTuneCallback(registry, run_dir=run_dir, eval_env=eval_env,
                                n_eval_episodes=config.eval_episodes,
                                eval_every=config.eval_every,
                                checkpoint_every=config.checkpoint_every,
                                keep_checkpoints=config.keep_checkpoints,
                                # the env's own outcome, where it reports one: in the
                                # evaluations (mean_fitness) and per training episode (for
                                # `livetune tune --credit`)
                                eval_info_keys=_outcome_keys(config.env),
                                episode_info_keys=_outcome_keys(config.env))
    callback.attach(model)  # register knobs now, so `livetune ls` shows them at once
    if not config.resume:  # the start record holds the settings: a replay reads them
        registry.attach_journal(journal, data={"run": name, "settings": saved})
    else:
        # the start record lists the values in effect (knobs registered first); then the
        # checkpoint's values are set, and every value the journal last recorded otherwise
        # (a set after the checkpoint) gets a `revert` event: the journal stays true
        registry.attach_journal(journal, data={"run": name, "resumed_from": config.resume,
                                               "num_timesteps": model.num_timesteps,
                                               "settings": saved})
        restore = {n: v for n, v in saved_values.items()
                   if n in registry and registry.variable(n).value != v}
        if restore:  # live values in effect at the checkpoint: journaled, applied at start
            registry.set(restore, source="resume")
        for var in registry.variables():
            version, value = journaled.get(var.name, (None, var.value))
            if value != var.value:
                registry.record_event("revert", {
                    "variable": var.name, "journaled": value, "journaled_version": version,
                    "resumed": var.value, "checkpoint": config.resume})
    server = serve(config.bind, run=name, token=config.token, registry=registry,
                   journal=journal, out_of_process=config.serve_process,
                   max_calls_per_second=config.max_calls_per_second or None,
                   livetune_port=config.livetune_port)
    example = next(iter(weights), None)
    target = f"--run {name}" if config.bind is None else f"--addr {server.address}"
    print(f"run directory: {run_dir}   TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    print("try, in another terminal:")
    print(f"  livetune {target} ls")
    lr_example = "learning_rate 1e-4"
    print(f"  livetune {target} set {lr_example}"
          + (f" reward.{example}=-0.5" if example else ""))
    print(f"  livetune {target} fire evaluate      # also: checkpoint, stop", flush=True)
    stop_requests: list[ChangeEvent] = []

    def say(event: ChangeEvent) -> None:  # on the writer's thread: quick, no registry calls
        if event.kind == "fire" and event.name == "stop":
            stop_requests.append(event)
        line = describe(event)
        if line is not None:
            print(line, flush=True)

    subscription = registry.subscribe(say)
    started = time.time()
    remaining = max(0, config.timesteps - model.num_timesteps) if config.resume else \
        config.timesteps
    try:
        model.learn(remaining, callback=[*callbacks, callback] if callbacks else callback,
                    progress_bar=config.progress,
                    tb_log_name=config.algo, reset_num_timesteps=not config.resume)
        if not callback.stopped:  # `livetune fire stop` already wrote checkpoints/final
            callback.checkpoint(tag="final")
    except KeyboardInterrupt:
        print("interrupted: writing a final checkpoint", file=sys.stderr)
        callback.checkpoint(tag="interrupted")
    finally:
        elapsed = time.time() - started
        subscription.close()
        server.stop()
        venv.close()
        eval_env.close()
    final = callback.last_checkpoint
    steps = model.num_timesteps
    if callback.stopped:
        who = stop_requests[-1].source if stop_requests else "a client"
        how = f"stopped at step {steps} (a stop fired by {who})"
    else:
        how = f"ended: all {steps} steps trained"
    print(f"done: the run {how}, in {elapsed:.1f}s ({steps / max(elapsed, 1e-9):.0f} "
          f"steps/s); last checkpoint {final}; journal {run_dir / 'journal.jsonl'}")
    if callback.last_evaluation:
        last = describe(ChangeEvent(0, 0.0, "event", EVENT, step=steps,
                                    data=callback.last_evaluation))
        print(f"last evaluation: {last.split(': ', 3)[-1] if last else 'none'}")
    return model
