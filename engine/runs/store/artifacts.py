"""Checkpoints and artifacts in the store: which checkpoint files a run has, and its JSON artifacts (model
summary, evaluation reports, recipe checks, histograms, a Ray run's placement...; names in engine.records).

Both are written under the writer's lease (`fence`, see engine.runs.store.runs). A checkpoint file is written
aside (`staged`) and moved into place inside the fenced transaction, so a stale worker can never overwrite the
file of the run's current owner. An artifact whose stored JSON cannot be read reads as missing: a damaged row must
not take a report page down.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterable

import pandas as pd

from engine.runs.store.runs import Fence, check_fence
from engine.runs.store.schema import StoreBase


class ArtifactsMixin(StoreBase):
    """Checkpoint records and JSON artifacts of runs."""

    def add_checkpoint(self, run_id: str, epoch: int, kind: str, path: str, metrics: dict[str, float],
                       fence: Fence | None = None, staged: str | None = None) -> None:
        """Record a checkpoint file. `staged`: the file was written there and is moved to `path` inside the
        fenced transaction, so a stale worker can never overwrite the file of the run's current owner."""
        with self._tx() as c:
            check_fence(c, fence)
            if staged is not None:
                os.replace(staged, path)
            c.execute("INSERT OR REPLACE INTO checkpoints(run_id, epoch, kind, path, created_at, metrics) "
                      "VALUES (?,?,?,?,?,?)", (run_id, epoch, kind, path, time.time(), json.dumps(metrics)))

    def list_checkpoints(self, run_id: str) -> pd.DataFrame:
        cursor = self.conn.execute("SELECT epoch, kind, path, created_at, metrics FROM checkpoints WHERE run_id=? "
                                   "ORDER BY epoch, kind", (run_id,))
        return pd.DataFrame(cursor.fetchall(), columns=["epoch", "kind", "path", "created_at", "metrics"])

    def put_artifact(self, run_id: str, name: str, value: Any, fence: Fence | None = None) -> None:
        """File a JSON artifact on `run_id`; `fence` is the writer's claim (for a helper job mirroring its result
        onto the run it serves, the job's own claim)."""
        with self._tx() as c:
            check_fence(c, fence)
            c.execute("INSERT OR REPLACE INTO artifacts(run_id, name, value, created_at) VALUES (?,?,?,?)",
                      (run_id, name, json.dumps(value), time.time()))

    def get_artifact(self, run_id: str, name: str) -> Any | None:
        """An artifact's value; None when there is none, or when its stored JSON is unreadable (a damaged row
        must not take the report page down: the section that needed it says it is missing)."""
        row = self.conn.execute("SELECT value FROM artifacts WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row["value"])
        except (ValueError, TypeError, RecursionError):
            return None

    def artifact_values(self, name: str, run_ids: Iterable[str]) -> dict[str, Any]:
        """run_id -> the value of its artifact `name`, for those of `run_ids` that have one (one query per 500 runs,
        not one per run). An unreadable row is left out, as get_artifact reads it as missing."""
        run_ids = list(run_ids)
        values: dict[str, Any] = {}
        for start in range(0, len(run_ids), 500):  # well under SQLite's limit on bound parameters
            chunk = run_ids[start:start + 500]
            rows = self.conn.execute(f"SELECT run_id, value FROM artifacts WHERE name=? AND run_id IN "
                                     f"({','.join('?' * len(chunk))})", [name, *chunk])
            for row in rows:
                try:
                    values[row["run_id"]] = json.loads(row["value"])
                except (ValueError, TypeError, RecursionError):
                    continue
        return values

    def list_artifacts(self, run_id: str) -> list[str]:
        return [r["name"] for r in self.conn.execute("SELECT name FROM artifacts WHERE run_id=? ORDER BY name", (run_id,))]
