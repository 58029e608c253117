"""How busy the dashboard server is, and how much live refresh intervals stretch because of it.

One Streamlit server runs every session's page code in one Python process: about one core, however many the
machine has. `LOAD` samples that process's CPU clock at every live tick (app.ui.live); when the server would need
more than CORE_BUDGET cores with every live view at its page's own interval (thirty students watching one server),
every interval is stretched by the same factor, up to MAX_STRETCH, and shared views are rebuilt as much less often
(app.ui.state.shared_figure). A laptop with one tab never notices.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from engine import settings

# the server's CPU the controller aims at: one Python process saturates near 1 core, and refresh latency climbs
# well before (measured with benchmarks/class_load.py: 0.5 kept the p95 refresh near 0.5 s, 0.8 let it reach 5 s)
CORE_BUDGET = settings.value_or_default("TRAINLENS_REFRESH_CORES")
MAX_STRETCH = 8.0  # intervals grow at most this much: a 1.5 s chart still refreshes every 12 s under any load


class LoadMeter:
    """How busy this server process is, from its own CPU clock, sampled at every live tick.

    The process clock counts everything a refresh costs: the page's code, and Streamlit's work around it
    (messages, websockets, sessions), which was about as much again as the page's code under a class's load; a
    sum of the ticks' own CPU missed it. Page loads and clicks count too, so the budget errs towards calm."""

    def __init__(self, window: float = 10.0):
        self.window = window
        self._samples: deque[tuple[float, float, float]] = deque()  # (when, process CPU s, stretch in effect)
        self._lock = threading.Lock()
        self._held: tuple[float, float] | None = None  # (when, stretch) last worked out

    def sample(self, stretch: float, now: float | None = None, cpu: float | None = None) -> None:
        """Note the process CPU clock now, while intervals are stretched by `stretch`."""
        now = time.monotonic() if now is None else now
        cpu = time.process_time() if cpu is None else cpu
        with self._lock:
            self._samples.append((now, cpu, stretch))
            while len(self._samples) > 2 and self._samples[1][0] < now - self.window:
                self._samples.popleft()  # keep one sample at or before the window's start

    def demand_cores(self, now: float | None = None) -> float:
        """Cores the server would use with every live view at its page's own interval: the cores it used over the
        window, times the stretch in effect meanwhile (a tick drawn at 3x the interval stands for three)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            samples = [s for s in self._samples if s[0] >= now - 2 * self.window]
        if len(samples) < 2 or samples[-1][0] - samples[0][0] < 1.0:
            return 0.0
        (t0, cpu0, _), (t1, cpu1, _) = samples[0], samples[-1]
        stretch = sum(s[2] for s in samples) / len(samples)
        return (cpu1 - cpu0) / (t1 - t0) * stretch

    def stretch(self, now: float | None = None) -> float:
        """The factor every refresh interval is multiplied by now (1.0 when the budget is met); worked out at most
        every half second (each tick asks several times)."""
        at = time.monotonic() if now is None else now
        held = self._held
        if now is None and held is not None and 0 <= at - held[0] < 0.5:
            return held[1]
        value = min(MAX_STRETCH, max(1.0, self.demand_cores(now) / CORE_BUDGET))
        if now is None:
            self._held = (at, value)
        return value


LOAD = LoadMeter()
