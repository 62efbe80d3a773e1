import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VarType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VAR_TYPE_UNSPECIFIED: _ClassVar[VarType]
    VAR_TYPE_FLOAT: _ClassVar[VarType]
    VAR_TYPE_INT: _ClassVar[VarType]
    VAR_TYPE_BOOL: _ClassVar[VarType]
    VAR_TYPE_STRING: _ClassVar[VarType]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_SET: _ClassVar[ChangeKind]
    CHANGE_KIND_FIRE: _ClassVar[ChangeKind]
    CHANGE_KIND_APPLIED: _ClassVar[ChangeKind]
    CHANGE_KIND_EVENT: _ClassVar[ChangeKind]
    CHANGE_KIND_START: _ClassVar[ChangeKind]
VAR_TYPE_UNSPECIFIED: VarType
VAR_TYPE_FLOAT: VarType
VAR_TYPE_INT: VarType
VAR_TYPE_BOOL: VarType
VAR_TYPE_STRING: VarType
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_SET: ChangeKind
CHANGE_KIND_FIRE: ChangeKind
CHANGE_KIND_APPLIED: ChangeKind
CHANGE_KIND_EVENT: ChangeKind
CHANGE_KIND_START: ChangeKind

class Value(_message.Message):
    __slots__ = ("double", "int", "bool", "string", "text")
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    BOOL_FIELD_NUMBER: _ClassVar[int]
    STRING_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    double: float
    int: int
    bool: bool
    string: str
    text: str
    def __init__(self, double: _Optional[float] = ..., int: _Optional[int] = ..., bool: _Optional[bool] = ..., string: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ("name", "type", "value", "default", "min", "max", "choices", "help", "version", "changed_at", "source", "step", "deferred", "applied_version", "applied_step")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_STEP_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: VarType
    value: Value
    default: Value
    min: Value
    max: Value
    choices: _containers.RepeatedCompositeFieldContainer[Value]
    help: str
    version: int
    changed_at: _timestamp_pb2.Timestamp
    source: str
    step: int
    deferred: bool
    applied_version: int
    applied_step: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[VarType, str]] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., default: _Optional[_Union[Value, _Mapping]] = ..., min: _Optional[_Union[Value, _Mapping]] = ..., max: _Optional[_Union[Value, _Mapping]] = ..., choices: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., help: _Optional[str] = ..., version: _Optional[int] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., step: _Optional[int] = ..., deferred: _Optional[bool] = ..., applied_version: _Optional[int] = ..., applied_step: _Optional[int] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("name", "help", "fires", "handled", "last_fired", "source", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    FIRES_FIELD_NUMBER: _ClassVar[int]
    HANDLED_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    help: str
    fires: int
    handled: int
    last_fired: _timestamp_pb2.Timestamp
    source: str
    version: int
    def __init__(self, name: _Optional[str] = ..., help: _Optional[str] = ..., fires: _Optional[int] = ..., handled: _Optional[int] = ..., last_fired: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run", "pid", "started", "address", "version", "step", "journal")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    run: str
    pid: int
    started: _timestamp_pb2.Timestamp
    address: str
    version: int
    step: int
    journal: str
    def __init__(self, run: _Optional[str] = ..., pid: _Optional[int] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., address: _Optional[str] = ..., version: _Optional[int] = ..., step: _Optional[int] = ..., journal: _Optional[str] = ...) -> None: ...

class ListVariablesRequest(_message.Message):
    __slots__ = ("patterns",)
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class ListVariablesResponse(_message.Message):
    __slots__ = ("run", "variables", "triggers")
    RUN_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class GetVariableRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("name", "value", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Value
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetVariablesRequest(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class SetVariablesResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ...) -> None: ...

class FireTriggerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class FireTriggerResponse(_message.Message):
    __slots__ = ("change",)
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    change: Change
    def __init__(self, change: _Optional[_Union[Change, _Mapping]] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("version", "time", "kind", "name", "old", "new", "source", "step", "applies", "data")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    APPLIES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    version: int
    time: _timestamp_pb2.Timestamp
    kind: ChangeKind
    name: str
    old: Value
    new: Value
    source: str
    step: int
    applies: int
    data: _struct_pb2.Struct
    def __init__(self, version: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., name: _Optional[str] = ..., old: _Optional[_Union[Value, _Mapping]] = ..., new: _Optional[_Union[Value, _Mapping]] = ..., source: _Optional[str] = ..., step: _Optional[int] = ..., applies: _Optional[int] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("patterns",)
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("run", "variables", "triggers")
    RUN_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class Lagged(_message.Message):
    __slots__ = ("dropped", "message")
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    message: str
    def __init__(self, dropped: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("snapshot", "change", "lagged")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    LAGGED_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    change: Change
    lagged: Lagged
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., change: _Optional[_Union[Change, _Mapping]] = ..., lagged: _Optional[_Union[Lagged, _Mapping]] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("since_version", "limit", "patterns")
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    limit: int
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, since_version: _Optional[int] = ..., limit: _Optional[int] = ..., patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("changes", "truncated")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    truncated: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("count", "versions", "force")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    count: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    force: bool
    def __init__(self, count: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., force: _Optional[bool] = ...) -> None: ...

class UndoResponse(_message.Message):
    __slots__ = ("changes", "undone")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    undone: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., undone: _Optional[_Iterable[int]] = ...) -> None: ...
