"""Attacks on a served run by a buggy or hostile local client, with measured figures.

Each attack serves a registry from a child process (``serve(out_of_process=True)``, what
``livetune train`` does), attacks it over loopback only, bounded in count and time, and
prints what it cost:

* ``auth``: a flood of calls *without* the token (1,500 in flight for 6 s) while the token
  holder makes 30 sets: the holder's latency and how many of its calls were refused.
* ``patterns``: 8 watchers with 10,000 glob patterns each while a client sets 20 values/s:
  health-check latency; then one ``GetHistory`` with 10,000 patterns on a 3,000-record
  journal.
* ``fires``: 200 ``FireTrigger("evaluate")`` in a burst against a loop of 1 ms steps whose
  evaluation takes 50 ms: evaluations run and steps/s in the 10 s after the burst.
* ``idle``: 3,000 idle TCP connections (connected, never speaking) to a serving child whose
  file-descriptor limit is 1,024: how long a health check (a fresh connection) takes.

Run (the figures go to stdout; nothing is written)::

    python benchmarks/attacks.py                       # all four
    python benchmarks/attacks.py --only auth,fires
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import livetune_rl as lt
from livetune_rl._proto.livetune.v1 import livetune_pb2 as pb
from livetune_rl._proto.livetune.v1 import livetune_pb2_grpc as pb_grpc

TOKEN = "attack-bench-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _set(name: str, value: float) -> pb.SetVariablesRequest:
    return pb.SetVariablesRequest(assignments=[pb.Assignment(name=name,
                                                             value=pb.Value(double=value))])


def _health_seconds(address: str, timeout: float = 30.0) -> tuple[float, str]:
    """Seconds a health check on a fresh connection takes, and its outcome."""
    start = time.perf_counter()
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
            outcome = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            outcome = exc.code().name
    return time.perf_counter() - start, outcome


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"median {statistics.median(values) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms")


# ----------------------------------------------------------------------------- 3: auth
def attack_auth(seconds: float = 6.0, in_flight: int = 1500) -> None:
    reg = lt.Registry()
    lt.LiveVariable("x", 0.0, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, token=TOKEN, out_of_process=True,
                      journal=False, discoverable=False, quiet=True)
    flood_codes: Counter[str] = Counter()
    stop = threading.Event()

    async def flood() -> None:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.LiveTuneStub(channel)

            async def one(i: int) -> None:
                while not stop.is_set():
                    try:
                        await stub.SetVariables(_set("x", float(i)), timeout=30)
                        flood_codes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        flood_codes[exc.code().name] += 1

            await asyncio.gather(*(one(i) for i in range(in_flight)))

    flooder = threading.Thread(target=lambda: asyncio.run(flood()), daemon=True)
    try:
        flooder.start()
        time.sleep(1.0)
        latencies: list[float] = []
        holder_codes: Counter[str] = Counter()
        deadline = time.monotonic() + seconds
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.LiveTuneStub(channel)
            for i in range(30):
                if time.monotonic() > deadline + 30:
                    break  # bounded in time too
                start = time.perf_counter()
                try:
                    stub.SetVariables(_set("x", 1000.0 + i), timeout=15, metadata=AUTH)
                    holder_codes["OK"] += 1
                except grpc.RpcError as exc:
                    holder_codes[exc.code().name] += 1
                latencies.append(time.perf_counter() - start)
        stop.set()
        flooder.join(timeout=40)
        print(f"auth: token holder, {len(latencies)} sets during a flood of {in_flight} "
              f"unauthenticated calls in flight: {_fmt(latencies)}; outcomes {dict(holder_codes)}; "
              f"flood answered {dict(flood_codes)}")
    finally:
        stop.set()
        server.stop(grace=0)


# ----------------------------------------------------------------------------- 5: patterns
def attack_patterns(watchers: int = 8, patterns: int = 10_000, seconds: float = 8.0) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="attack-patterns-"))
    journal = tmp / "journal.jsonl"
    reg = lt.Registry(journal=journal)
    for i in range(20):
        lt.LiveVariable(f"bench.v{i}", 0.0, registry=reg)
    for i in range(3000):  # a journal of some size, written before serving (no pacing)
        reg.set({f"bench.v{i % 20}": float(i)})
    server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True,
                      discoverable=False, quiet=True)
    streams: list[grpc.Future] = []
    opened: Counter[str] = Counter()
    channels = [grpc.insecure_channel(server.address) for _ in range(watchers)]
    try:
        def watch(channel: grpc.Channel, w: int) -> None:
            globs = [f"w{w}.p{i}.*[ab]?" for i in range(patterns)]
            stream = pb_grpc.LiveTuneStub(channel).Watch(pb.WatchRequest(patterns=globs))
            streams.append(stream)
            try:
                for _ in stream:
                    opened["message"] += 1
            except grpc.RpcError as exc:
                opened[exc.code().name] += 1

        threads = [threading.Thread(target=watch, args=(c, w), daemon=True)
                   for w, c in enumerate(channels)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        stop = threading.Event()

        def setter() -> None:
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.LiveTuneStub(channel)
                i = 0
                while not stop.is_set():
                    with contextlib.suppress(grpc.RpcError):
                        stub.SetVariables(_set(f"bench.v{i % 20}", float(i)), timeout=30)
                    i += 1
                    time.sleep(0.05)

        setting = threading.Thread(target=setter, daemon=True)
        setting.start()
        checks: list[float] = []
        outcomes: Counter[str] = Counter()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            took, outcome = _health_seconds(server.address)
            checks.append(took)
            outcomes[outcome] += 1
            time.sleep(0.5)
        stop.set()
        print(f"patterns: {watchers} watchers x {patterns:,} patterns + 20 sets/s: health "
              f"checks {_fmt(checks)} ({dict(outcomes)}); watch opens {dict(opened)}")
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.LiveTuneStub(channel)
            for n in (patterns, 64):
                globs = [f"bench.v{i}*" for i in range(n)]
                start = time.perf_counter()
                try:
                    reply = stub.GetHistory(pb.GetHistoryRequest(patterns=globs), timeout=60)
                    outcome = f"OK, {len(reply.changes)} records"
                except grpc.RpcError as exc:
                    outcome = f"{exc.code().name}: {exc.details()[:90]}"
                print(f"patterns: GetHistory with {n:,} patterns on a 3,000-record journal: "
                      f"{(time.perf_counter() - start) * 1000:.0f} ms ({outcome})")
        setting.join(timeout=30)
    finally:
        for stream in streams:
            stream.cancel()
        for channel in channels:
            channel.close()
        server.stop(grace=0)


# ----------------------------------------------------------------------------- 6: fires
def attack_fires(fires: int = 200, window: float = 10.0, eval_seconds: float = 0.05) -> None:
    reg = lt.Registry()
    evaluate = lt.LiveTrigger("evaluate", registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True, journal=False,
                      discoverable=False, quiet=True)
    answers: Counter[str] = Counter()

    def burst() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.LiveTuneStub(channel)
            futures = [stub.FireTrigger.future(pb.FireTriggerRequest(name="evaluate"),
                                               timeout=30) for _ in range(fires)]
            for future in futures:
                try:
                    reply = future.result()
                    answers["coalesced" if "coalesced" in reply.change.data else
                            "counted"] += 1
                except grpc.RpcError as exc:
                    answers[exc.code().name] += 1

    def step() -> None:  # ~1 ms of pure-Python work: one training step
        total = 0
        for i in range(20_000):
            total += i

    try:
        for _ in range(200):  # warm up, and measure steps/s without the attack
            step()
        start = time.perf_counter()
        for _ in range(500):
            step()
        quiet_rate = 500 / (time.perf_counter() - start)
        bursting = threading.Thread(target=burst, daemon=True)
        evaluations = steps = 0
        start = time.perf_counter()
        bursting.start()
        while time.perf_counter() - start < window:
            step()
            steps += 1
            reg.step = steps
            if evaluate.fired(step=steps):
                evaluations += 1
                time.sleep(eval_seconds)  # the evaluation: training waits for it
        rate = steps / (time.perf_counter() - start)
        bursting.join(timeout=30)
        print(f"fires: {fires} fires in a burst ({dict(answers)}): {evaluations} evaluations "
              f"of {eval_seconds * 1000:.0f} ms ran in {window:g} s, {evaluate.pending} still "
              f"pending; training {rate:.0f} steps/s vs {quiet_rate:.0f} without the burst")
    finally:
        server.stop(grace=0)


# ----------------------------------------------------------------------------- 8: idle
IDLE_SERVER = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # the serving child inherits it
    import livetune_rl as lt
    reg = lt.Registry()
    lt.LiveVariable("x", 0.0, registry=reg)
    server = lt.serve("127.0.0.1:0", registry=reg, out_of_process=True, journal=False,
                      discoverable=False, quiet=True)
    print(server.address, server.pid, flush=True)
    sys.stdin.read()
    server.stop(grace=0)
""")


