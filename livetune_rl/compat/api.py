"""The original LiveTune's ``liveVar`` / ``liveTrigger`` API, backed by a livetune_rl registry.

A script written for the original library runs with one changed import::

    from livetune_rl.compat import liveVar, liveTrigger   # was: from LiveTune import ...

Each ``liveVar`` is a :class:`~livetune_rl.LiveVariable` and each ``liveTrigger`` a
:class:`~livetune_rl.LiveTrigger` of the process-wide registry (or the one passed), so
``lt.serve()`` serves them over gRPC and ``livetune ls`` lists them. ``liveVar.setPort(PORT)``
also opens the original protocol on ``127.0.0.1:PORT``, so the original ``tune`` command works
unchanged. Unlike the original, nothing listens unless asked.

Example::

    >>> import livetune_rl as lt
    >>> reg = lt.Registry()
    >>> lr = liveVar(0.01, "lr", registry=reg)
    >>> save = liveTrigger("save", registry=reg)
    >>> _ = reg.set({"lr": "0.001"}, source="example")   # what `tune -v 0.001 -t lr` does
    >>> lr(), lr.changed(), lr.changed()
    (0.001, True, False)
    >>> _ = reg.fire("save"); _ = reg.fire("save")
    >>> save(), save()
    (True, False)
"""

from __future__ import annotations

import logging
import threading
import weakref

from ..registry import LiveTrigger, LiveVariable, Registry, default_registry
from ..values import DuplicateNameError, Value
from .listener import OriginalProtocolListener

log = logging.getLogger(__name__)

_TYPES = (bool, int, float)

_listener_lock = threading.Lock()
_listener: OriginalProtocolListener | None = None
# The compat objects made per registry and tag: a tag made again replaces its own earlier
# object (the original allowed it with a warning) but never a name the program made itself.
_made: weakref.WeakKeyDictionary[Registry, dict[str, LiveVariable | LiveTrigger]] = \
    weakref.WeakKeyDictionary()


def set_port(port: int, *, registry: Registry | None = None,
             quiet: bool = False) -> OriginalProtocolListener:
    """Open the original LiveTune protocol on ``127.0.0.1:port`` for ``registry``.

    One such listener per process: a second call with the same port and registry returns the
    running one, another port moves it there. ``liveVar.setPort`` and ``liveTrigger.setPort``
    call this.

    :param port: the dictionary port users pass as ``tune -p PORT`` (0: a free one).
    :param registry: the registry served (default: the process-wide one).
    :param quiet: do not print the start line.
    """
    global _listener
    registry = registry if registry is not None else default_registry()
    with _listener_lock:
        current = _listener
        if (current is not None and current.running and current.registry is registry
                and port in (0, current.port)):
            return current
        if current is not None:
            current.stop()
            _listener = None
        _listener = OriginalProtocolListener(registry, port, quiet=quiet).start()
        return _listener


def stop_port() -> None:
    """Close the listener :func:`set_port` opened, if any."""
    global _listener
    with _listener_lock:
        if _listener is not None:
            _listener.stop()
            _listener = None


def _claim(registry: Registry, tag: str) -> None:
    """Make room for ``tag``: drop this module's own earlier object of that tag, with a
    warning; a name the program registered otherwise stays and the registry refuses."""
    made = _made.setdefault(registry, {})
    earlier = made.get(tag)
    if earlier is None or tag not in registry:
        return
    if earlier not in (*registry.variables(), *registry.triggers()):
        raise DuplicateNameError(f"{tag!r} is already registered by the program; a liveVar or "
                                 "liveTrigger needs a tag of its own")
    log.warning("livetune: tag %r made again; the newest liveVar/liveTrigger replaces the "
                "earlier one (its value no longer changes)", tag)
    registry.remove(tag)


