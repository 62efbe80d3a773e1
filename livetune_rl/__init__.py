"""livetune_rl: change a running training job while it runs.

Declare live variables and triggers, serve them on one gRPC address, and change them from
another terminal (``livetune set learning_rate 1e-4``) while training reads them::

    import livetune_rl as lt

    lr = lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0, help="optimizer step size")
    save = lt.LiveTrigger("checkpoint", help="save a checkpoint at the next safe point")
    server = lt.serve(run="demo")            # prints: livetune: run 'demo' serving on ...
    for step in range(1000):
        step_size = lr.value                 # a plain attribute read
        if save.fired():                     # True once per fire
            ...

The registry, variables and triggers are pure Python; ``serve`` and ``connect`` bring gRPC.
Each name is imported on first use, so ``import livetune_rl`` itself costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client, ClientError, connect
    from .journal import ChangeEvent, Journal, read_journal
    from .registry import LiveTrigger, LiveVariable, Registry, default_registry
    from .server import ServeError, Server, serve
    from .values import (
        DuplicateNameError,
        InvalidNameError,
        InvalidValueError,
        LiveTuneError,
        UnknownNameError,
        VarType,
        VersionConflictError,
    )

__version__ = "0.1.0"

# Every public name is imported on first use (PEP 562), so a command that needs one module
# (``livetune set`` needs the client) does not pay for the others at start-up.
_LAZY = {
    "ChangeEvent": "journal",
    "Journal": "journal",
    "read_journal": "journal",
    "LiveTrigger": "registry",
    "LiveVariable": "registry",
    "Registry": "registry",
    "default_registry": "registry",
    "DuplicateNameError": "values",
    "InvalidNameError": "values",
    "InvalidValueError": "values",
    "LiveTuneError": "values",
    "UnknownNameError": "values",
    "VarType": "values",
    "VersionConflictError": "values",
    "serve": "server",
    "Server": "server",
    "ServeError": "server",
    "connect": "client",
    "Client": "client",
    "ClientError": "client",
}

__all__ = [
    "ChangeEvent",
    "Client",
    "ClientError",
    "DuplicateNameError",
    "InvalidNameError",
    "InvalidValueError",
    "Journal",
    "LiveTrigger",
    "LiveTuneError",
    "LiveVariable",
    "Registry",
    "ServeError",
    "Server",
    "UnknownNameError",
    "VarType",
    "VersionConflictError",
    "connect",
    "default_registry",
    "read_journal",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'livetune_rl' has no attribute {name!r}")
