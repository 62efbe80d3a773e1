"""Glob patterns on names (``reward.*``), bounded and compiled once.

Clients pass patterns to ``ListVariables``, ``Watch`` and ``GetHistory``. Matched naively,
every name of every event is tried against every pattern of every watcher, so a client
sending 10,000 patterns makes the server do 10,000 matches per event and per watcher. Here
the patterns of one request are checked against :data:`MAX_PATTERNS` and
:data:`MAX_PATTERN_LENGTH` (what a request to the server may carry) and compiled once into a
single regular expression.

Example::

    >>> match = NameFilter(["reward.*", "lr"])
    >>> match("reward.hungry"), match("lr"), match("lr2")
    (True, True, False)
    >>> NameFilter([])("anything")       # no patterns: everything
    True
    >>> NameFilter.checked(["*"] * 1000)
    Traceback (most recent call last):
    ...
    livetune_rl.values.InvalidValueError: 1000 patterns given, at most 64 are allowed: \
use fewer, broader patterns ("reward.*" rather than one per name)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from .values import InvalidValueError

MAX_PATTERNS = 64
MAX_PATTERN_LENGTH = 256


class NameFilter:
    """A predicate on names: True when the name matches one of the glob patterns (or when
    there are none). Patterns use :mod:`fnmatch` syntax, case-sensitively.

    :param patterns: glob patterns; empty means every name matches.
    """

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        unique = list(dict.fromkeys(patterns))
        self.patterns = tuple(unique)
        self._regex = (re.compile("|".join(fnmatch.translate(p) for p in unique))
                       if unique else None)

    @classmethod
    def checked(cls, patterns: Sequence[str]) -> NameFilter:
        """A filter for patterns a client sent; :class:`InvalidValueError` beyond the limits.

        :param patterns: at most :data:`MAX_PATTERNS`, each at most
            :data:`MAX_PATTERN_LENGTH` characters.
        """
        if len(patterns) > MAX_PATTERNS:
            raise InvalidValueError(
                f"{len(patterns)} patterns given, at most {MAX_PATTERNS} are allowed: use "
                "fewer, broader patterns (\"reward.*\" rather than one per name)")
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_LENGTH:
                raise InvalidValueError(
                    f"pattern {pattern[:40]!r}... is {len(pattern)} characters long, at most "
                    f"{MAX_PATTERN_LENGTH} are allowed: names are at most 128 characters, so "
                    "a shorter pattern matches the same")
        return cls(patterns)

    def __call__(self, name: str) -> bool:
        return self._regex is None or self._regex.match(name) is not None

    def __repr__(self) -> str:
        return f"NameFilter({list(self.patterns)!r})"
