"""A drop-in for the original LiveTune library: its API and its ``tune`` command's protocol.

``liveVar`` and ``liveTrigger`` keep the original's API on top of this project's registry;
:class:`OriginalProtocolListener` lets the original ``tune`` command change any registry.
See docs/compat.md.

Example::

    >>> from livetune_rl.compat import liveVar, liveTrigger
    >>> import livetune_rl as lt
    >>> reg = lt.Registry()
    >>> epochs = liveVar(10, "epochs", registry=reg)
    >>> epochs()
    10
"""

from __future__ import annotations

from .api import liveTrigger, liveVar, set_port, stop_port
from .listener import SOURCE, ListenerError, ListenerStats, OriginalProtocolListener

__all__ = [
    "SOURCE",
    "ListenerError",
    "ListenerStats",
    "OriginalProtocolListener",
    "liveTrigger",
    "liveVar",
    "set_port",
    "stop_port",
]
