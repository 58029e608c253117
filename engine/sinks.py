"""Where a run reports to: the `Sink` protocol the training loop and the helper jobs write through, and
`MemorySink`, which keeps everything in lists (tests, benchmarks, notebooks).

The executors bring their own sinks: `StoreSink` (engine.runs.worker) batches into SQLite, `RelaySink`
(engine.runs.ray_remote) relays to the Ray dispatcher. Torch-free: nothing here touches a tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol


class Sink(Protocol):
    """Where a run reports to. StoreSink (worker) batches into SQLite; MemorySink keeps lists (tests)."""

    def log(self, step: int, epoch: int, values: dict[str, float]) -> None: ...
    def progress(self, step: int, total_steps: int, epoch: int) -> None: ...
    # `staged`: the file was written there; the sink moves it to `path` when it records it (StoreSink does so only
    # while the worker still owns the run, so a stale worker never overwrites the current owner's file)
    def checkpoint(self, epoch: int, kind: str, path: str, metrics: dict[str, float], staged: str | None = None) -> None: ...
    def artifact(self, name: str, value: object) -> None: ...
    def rewind(self, step: int) -> None: ...  # forget metrics logged after `step` (a resumed run logs them again)


@dataclass
class MemorySink:
    """Keeps everything in lists; for tests, benchmarks and notebooks."""

    rows: list[tuple[int, int, str, float]] = field(default_factory=list)
    checkpoints: list[tuple[int, str, str]] = field(default_factory=list)
    artifacts: dict[str, object] = field(default_factory=dict)
    last_progress: tuple[int, int, int] = (0, 0, 0)

    def log(self, step, epoch, values):
        self.rows.extend((step, epoch, key, float(value)) for key, value in values.items())

    def progress(self, step, total_steps, epoch):
        self.last_progress = (step, total_steps, epoch)

    def checkpoint(self, epoch, kind, path, metrics, staged=None):
        if staged is not None:
            os.replace(staged, path)
        self.checkpoints.append((epoch, kind, path))

    def artifact(self, name, value):
        self.artifacts[name] = value

    def rewind(self, step):
        self.rows = [row for row in self.rows if row[0] <= step]

    def series(self, key: str) -> list[float]:
        return [value for _, _, k, value in self.rows if k == key]
