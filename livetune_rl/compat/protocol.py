"""The original LiveTune's plain-TCP protocol, as its ``tune`` command speaks it.

Learned from the behaviour of ``livetune==0.0.8`` (its ``tune`` client against its own
library); described in docs/compat.md. Every message is raw ASCII text with no terminator or
length prefix: a message is what one ``send`` carries, and the peer answers or closes.

A change takes two connections, both to ``127.0.0.1``:

1. To the *dictionary port* (the one the user passes as ``tune -p PORT``): the client sends
   ``request_type: dictionary_entry - TAG`` and the server answers the decimal number of the
   tag's *variable port*, then closes. An unknown tag gets no answer (``tune`` then fails).
2. To the variable port: the client sends ``request_type: update_var``; the server answers
   the variable's type name (:data:`TYPE_NAMES`, or ``trigger``). ``tune`` checks the value
   against that type itself, then sends either the value as text (``7``, ``0.001``,
   ``True``) or, for a trigger, ``request_type: trigger_var``, and closes. The server answers
   nothing, whether it applied the change or refused it.

Example::

    >>> lookup_request("lr")
    b'request_type: dictionary_entry - lr'
    >>> parse_lookup(b"request_type: dictionary_entry - lr")
    'lr'
"""

from __future__ import annotations

from ..values import VarType

LOOKUP_PREFIX = b"request_type: dictionary_entry - "
"""Sent to the dictionary port, followed by the tag."""

UPDATE = b"request_type: update_var"
"""The first message on a variable port: asks for the type name."""

FIRE = b"request_type: trigger_var"
"""The second message on a trigger's port: fires it."""

TRIGGER = "trigger"
"""The type name a trigger's port answers."""

TYPE_NAMES: dict[VarType, str] = {
    VarType.INT: "int",
    VarType.FLOAT: "float",
    VarType.BOOL: "bool",
    VarType.STR: "string",  # what ``tune`` calls a value that is not a number or a bool
}
"""The type name a variable's port answers, by the variable's type."""

MAX_MESSAGE = 1024
"""The longest message either side sends (``tune`` reads answers 1024 bytes at a time)."""


def lookup_request(tag: str) -> bytes:
    """The message that asks the dictionary port for ``tag``'s variable port."""
    return LOOKUP_PREFIX + tag.encode()


def parse_lookup(message: bytes) -> str | None:
    """The tag a dictionary-port message asks for, or None if it is not a lookup.

    :param message: the bytes received on the dictionary port.
    """
    if not message.startswith(LOOKUP_PREFIX):
        return None
    try:
        tag = message[len(LOOKUP_PREFIX):].decode("ascii")
    except UnicodeDecodeError:
        return None
    return tag or None