def attack_idle(connections: int = 3000, seconds: float = 25.0) -> None:
    env = dict(os.environ)
    package_root = str(Path(lt.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-c", IDLE_SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        address, child = proc.stdout.readline().split()
        host, port = address.rsplit(":", 1)
        before, _ = _health_seconds(address)
        refused = 0
        for _ in range(connections):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect((host, int(port)))
                held.append(s)
            except OSError:
                refused += 1
                s.close()
        time.sleep(1.0)
        fds = len(os.listdir(f"/proc/{child}/fd"))
        checks: list[str] = []
        end = time.monotonic() + seconds
        first_ok: float | None = None
        start = time.monotonic()
        while time.monotonic() < end:
            took, outcome = _health_seconds(address, timeout=5.0)
            checks.append(f"{outcome}:{took:.1f}s")
            if outcome == "SERVING" and first_ok is None:
                first_ok = time.monotonic() - start
            time.sleep(1.0)
        alive = sum(1 for s in held if _still_open(s))
        print(f"idle: {connections} idle connections ({len(held)} connected, {refused} not) "
              f"to a serving child limited to 1,024 fds: it held {fds} fds; health before "
              f"{before * 1000:.1f} ms; during the {seconds:g} s after: first SERVING after "
              f"{'never' if first_ok is None else f'{first_ok:.1f} s'}, "
              f"{sum('SERVING' in c for c in checks)}/{len(checks)} checks SERVING "
              f"(each waits up to 5 s); {alive} of the attacker's connections still open")
    finally:
        for s in held:
            s.close()
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _still_open(s: socket.socket) -> bool:
    """False once the server closed the connection (recv sees EOF or a reset)."""
    s.setblocking(False)
    try:
        while s.recv(65536):  # what the server sent first (HTTP/2 settings) is dropped
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


ATTACKS = {"auth": attack_auth, "patterns": attack_patterns, "fires": attack_fires,
           "idle": attack_idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(ATTACKS),
                        help=f"comma-separated attacks among {', '.join(ATTACKS)}")
    args = parser.parse_args()
    print(f"livetune_rl from {Path(lt.__file__).resolve().parent}")
    for name in args.only.split(","):
        ATTACKS[name.strip()]()


if __name__ == "__main__":
    main()
