"""The monitor's own stage in `perception bench` (issue 14's bar: p50 <= 0.2 ms per frame).

Per frame, on the bench's frames and the main runtime's predictions of them: measure (the
image half, in the loop's thread right after inference: the loop's "monitor" stage),
update (prediction properties, windows, state: the output side) and their sum, the
monitor's cost per frame; status (the record's `monitor` object) apart, since it is built
only when records are written. The windows are full before timing starts.
"""

from __future__ import annotations

import time
from typing import Any

from serving.monitor import Monitor
from serving.monitor_profile import MonitorProfile
from serving.runtime import Runtime
from serving.source import Frame
from serving.stats import describe_ms

MONITOR_MS = 0.2  # the bar: measure + update p50 per frame, ms
DISTINCT = 50  # frames whose model input and prediction are kept for the timing


def bench_monitor(
    rt: Runtime, frames: list[Frame], profile: MonitorProfile | None, reps: int
) -> dict[str, Any]:
    """Timings (ms) of each part over reps frames, after a window's worth untimed."""
    inputs = []
    for f in frames[:DISTINCT]:
        r = rt(f.image, f.t_ns / 1e9, f.speed_mps, {})
        inputs.append((rt.last_input.copy(), r.pred))
    rt.reset()
    m = Monitor(rt.contract, rt.calib, profile)
    clock = time.perf_counter_ns
    parts: dict[str, list[float]] = {"measure": [], "update": [], "frame": [], "status": []}
    warm = m.cfg.window
    for k in range(reps + warm):
        x, pred = inputs[k % len(inputs)]
        t0 = clock()
        sample = m.measure(x)
        t1 = clock()
        m.update(sample, pred)
        t2 = clock()
        m.status()
        t3 = clock()
        if k >= warm:
            for name, ns in (("measure", t1 - t0), ("update", t2 - t1), ("frame", t2 - t0),
                             ("status", t3 - t2)):  # fmt: skip
                parts[name].append(ns / 1e6)
    return {
        "reps": reps,
        "distinct_frames": len(inputs),
        "profile": profile.path if profile is not None else None,
        "rows": len(m.rows),
        **{name: describe_ms(v) for name, v in parts.items()},
    }
