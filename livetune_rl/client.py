"""A Python client for a running livetune server (used by the CLI, the tuner, tests, scripts).

Example::

    >>> import livetune_rl as lt
    >>> with lt.connect(run="ppo-demo") as client:                  # doctest: +SKIP
    ...     client.set({"learning_rate": 1e-4, "reward.hungry": -0.5})
    ...     client.get("learning_rate").value
    0.0001
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from . import convert, discovery
from ._proto.livetune.v1 import livetune_pb2 as pb
from ._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc
from .journal import ChangeEvent
from .options import CLIENT_METADATA, DEFAULT_ADDRESS
from .state import RegistryState, VariableState
from .values import LiveTuneError, Value


class ClientError(LiveTuneError):
    """An RPC failed; ``code`` is the gRPC status code, ``str()`` one clear line."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class RunState:
    """What ``ListVariables`` returns: the run's identity and a snapshot of its registry."""

    run: str
    pid: int
    address: str
    started: float
    journal: str
    state: RegistryState


@dataclass(frozen=True)
class WatchItem:
    """One message of a watch stream: exactly one of the three fields is set."""

    snapshot: RunState | None = None
    change: ChangeEvent | None = None
    lagged: str | None = None


@dataclass(frozen=True)
class Undone:
    """What an undo did: the sets it made, and the versions they undo (newest first)."""

    changes: tuple[ChangeEvent, ...]
    versions: tuple[int, ...]


def _run_state(run: pb.RunInfo, variables: Any, triggers: Any) -> RunState:
    return RunState(run.run, run.pid, run.address, convert.seconds(run.started), run.journal,
                    convert.state_from_proto(run, variables, triggers))


