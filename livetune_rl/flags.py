"""Command-line options generated from a config dataclass: one source for defaults and help.

A field of a config dataclass becomes a ``--flag`` when it is declared with :func:`option`:
its name gives the flag (``n_envs`` -> ``--n-envs``), its default the flag's default, its type
the parser (``int | None`` parses an int), and the help text lives next to it. A bool that
defaults to True becomes a ``--no-NAME`` switch, one that defaults to False a ``--NAME``
switch (``both=True``: ``--NAME/--no-NAME``). :func:`add_options` adds the flags to an
argparse parser; :func:`from_args` builds the config back from the parsed namespace. A field
declared with a plain default (a token, a value set by code) is not a flag.

The commands keep argparse (so ``livetune --help`` stays fast and torch-free) and get every
option of their config from here: a new option is one field.

Example::

    >>> import argparse
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     epochs: int = option(10, "epochs to train")
    ...     name: str | None = option(None, "run name (default: the time)")
    ...     progress: bool = option(True, "no progress bar")
    >>> parser = argparse.ArgumentParser()
    >>> _ = add_options(parser, Config)
    >>> from_args(Config, parser.parse_args(["--epochs", "3", "--no-progress"]))
    Config(epochs=3, name=None, progress=False)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

C = TypeVar("C")
_SCALARS = (int, float, str)


@dataclass(frozen=True)
class Flag:
    """How one config field is spelled on the command line (the field gives the rest).

    :param help: one line; the parser's formatter appends the default.
    :param names: the option strings (default: ``--field-name``, or ``--no-field-name`` for
        a bool that defaults to True).
    :param parse: text -> value (default: the field's type); with ``repeat``, each
        occurrence; a field whose type is not int, float or str needs one.
    :param metavar: the name the help shows for the value (``N``, ``KEY=VALUE``).
    :param choices: the only values accepted.
    :param group: the title of the help section the flag is listed in.
    :param repeat: may be given several times; the value is the list of every occurrence,
        or a dict when the field's default is a dict and ``parse`` gives ``(key, value)``.
    :param both: a bool with both ``--NAME`` and ``--no-NAME``.
    :param nargs: argparse's ``nargs`` (``"+"``: one or more values; a tuple field gets a
        tuple).
    """

    help: str
    names: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    group: str | None = None
    repeat: bool = False
    both: bool = False
    nargs: str | None = None


def option(default: Any = dataclasses.MISSING, help: str = "", *,
           factory: Callable[[], Any] | None = None, **spelling: Any) -> Any:
    """A dataclass field that is also a command-line flag (see :class:`Flag` for
    ``spelling``); ``factory`` gives a mutable default (``factory=dict``)."""
    metadata = {"flag": Flag(help, **spelling)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field[Any]) -> Flag | None:
    """The :class:`Flag` of a config field, or None when the field is not a flag."""
    flag = field.metadata.get("flag")
    return flag if isinstance(flag, Flag) else None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _scalar(cls: type, name: str, hint: Any) -> Callable[[str], Any]:
    """The parser of a field typed ``int``, ``float``, ``str`` or one of them ``| None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if hint in _SCALARS:
        return typing.cast(Callable[[str], Any], hint)
    raise TypeError(f"{cls.__name__}.{name}: a {hint!r} field needs parse= in its option() "
                    "(only int, float and str fields are parsed by their type)")


def add_options(parser: argparse.ArgumentParser, cls: type) -> dict[str, Any]:
    """Add a flag for every :func:`option` field of the dataclass ``cls`` to ``parser``
    (grouped under each flag's ``group`` title, in field order); returns the argument groups
    made, by title, for flags a command adds by hand."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        if flag is None:
            continue
        target: Any = parser
        if flag.group is not None:
            if flag.group not in groups:
                groups[flag.group] = parser.add_argument_group(flag.group)
            target = groups[flag.group]
        default = _default(field)
        dashed = field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": field.name, "help": flag.help}
        if hints[field.name] is bool:
            if flag.both:
                names = flag.names or (f"--{dashed}",)
                kwargs.update(action=argparse.BooleanOptionalAction, default=default)
            elif default:
                names = flag.names or (f"--no-{dashed}",)
                kwargs.update(action="store_false", default=True)
            else:
                names = flag.names or (f"--{dashed}",)
                kwargs.update(action="store_true", default=False)
        else:
            names = flag.names or (f"--{dashed}",)
            kwargs["type"] = flag.parse or _scalar(cls, field.name, hints[field.name])
            kwargs["default"] = [] if flag.repeat else default
            if flag.repeat:
                kwargs["action"] = "append"
            if flag.metavar is not None:
                kwargs["metavar"] = flag.metavar
            if flag.choices is not None:
                kwargs["choices"] = flag.choices
            if flag.nargs is not None:
                kwargs["nargs"] = flag.nargs
        target.add_argument(*names, **kwargs)
    return groups


def from_args(cls: type[C], args: argparse.Namespace, **given: Any) -> C:
    """The config ``cls`` the parsed ``args`` describe; ``given`` sets fields that are not
    flags (a token read from a file) or overrides one."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = flag_of(field)
        if flag is None or field.name in given or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if flag.repeat and isinstance(_default(field), Mapping):
            merged: dict[Any, Any] = {}
            for item in value:  # each occurrence: a mapping, or one (key, value) pair
                merged.update(item if isinstance(item, Mapping) else [item])
            value = merged
        elif isinstance(_default(field), tuple) and isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return cls(**values, **given)