class liveVar:  # the original's name, so scripts run unchanged
    """A live int, float or bool under a tag: ``var()`` reads it.

    :param initial_value: the starting value; its type (int, float or bool) is kept: an int
        variable only ever holds ints.
    :param tag: the name ``tune -t TAG`` and ``livetune set TAG`` use (a dotted identifier).
    :param min: optional inclusive lower bound (int and float), enforced on every change.
    :param max: optional inclusive upper bound.
    :param help: one line shown by ``livetune ls``.
    :param registry: the registry to join (default: the process-wide one).

    Example::

        >>> ranking = liveVar(100, "ranking", registry=Registry())
        >>> ranking(), ranking.changed()
        (100, False)
    """

    def __init__(self, initial_value: bool | int | float, tag: str, *,
                 min: float | int | None = None, max: float | int | None = None,
                 help: str = "", registry: Registry | None = None) -> None:
        if type(initial_value) not in _TYPES:
            raise TypeError(f"liveVar {tag!r}: the initial value must be an int, float or "
                            f"bool, got {type(initial_value).__name__} {initial_value!r}")
        registry = registry if registry is not None else default_registry()
        _claim(registry, tag)
        self.variable = LiveVariable(tag, initial_value, min=min, max=max, help=help,
                                     registry=registry)
        _made[registry][tag] = self.variable
        self._seen = self.variable.version

    @property
    def tag(self) -> str:
        return self.variable.name

    def __call__(self) -> Value:
        """The current value (a plain attribute read)."""
        return self.variable.value

    def changed(self) -> bool:
        """True once after each change from outside (``tune``, ``livetune set``)."""
        version = self.variable.version
        if version != self._seen:
            self._seen = version
            return True
        return False

    def update(self, new_value: bool | int | float) -> None:
        """Set the value from the program itself; :meth:`changed` does not report it.

        :param new_value: of exactly the variable's type (``5`` is refused for a float).
        """
        kind = type(self.variable.default)
        if type(new_value) is not kind:
            raise TypeError(f"liveVar {self.tag!r} holds {kind.__name__} values, got "
                            f"{type(new_value).__name__} {new_value!r}")
        before = self.variable.version
        event = self.variable.set(new_value, source="local")
        if self._seen == before:  # nothing unread from outside: our own change is not news
            self._seen = event.v

    @staticmethod
    def setPort(port: int, *, registry: Registry | None = None) -> OriginalProtocolListener:
        """Open the original protocol on ``127.0.0.1:port`` (see :func:`set_port`)."""
        return set_port(port, registry=registry)

    def __str__(self) -> str:
        return str(self.variable.value)

    def __repr__(self) -> str:
        return f"liveVar({self.variable.value!r}, {self.tag!r})"


class liveTrigger:
    """A one-shot flag under a tag: ``trig()`` is True once after it is fired.

    Fires that arrive before the program reads it count once, as in the original.

    :param tag: the name ``tune -t TAG -tr`` and ``livetune fire TAG`` use.
    :param help: one line shown by ``livetune ls``.
    :param registry: the registry to join (default: the process-wide one).

    Example::

        >>> reg = Registry(); stop = liveTrigger("stop", registry=reg)
        >>> _ = reg.fire("stop"); _ = reg.fire("stop")
        >>> stop(), stop()
        (True, False)
    """

    def __init__(self, tag: str, *, help: str = "", registry: Registry | None = None) -> None:
        registry = registry if registry is not None else default_registry()
        _claim(registry, tag)
        self.trigger = LiveTrigger(tag, help=help, max_pending=1, registry=registry)
        _made[registry][tag] = self.trigger

    @property
    def tag(self) -> str:
        return self.trigger.name

    def __call__(self) -> bool:
        """True once per fire (journals that the program handled it)."""
        return self.trigger.fired()

    @staticmethod
    def setPort(port: int, *, registry: Registry | None = None) -> OriginalProtocolListener:
        """Open the original protocol on ``127.0.0.1:port`` (see :func:`set_port`)."""
        return set_port(port, registry=registry)

    def __repr__(self) -> str:
        return f"liveTrigger({self.tag!r}, pending={self.trigger.pending})"
