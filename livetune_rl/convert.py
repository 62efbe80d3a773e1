"""Conversions between the plain-Python registry types and the ``livetune.v1`` messages.

Shared by the server (Python -> proto) and the client (proto -> Python), so both sides agree
on one mapping: float <-> ``double``, int <-> ``int``, bool <-> ``bool``, str <-> ``string``;
``text`` is request-only and parsed with the target variable's type.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from ._proto.livetune.v1 import livetune_pb2 as pb
from .journal import ChangeEvent
from .state import RegistryState, TriggerState, VariableState
from .values import InvalidValueError, Value, VarType

_VAR_TYPES = {
    VarType.FLOAT: pb.VAR_TYPE_FLOAT,
    VarType.INT: pb.VAR_TYPE_INT,
    VarType.BOOL: pb.VAR_TYPE_BOOL,
    VarType.STR: pb.VAR_TYPE_STRING,
}
_VAR_TYPES_BACK = {v: k for k, v in _VAR_TYPES.items()}
_KINDS = {
    "set": pb.CHANGE_KIND_SET,
    "fire": pb.CHANGE_KIND_FIRE,
    "applied": pb.CHANGE_KIND_APPLIED,
    "event": pb.CHANGE_KIND_EVENT,
    "start": pb.CHANGE_KIND_START,
}
_KINDS_BACK = {v: k for k, v in _KINDS.items()}
_FIELD_TYPE = {"double": VarType.FLOAT, "int": VarType.INT, "bool": VarType.BOOL,
               "string": VarType.STR}


def value_to_proto(value: Value | None) -> pb.Value | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return pb.Value(bool=value)
    if isinstance(value, int):
        return pb.Value(int=value)
    if isinstance(value, float):
        return pb.Value(double=value)
    return pb.Value(string=str(value))


def value_from_proto(msg: pb.Value) -> Value | None:
    """The Python value of a message (``text`` comes back as its string); None if unset."""
    field = msg.WhichOneof("kind")
    return None if field is None else getattr(msg, field)


def request_value(msg: pb.Value, target: VarType, name: str) -> object:
    """The raw value of an assignment, ready for ``Spec.accept``.

    ``text`` is passed through as text (parsed by the variable's type); typed fields must fit
    the variable: a ``string`` is not a float, while an ``int`` is a fine float and a whole
    ``double`` a fine int.
    """
    field = msg.WhichOneof("kind")
    if field is None:
        raise InvalidValueError(f"{name}: no value given (set one of double, int, bool, "
                                "string or text)")
    raw = getattr(msg, field)
    if field == "text":
        return raw
    given = _FIELD_TYPE[field]
    numeric = {VarType.FLOAT, VarType.INT}
    if given is not target and not (given in numeric and target in numeric):
        raise InvalidValueError(
            f"{name}: expects a {target.value} value, got {field} {raw!r} "
            f"(send {{\"text\": \"...\"}} to have it parsed)"
        )
    return raw


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def struct(data: dict[str, Any]) -> Struct | None:
    if not data:
        return None
    out = Struct()
    out.update(data)
    return out


def event_to_proto(event: ChangeEvent) -> pb.Change:
    return pb.Change(
        version=event.v,
        time=timestamp(event.t),
        kind=_KINDS[event.kind],
        name=event.name,
        old=value_to_proto(event.old),
        new=value_to_proto(event.new),
        source=event.source,
        step=event.step,
        applies=event.applies or 0,
        data=struct(event.data),
    )


def _data(message: Struct) -> dict[str, Any]:
    """A record's ``data`` as plain Python (json_format, ~25 ms to import, only when a
    record has data: a ``livetune set`` answer usually has none)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(message)


def event_from_proto(msg: pb.Change) -> ChangeEvent:
    return ChangeEvent(
        v=msg.version,
        t=seconds(msg.time),
        kind=_KINDS_BACK.get(msg.kind, "event"),  # type: ignore[arg-type]
        name=msg.name,
        old=value_from_proto(msg.old) if msg.HasField("old") else None,
        new=value_from_proto(msg.new) if msg.HasField("new") else None,
        source=msg.source,
        step=msg.step if msg.HasField("step") else None,
        applies=msg.applies or None,
        data=_data(msg.data) if msg.HasField("data") else {},
    )


def variable_to_proto(var: VariableState) -> pb.Variable:
    return pb.Variable(
        name=var.name,
        type=_VAR_TYPES[var.type],
        value=value_to_proto(var.value),
        default=value_to_proto(var.default),
        min=value_to_proto(var.min),
        max=value_to_proto(var.max),
        choices=[value_to_proto(c) for c in var.choices],
        help=var.help,
        version=var.version,
        changed_at=timestamp(var.changed_at),
        source=var.source,
        step=var.step,
        deferred=var.deferred,
        applied_version=var.applied_version,
        applied_step=var.applied_step,
    )


def variable_from_proto(msg: pb.Variable) -> VariableState:
    def opt(field: str) -> Value | None:
        return value_from_proto(getattr(msg, field)) if msg.HasField(field) else None

    return VariableState(
        name=msg.name,
        type=_VAR_TYPES_BACK.get(msg.type, VarType.STR),
        value=value_from_proto(msg.value),  # type: ignore[arg-type]
        default=value_from_proto(msg.default),  # type: ignore[arg-type]
        min=opt("min"),
        max=opt("max"),
        choices=tuple(value_from_proto(c) for c in msg.choices),  # type: ignore[misc]
        help=msg.help,
        version=msg.version,
        changed_at=seconds(msg.changed_at),
        source=msg.source,
        step=msg.step if msg.HasField("step") else None,
        deferred=msg.deferred,
        applied_version=msg.applied_version,
        applied_step=msg.applied_step if msg.HasField("applied_step") else None,
    )


def trigger_to_proto(trig: TriggerState) -> pb.Trigger:
    return pb.Trigger(
        name=trig.name, help=trig.help, fires=trig.fires, handled=trig.handled,
        last_fired=timestamp(trig.last_fired), source=trig.source, version=trig.version,
    )


def trigger_from_proto(msg: pb.Trigger) -> TriggerState:
    return TriggerState(
        name=msg.name, help=msg.help, fires=msg.fires, handled=msg.handled,
        version=msg.version,
        last_fired=seconds(msg.last_fired) if msg.HasField("last_fired") else None,
        source=msg.source,
    )


def state_from_proto(run: pb.RunInfo, variables: Any, triggers: Any) -> RegistryState:
    return RegistryState(
        version=run.version,
        step=run.step if run.HasField("step") else None,
        variables=tuple(variable_from_proto(v) for v in variables),
        triggers=tuple(trigger_from_proto(t) for t in triggers),
    )