class Client:
    """A connection to one run.

    Args:
        address: ``host:port`` or ``unix:/path``.
        token: bearer token (default ``$LIVETUNE_TOKEN``).
        tls_ca: PEM file of the CA that signed the server's certificate: enables TLS.
        timeout: seconds for each unary call.
        name: who this client is, journaled as the source of its changes with the user, host
            and peer address (e.g. "livetune-tune").
        withhold_token: do not send the token, for this reason (said when the server asks
            for one). :func:`connect` sets it for an address neither the user nor discovery
            named (the default port, which any local user may hold).
    """

    def __init__(self, address: str, *, token: str | None = None,
                 tls_ca: str | os.PathLike[str] | None = None, timeout: float = 5.0,
                 name: str | None = None, withhold_token: str | None = None) -> None:
        self.address = address
        self.timeout = timeout
        token = token if token is not None else os.environ.get("LIVETUNE_TOKEN") or None
        self._withheld = withhold_token if token else None
        if self._withheld:
            token = None  # an address nobody vouched for gets no token
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.LiveTuneStub(self._channel)
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        if name:
            who = f"{name} {who}"
        self._metadata: list[tuple[str, str]] = [(CLIENT_METADATA, who)]
        if token:
            self._metadata.append(("authorization", f"Bearer {token}"))

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> ClientError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = (exc.details() if hasattr(exc, "details") else "") or str(code)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            reason = "timed out" if code is grpc.StatusCode.DEADLINE_EXCEEDED else "unavailable"
            details = (f"cannot reach a livetune run at {self.address} ({reason}); is it "
                       "running? `livetune runs` lists the live runs on this machine")
        elif code is grpc.StatusCode.UNAUTHENTICATED and self._withheld:
            details = f"{details} (the token was not sent: {self._withheld})"
        return ClientError(code, details)

    # ----------------------------------------------------------------- calls
    def list(self, patterns: Sequence[str] = ()) -> RunState:
        """Every variable and trigger (optionally filtered by glob patterns)."""
        reply = self._call(self._stub.ListVariables,
                           pb.ListVariablesRequest(patterns=list(patterns)))
        return _run_state(reply.run, reply.variables, reply.triggers)

    def get(self, name: str) -> VariableState:
        """One variable's state; :class:`ClientError` with NOT_FOUND if none."""
        return convert.variable_from_proto(
            self._call(self._stub.GetVariable, pb.GetVariableRequest(name=name)))

    def set(self, values: Mapping[str, Value], *,
            expected: Mapping[str, int] | None = None) -> list[ChangeEvent]:
        """Set variables atomically from typed Python values; returns the journaled changes."""
        return self._set({n: convert.value_to_proto(v) for n, v in values.items()}, expected)

    def set_text(self, values: Mapping[str, str], *,
                 expected: Mapping[str, int] | None = None) -> list[ChangeEvent]:
        """Set variables atomically from text the server parses with each variable's type."""
        return self._set({n: pb.Value(text=v) for n, v in values.items()}, expected)

    def _set(self, values: Mapping[str, pb.Value | None],
             expected: Mapping[str, int] | None) -> list[ChangeEvent]:
        assignments = []
        for name, value in values.items():
            a = pb.Assignment(name=name, value=value)
            if expected and name in expected:
                a.expected_version = expected[name]
            assignments.append(a)
        reply = self._call(self._stub.SetVariables, pb.SetVariablesRequest(assignments=assignments))
        return [convert.event_from_proto(c) for c in reply.changes]

    def fire(self, name: str) -> ChangeEvent:
        reply = self._call(self._stub.FireTrigger, pb.FireTriggerRequest(name=name))
        return convert.event_from_proto(reply.change)

    def undo(self, count: int = 1, *, versions: Sequence[int] = (),
             force: bool = False) -> Undone:
        """Revert the last ``count`` changes of values (or the sets ``versions``) as new sets
        naming the versions they undo; :class:`ClientError` with FAILED_PRECONDITION when a
        later change touched the same variable (unless ``force``)."""
        reply = self._call(self._stub.Undo, pb.UndoRequest(count=count, versions=list(versions),
                                                           force=force))
        return Undone(tuple(convert.event_from_proto(c) for c in reply.changes),
                      tuple(reply.undone))

    def history(self, *, since: int = 0, limit: int = 0,
                patterns: Sequence[str] = ()) -> list[ChangeEvent]:
        """Journal records with version > ``since`` (the newest ``limit`` if given)."""
        reply = self._call(self._stub.GetHistory, pb.GetHistoryRequest(
            since_version=since, limit=limit, patterns=list(patterns)))
        return [convert.event_from_proto(c) for c in reply.changes]

    def watch(self, patterns: Sequence[str] = (), *,
              timeout: float | None = None) -> Iterator[WatchItem]:
        """Stream a snapshot, then every change; ``lagged`` items announce a resync.

        The stream ends when the run stops serving on purpose (its server ends it with OK)
        or ``timeout`` runs out. A server that crashed or went away mid-stream raises
        :class:`ClientError` (``UNAVAILABLE``): a watcher can tell the two apart."""
        stream = self._stub.Watch(pb.WatchRequest(patterns=list(patterns)), timeout=timeout,
                                  metadata=self._metadata)
        received = False
        try:
            for message in stream:
                received = True
                kind = message.WhichOneof("event")
                if kind == "snapshot":
                    s = message.snapshot
                    yield WatchItem(snapshot=_run_state(s.run, s.variables, s.triggers))
                elif kind == "change":
                    yield WatchItem(change=convert.event_from_proto(message.change))
                elif kind == "lagged":
                    yield WatchItem(lagged=message.lagged.message)
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.CANCELLED or (
                    timeout is not None and code is grpc.StatusCode.DEADLINE_EXCEEDED):
                return  # we cancelled, or the watch's timeout ran out
            if received and code is grpc.StatusCode.UNAVAILABLE:
                raise ClientError(code, f"lost the run at {self.address} mid-stream: its "
                                        "server crashed or went away (a run that ends "
                                        "closes the stream cleanly)") from None
            raise self._error(exc) from None
        finally:
            stream.cancel()

    def health(self) -> bool:
        """True if the server reports SERVING (the health service needs no token)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Target:
    """Where :func:`connect` goes: the address, whether it serves TLS, and whether a token may
    be sent there (the user named the address, or an owner-only discovery record did)."""

    address: str
    tls: bool = False
    vouched: bool = True


def resolve_target(address: str | None = None,
                   run: str | discovery.RunRecord | None = None) -> Target:
    """Where to connect, in this order: ``address``, the run called ``run`` (or the run
    record itself), ``$LIVETUNE_ADDR``, the only live run on this machine, the default (not
    vouched for)."""
    if address:
        return Target(address)
    if isinstance(run, discovery.RunRecord):
        return Target(run.address, run.tls)
    if run:
        record = discovery.find_run(run)
        return Target(record.address, record.tls)
    if os.environ.get("LIVETUNE_ADDR"):
        return Target(os.environ["LIVETUNE_ADDR"])
    runs = discovery.list_runs()
    if len(runs) == 1:
        return Target(runs[0].address, runs[0].tls)
    if len(runs) > 1:
        discovery.find_run(None)  # raises, naming the runs to choose from
    return Target(DEFAULT_ADDRESS, vouched=False)


def resolve_address(address: str | None = None,
                    run: str | discovery.RunRecord | None = None) -> tuple[str, bool]:
    """``(address, tls)`` of :func:`resolve_target`."""
    target = resolve_target(address, run)
    return target.address, target.tls


def connect(address: str | None = None, *, run: str | discovery.RunRecord | None = None,
            token: str | None = None,
            tls_ca: str | os.PathLike[str] | None = None, timeout: float = 5.0,
            name: str | None = None) -> Client:
    """A :class:`Client` for ``address``, or for the run named ``run`` (see resolve_target).

    The token (``token``, else ``$LIVETUNE_TOKEN``) is sent only where the user or discovery
    pointed: with no address, no run name, no ``$LIVETUNE_ADDR`` and no live run of this user,
    the client still tries the default address but without the token, since any local user
    could be listening there; name the address (``--addr``) to send it.
    """
    target = resolve_target(address, run)
    tls_ca_used = tls_ca
    if target.tls and tls_ca_used is None:
        tls_ca_used = os.environ.get("LIVETUNE_CACERT") or None
        if tls_ca_used is None:
            raise LiveTuneError(f"{target.address} serves TLS: pass the CA certificate "
                                "(--cacert)")
    withhold = None if target.vouched else (
        f"no live run of yours is registered at {target.address}, and any local user could "
        f"hold that port; to send the token there, name it: --addr {target.address}")
    return Client(target.address, token=token, tls_ca=tls_ca_used, timeout=timeout, name=name,
                  withhold_token=withhold)
