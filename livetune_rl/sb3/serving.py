"""``ServeCallback``: a run trained through a framework that only lets you name a callback is
live too.

Frameworks configured by a hyperparameter file (RL Zoo style) build the model and call
``learn()`` themselves; all a user can do is name a callback class. When training starts and
nothing in this process serves the registry yet (no :func:`livetune_rl.serve`, no
``livetune train``), this callback serves it the way ``livetune train`` does: from a child
process (requests cost the training process no CPU), on loopback, with a discovery record
(``livetune runs``) and a journal under the per-user state directory. It stops serving when
training ends. When something already serves the registry it does nothing.

Settings, for frameworks that cannot pass arguments, come from the environment:
``LIVETUNE_ADDR`` (the address to serve on, the one clients read too), ``LIVETUNE_RUN`` (the
run name; default ``<algorithm>-<env id>``, e.g. ``ppo-CartPole-v1``), ``LIVETUNE_TOKEN``
(require this bearer token) and ``LIVETUNE_SERVE=0`` (never serve).

Example::

    from stable_baselines3 import PPO
    from livetune_rl.sb3 import LiveTuneCallback    # a ServeCallback is one of its parts

    PPO("MlpPolicy", "CartPole-v1").learn(100_000, callback=LiveTuneCallback())
    # elsewhere: livetune runs ; livetune set learning_rate 1e-4 --run ppo-CartPole-v1
"""

from __future__ import annotations

import os
import re
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from ..options import Serving
from ..registry import Registry


def default_run_name(model: Any) -> str | None:
    """``<algorithm>-<env id>`` (``ppo-CartPole-v1``), or None when the env has no id."""
    try:
        spec = model.get_env().get_attr("spec", [0])[0]
    except Exception:  # an env without a spec, or a vec env that cannot say
        spec = None
    env_id = getattr(spec, "id", None)
    if not env_id:
        return None
    name = f"{type(model).__name__.lower()}-{env_id}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]


class ServeCallback(BaseCallback):
    """Serve ``registry`` from training start to training end, unless something serves it.

    :param registry: the registry to serve (the knobs' and reward weights').
    :param serve: False never serves (so does ``LIVETUNE_SERVE=0``).
    :param address: where to serve (default ``$LIVETUNE_ADDR``, else 127.0.0.1:50051 or a
        free port when that one is taken).
    :param run_name: the name ``livetune runs`` shows (default ``$LIVETUNE_RUN``, else
        ``<algorithm>-<env id>``, else the script's name).
    :param token: require this bearer token (default ``$LIVETUNE_TOKEN``).
    :param verbose: 1 says when it starts serving.
    """

    def __init__(self, registry: Registry, *, serve: bool = True, address: str | None = None,
                 run_name: str | None = None, token: str | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.registry = registry
        self.serve, self.address, self.run_name, self.token = serve, address, run_name, token
        self.server: Serving | None = None
        """The server this callback started (None: it started none)."""

    def _on_training_start(self) -> None:
        if not self.serve or os.environ.get("LIVETUNE_SERVE", "1") == "0":
            return
        if self.registry.remote or Serving.serving(self.registry) is not None:
            return  # the user (or livetune train) serves it already
        from ..server import serve  # the gRPC stack only when it serves

        run = self.run_name or os.environ.get("LIVETUNE_RUN") or default_run_name(self.model)
        self.server = serve(self.address or os.environ.get("LIVETUNE_ADDR") or None, run=run,
                            token=self.token, registry=self.registry, out_of_process=True)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
