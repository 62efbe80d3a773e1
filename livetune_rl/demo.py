"""``livetune demo``: a tiny live-tunable loop that needs no torch (SGD on a noisy quadratic).

It shows the whole value path without any ML library: live variables read on the hot path,
a deferred knob applied at a safe point and journaled as ``applied``, and triggers.

Example::

    livetune demo --seconds 60          # terminal 1
    livetune set learning_rate 0.3      # terminal 2
    livetune fire report
"""

from __future__ import annotations

import random
import time

from .knobs import Knobs
from .registry import LiveTrigger, LiveVariable, Registry
from .values import Value


def run_demo(seconds: float = 60.0, address: str | None = None, run: str = "demo") -> int:
    from .server import serve

    registry = Registry()
    knobs = Knobs(registry)
    state = {"step_size": 0.05}

    def set_step_size(value: Value) -> None:
        state["step_size"] = float(value)

    knobs.add("learning_rate", state["step_size"], set_step_size, min=1e-6, max=1.0,
              help="step size, applied at the start of each iteration")
    noise = LiveVariable("noise", 0.1, min=0.0, max=10.0, help="gradient noise",
                         registry=registry)
    report = LiveTrigger("report", help="print the current loss", registry=registry)
    stop = LiveTrigger("stop", help="end the loop", registry=registry)
    rng = random.Random(0)
    x, step = 10.0, 0
    with serve(address, run=run, registry=registry) as server:
        print(f"try: livetune --addr {server.address} set learning_rate 0.3", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            step += 1
            registry.step = step
            knobs.apply_pending(step)  # the safe point: apply the deferred knob
            step_size = state["step_size"]
            x -= step_size * (2 * x + rng.gauss(0.0, noise.value))
            if report.fired(step=step):
                print(f"step {step}: x={x:.4f} loss={x * x:.6f} lr={step_size}", flush=True)
            if stop.fired(step=step):
                break
            time.sleep(0.01)
        print(f"demo finished at step {step}: loss={x * x:.6f}", flush=True)
    return 0
