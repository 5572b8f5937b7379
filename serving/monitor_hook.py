"""The monitor inside the application (serving.app): what the demo, the bench, the soak
and `perception monitor` plug into the loop.

The image half of the monitor must read the model input of the frame just inferred, which
only the loop's thread can (the next frame's preprocessing overwrites it), so it runs there
as the application's input probe (~40 us on the critical path). The rest (prediction
properties, windows, state, the record's `monitor` object) runs as an output hook, beside
the loop. Frames reach the output side in the order the loop processed them; a FIFO hands
each frame's image half across.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from serving.contract import ModelContract
from serving.geometry import Calib
from serving.monitor import LEVELS, Monitor
from serving.monitor_profile import load_profile, model_profile_path


class MonitorHook:
    """probe(x) on the loop's thread, hook(frame, result, record) on the output side; counts
    the frames in each state and the frames where alerts began, for the run's summary."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self._fifo: deque[np.ndarray] = deque()
        self.counts = [0, 0, 0]
        self.alerts: list[tuple[int, str]] = []  # (frame index, reason) where alerts began
        self._last = 0

    def probe(self, x: np.ndarray) -> None:
        """x float32[1, 3, h, w]: the model input of the frame just inferred."""
        self._fifo.append(self.monitor.measure(x))

    def __call__(self, frame: Any, result: Any, record: dict[str, Any]) -> None:
        """frame: serving.source.Frame; result: serving.runtime.Result (pred in source
        pixels). Adds record["monitor"] (Monitor.status)."""
        state = self.monitor.update(self._fifo.popleft() if self._fifo else None, result.pred)
        self.counts[state] += 1
        if state == 2 and self._last < 2:
            self.alerts.append((int(frame.index), self.monitor.reason()))
        self._last = state
        record["monitor"] = self.monitor.status()

    def attach(self, app: Any) -> MonitorHook:
        """Plug into a serving.app.App: the probe, the hook and a HUD line."""
        app.probes.append(self.probe)
        app.hooks.append(self)
        app.hud.extra["monitor"] = self.hud
        return self

    def new_source(self, calib: Calib) -> None:
        """The next frames come from another camera (see Monitor.new_source)."""
        self._fifo.clear()
        self.monitor.new_source(calib)

    def hud(self) -> str:
        return self.monitor.hud()

    def summary(self) -> dict[str, Any]:
        """Frames per state, share of frames per state, the frames where alerts began."""
        n = max(sum(self.counts), 1)
        return {
            "frames": dict(zip(LEVELS, self.counts, strict=True)),
            "share": {lv: round(c / n, 4) for lv, c in zip(LEVELS, self.counts, strict=True)},
            "alerts": [{"frame": f, "reason": r} for f, r in self.alerts],
            "profile": self.monitor.profile.path if self.monitor.profile else None,
        }

    def summary_line(self) -> str:
        """One line for a run's printed summary."""
        s = self.summary()
        sh = s["share"]
        head = (
            f"monitor: ok {100 * sh['ok']:.1f} %, warn {100 * sh['warn']:.1f} %, alert "
            f"{100 * sh['alert']:.1f} % of frames"
        )
        if s["profile"] is None:
            head += " (no profile: frozen / blocked / camera-moved checks only)"
        if self.alerts:
            f, reason = self.alerts[0]
            head += f"; {len(self.alerts)} alert(s), the first at frame {f}: {reason}"
        return head


def for_model(
    model: str | Path, contract: ModelContract, calib: Calib, profile: str | Path | None = None
) -> MonitorHook:
    """The monitor of a model: its profile from `profile`, else from next to the model
    (serving.monitor_profile.model_profile_path); without one the checks that need no
    profile still run. A profile that cannot be used is an error (ProfileError)."""
    path = Path(profile) if profile is not None else model_profile_path(model)
    prof = load_profile(path) if profile is not None or path.is_file() else None
    return MonitorHook(Monitor(contract, calib, prof))
