"""Types, parsing and validation of live values.

A live value is one of four immutable Python types: ``float``, ``int``, ``bool`` or ``str``.
:class:`Spec` holds what a variable accepts (its type, inclusive bounds, allowed choices and an
optional extra check) and turns user input, Python objects or text typed in a terminal, into a
valid value or a :class:`InvalidValueError` that names the variable, the value and the rule.

Example::

    >>> spec = Spec.for_default(3e-4, min=1e-7, max=1.0)
    >>> spec.accept("learning_rate", "1e-4")
    0.0001
    >>> spec.accept("learning_rate", "nan")
    Traceback (most recent call last):
    ...
    livetune_rl.values.InvalidValueError: learning_rate: 'nan' is not a finite float
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

Value = float | int | bool | str
"""A live value: one of the four immutable scalar types."""

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_NAME_LENGTH = 128
MAX_STRING_LENGTH = 4096
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # the wire type is int64

_TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "off", "n", "f"})


class LiveTuneError(Exception):
    """Base class of every error livetune_rl raises on purpose."""


class InvalidValueError(LiveTuneError, ValueError):
    """A value was refused: wrong type, not finite, out of bounds, not a choice, or refused
    by the variable's own check. Maps to gRPC ``INVALID_ARGUMENT``."""


class InvalidNameError(LiveTuneError, ValueError):
    """A name is not a dotted identifier (``reward.hungry``)."""


class UnknownNameError(LiveTuneError, KeyError):
    """No variable or trigger has this name. Maps to gRPC ``NOT_FOUND``."""

    def __init__(self, name: str, known: Iterable[str], what: str = "variable") -> None:
        self.name = name
        self.suggestions = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        # _short: a huge name must not make the gRPC status exceed the metadata size limit
        super().__init__(f"no {what} named {_short(name)}{hint}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class DuplicateNameError(LiveTuneError, ValueError):
    """A name is already registered in this registry."""


class VersionConflictError(LiveTuneError):
    """A compare-and-set found another version. Maps to gRPC ``FAILED_PRECONDITION``."""


class VarType(str, Enum):
    """The type of a live variable."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STR = "str"

    @classmethod
    def of(cls, value: object) -> VarType:
        """The type of a Python value (``bool`` is checked before ``int``)."""
        if isinstance(value, bool):
            return cls.BOOL
        if isinstance(value, int):
            return cls.INT
        if isinstance(value, float):
            return cls.FLOAT
        if isinstance(value, str):
            return cls.STR
        raise InvalidValueError(
            f"a live value must be float, int, bool or str, not {type(value).__name__}"
        )


def validate_name(name: object) -> str:
    """Return ``name`` if it is a dotted identifier, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"a name must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if not NAME_PATTERN.fullmatch(name):  # match() would let "lr\n" through ($ before \n)
        raise InvalidNameError(
            f"invalid name {name!r}: use dotted identifiers such as 'reward.hungry' "
            "(letters, digits and _, not starting with a digit, parts joined by '.')"
        )
    return name


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def coerce(vtype: VarType, raw: object, name: str = "value") -> Value:
    """Convert ``raw`` to ``vtype`` or raise :class:`InvalidValueError`.

    Text is parsed the way a person types it: ``"1e-4"`` for a float, ``"5"`` (not ``"5.5"``)
    for an int, ``true/false/1/0/yes/no`` for a bool. Numbers are written with ASCII digits
    (Python's ``int()`` and ``float()`` would also read "٥" as 5). Python values convert only
    when no information is lost (an ``int`` accepts ``5.0`` but not ``5.5``; a ``float``
    accepts ``3``).
    """
    if vtype is VarType.STR:
        if not isinstance(raw, str):
            raise InvalidValueError(f"{name}: {_short(raw)} is not a string")
        if len(raw) > MAX_STRING_LENGTH:
            raise InvalidValueError(f"{name}: string longer than {MAX_STRING_LENGTH} characters")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate could never be sent over gRPC
            raise InvalidValueError(f"{name}: {_short(raw)} is not valid Unicode text") from None
        return raw
    if vtype is VarType.BOOL:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str):
            word = raw.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise InvalidValueError(
            f"{name}: {_short(raw)} is not a bool (use true/false, 1/0, yes/no)"
        )
    if vtype is VarType.INT:
        if isinstance(raw, bool):
            raise InvalidValueError(f"{name}: {_short(raw)} is a bool, not an int")
        if isinstance(raw, int):
            number = int(raw)
        elif isinstance(raw, float):
            if not (math.isfinite(raw) and raw.is_integer()):
                raise InvalidValueError(f"{name}: {_short(raw)} is not a whole number")
            number = int(raw)
        elif isinstance(raw, str):
            text = raw.strip().replace("_", "")
            if not re.fullmatch(r"[+-]?[0-9]{1,19}", text):  # ASCII digits: "٥" is no int
                raise InvalidValueError(f"{name}: {_short(raw)} is not an int")
            number = int(text)
        else:
            raise InvalidValueError(f"{name}: {_short(raw)} is not an int")
        if not INT_MIN <= number <= INT_MAX:  # it could not be sent over gRPC (int64)
            raise InvalidValueError(f"{name}: {_short(raw)} is outside the 64-bit int range")
        return number
    # FLOAT
    if isinstance(raw, bool):
        raise InvalidValueError(f"{name}: {_short(raw)} is a bool, not a float")
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            raise InvalidValueError(f"{name}: {_short(raw)} is too large for a float") from None
    elif isinstance(raw, str):
        if not raw.isascii():  # float() would read other scripts' digits: "٥" -> 5.0
            raise InvalidValueError(f"{name}: {_short(raw)} is not a float (write it with "
                                    "ASCII digits, e.g. 1e-4)")
        try:
            value = float(raw.strip())
        except ValueError:
            raise InvalidValueError(f"{name}: {_short(raw)} is not a float") from None
    else:
        raise InvalidValueError(f"{name}: {_short(raw)} is not a float")
    if not math.isfinite(value):
        raise InvalidValueError(f"{name}: {_short(raw)} is not a finite float")
    return value


Check = Callable[[Value], "str | None"]
"""An extra rule: returns ``None`` when the value is acceptable, else the reason it is not."""


@dataclass(frozen=True)
class Spec:
    """What a variable accepts: type, inclusive bounds, choices and an optional extra check.

    Build one with :meth:`for_default`, which infers the type from the default value and
    checks that the default itself is valid.
    """

    type: VarType
    min: Value | None = None
    max: Value | None = None
    choices: tuple[Value, ...] = ()
    check: Check | None = field(default=None, compare=False)

    @classmethod
    def for_default(
        cls,
        default: Value,
        *,
        min: float | int | None = None,
        max: float | int | None = None,
        choices: Sequence[Value] | None = None,
        check: Check | None = None,
        name: str = "default",
    ) -> Spec:
        vtype = VarType.of(default)
        if (min is not None or max is not None) and vtype not in (VarType.FLOAT, VarType.INT):
            raise InvalidValueError(f"{name}: bounds only apply to float and int variables")
        lo = coerce(vtype, min, f"{name} min") if min is not None else None
        hi = coerce(vtype, max, f"{name} max") if max is not None else None
        if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
            raise InvalidValueError(f"{name}: min {lo!r} is greater than max {hi!r}")
        opts = tuple(coerce(vtype, c, f"{name} choice") for c in choices or ())
        spec = cls(vtype, lo, hi, opts, check)
        spec.accept(name, default)
        return spec

    def accept(self, name: str, raw: object) -> Value:
        """Return ``raw`` converted and validated, or raise :class:`InvalidValueError`."""
        value = coerce(self.type, raw, name)
        if self.min is not None and value < self.min:  # type: ignore[operator]
            raise InvalidValueError(f"{name}: {_short(value)} is below the minimum {self.min!r}")
        if self.max is not None and value > self.max:  # type: ignore[operator]
            raise InvalidValueError(f"{name}: {_short(value)} is above the maximum {self.max!r}")
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InvalidValueError(f"{name}: {_short(value)} is not one of {allowed}")
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise InvalidValueError(f"{name}: {_short(value)} refused: {reason}")
        return value

    def describe(self) -> str:
        """Short human text of the rule: ``[1e-07, 1.0]``, ``{adam, sgd}`` or ``""``."""
        if self.choices:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        if self.min is None and self.max is None:
            return ""
        lo = "-inf" if self.min is None else repr(self.min)
        hi = "inf" if self.max is None else repr(self.max)
        return f"[{lo}, {hi}]"
