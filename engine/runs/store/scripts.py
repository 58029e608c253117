"""Script runs in the store: runs a user's own training script trains and logs through the `trainlens` client
(kind `script`), and runs imported from TensorBoard logs.

A script run is never queued: it is created `running` by the script's own process, which then writes its metric
rows (engine.runs.store.metrics, without a lease: no worker can claim it), heartbeats, and finishes it. Its config
is any JSON object (`ScriptConfig`), and who runs it is its `script` artifact (SCRIPT_INFO: program, host, pid,
whether it may be cancelled, an import's source folder), so no column of the runs table changes.

Status is true: the client's heartbeat thread refreshes the run's `heartbeat_at` (and its step) every second and
touches a pulse file (engine.runs.procs) whatever the store does. The reapers (engine.runs.store.workers: `reap`,
and `reap_if_due` on every read) mark a running script run `interrupted` when its process is gone from this host,
or when its heartbeat is older than SCRIPT_STALE_AFTER_S and its pulse stopped too (another host, a frozen
process); a heartbeat that stopped while the pulse goes on is a script waiting out a busy store, never lost. A
script that comes back (a suspended laptop woken) revives its run with its next heartbeat. A cancel from the
dashboard or the CLI (engine.runs.store.control) is read with the heartbeat; the client raises it in the script.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from engine.records import SCRIPT_INFO, RunKind, RunStatus, ScriptConfig, check_name
from engine.runs.procs import pid_alive, pulse_age
from engine.runs.store.schema import StoreBase

SCRIPT_STALE_AFTER_S = 10.0  # a script heartbeats every second: this long silent (with its pulse) means it is gone


def script_pulse_id(run_id: str) -> str:
    """The pulse file name (engine.runs.procs) of the script that trains `run_id`."""
    return f"script-{run_id}"


class ScriptsMixin(StoreBase):
    """Creating, heartbeating, finishing and reaping script runs; finding an imported one by its source."""

    def create_script_run(self, config: dict[str, Any] | None, *, program: str, host: str, pid: int,
                          name: str | None = None, group: str | None = None, owner: str = "",
                          cancellable: bool = True, source: str | None = None, details: dict | None = None,
                          started_at: float | None = None) -> str:
        """A new script run, `running`; returns its run_id. `source` (an import's folder) and `details` (what
        else the writer wants kept, e.g. an import's file signature) go into its SCRIPT_INFO. ValueError when the
        config is not a JSON object or a name is unusable."""
        config = ScriptConfig(config or {})
        text = config.to_json()  # ValueError for NaN and what JSON cannot hold; default=str keeps odd values as text
        if name is not None:
            check_name("run name", name)
        if group is not None:
            check_name("group", group)
        check_name("owner", owner)
        from engine.classroom import LOCAL
        from engine.runs.store.runs import _unique_name

        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        started = started_at if started_at is not None else now
        info = {**(details or {}), "program": str(program)[:1000], "host": str(host)[:255], "pid": int(pid),
                "cancellable": bool(cancellable), "source": source}
        with self._tx() as c:
            name = name if name is not None else _unique_name(c, _default_script_name(program))
            c.execute("INSERT INTO runs(run_id, kind, name, grp, owner, owner_role, config, status, device, created_at, "
                      "queued_at, started_at, heartbeat_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      (run_id, RunKind.SCRIPT, name, group or "", owner, LOCAL, text, RunStatus.RUNNING,
                       _device(program, info["host"]), started, started, started, now, None))
            c.execute("INSERT INTO artifacts(run_id, name, value, created_at) VALUES (?,?,?,?)",
                      (run_id, SCRIPT_INFO, json.dumps(info), now))
        return run_id

    def script_heartbeat(self, run_id: str, step: int) -> dict[str, bool]:
        """The script is alive at `step`: {"cancel": a cancel was requested, "gone": the run was deleted or ended
        by someone else}. Revives the run when a reaper had marked it interrupted (the script was only silent)."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT status, cancel_requested FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None or row["status"] not in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
                return {"cancel": False, "gone": True}
            c.execute(f"UPDATE runs SET heartbeat_at=?, step=MAX(step, ?), status='{RunStatus.RUNNING}', "
                      "error=NULL, finished_at=NULL WHERE run_id=?", (now, int(step), run_id))
            return {"cancel": bool(row["cancel_requested"]), "gone": False}

    def finish_script_run(self, run_id: str, status: str, error: str | None = None, step: int | None = None,
                          finished_at: float | None = None) -> None:
        """The script's last word: its final status (completed, failed with the exception's message, cancelled,
        interrupted by Ctrl-C), last step and end (now, or an import's last wall time). A run someone else ended or
        deleted meanwhile is left as it is."""
        now = time.time()
        with self._tx() as c:
            c.execute(f"UPDATE runs SET status=?, error=?, finished_at=?, step=MAX(step, COALESCE(?, step)), "
                      f"heartbeat_at=? WHERE run_id=? AND status IN ('{RunStatus.RUNNING}', '{RunStatus.INTERRUPTED}')",
                      (status, None if error is None else str(error)[:4000], finished_at or now, step, now, run_id))

    def update_script_config(self, run_id: str, values: dict[str, Any]) -> None:
        """Merge `values` into a script run's config (TensorBoard's add_hparams); ValueError for a run that is not
        a script's."""
        with self._tx() as c:
            row = c.execute("SELECT kind, config FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None or row["kind"] != RunKind.SCRIPT:
                raise ValueError(f"run {run_id} is not a script's run")
            config = ScriptConfig({**json.loads(row["config"]), **values})
            c.execute("UPDATE runs SET config=? WHERE run_id=?", (config.to_json(), run_id))

    def script_info(self, run_id: str) -> dict[str, Any] | None:
        """A script run's SCRIPT_INFO (program, host, pid, cancellable, source); None for any other run."""
        return self.get_artifact(run_id, SCRIPT_INFO)  # type: ignore[attr-defined]

    def imported_run(self, source: str) -> str | None:
        """The run imported from `source` (an absolute folder), if any."""
        row = self.conn.execute("SELECT run_id FROM artifacts WHERE name=? AND json_extract(value, '$.source')=? "
                                "ORDER BY created_at LIMIT 1", (SCRIPT_INFO, source)).fetchone()
        return row["run_id"] if row else None

    def _running_scripts(self, c: sqlite3.Connection) -> list[sqlite3.Row]:
        return c.execute(
            "SELECT r.run_id, r.step, r.heartbeat_at, json_extract(a.value, '$.pid') AS pid, "
            "json_extract(a.value, '$.host') AS host FROM runs r LEFT JOIN artifacts a ON a.run_id=r.run_id AND "
            f"a.name=? WHERE r.status='{RunStatus.RUNNING}' AND r.kind='{RunKind.SCRIPT}'", (SCRIPT_INFO,)).fetchall()

    def scripts_lost(self, now: float) -> bool:
        """Whether a running script run's process is gone (a read's cheap check before it takes the write lock)."""
        return any(_lost(row, now) for row in self._running_scripts(self.conn))

    def reap_scripts(self, c: sqlite3.Connection, now: float) -> list[str]:
        """Inside the reaper's transaction: mark the runs of lost scripts interrupted; returns their ids."""
        interrupted = []
        for row in self._running_scripts(c):
            if _lost(row, now):
                reason = (f"its script (process {row['pid']} on {row['host']}) stopped at step {row['step']} "
                          "without finishing (killed, crashed or its computer went to sleep); run the script again "
                          "to train anew")
                c.execute(f"UPDATE runs SET status='{RunStatus.INTERRUPTED}', error=?, finished_at=? WHERE run_id=? "
                          f"AND status='{RunStatus.RUNNING}'", (reason, now, row["run_id"]))
                interrupted.append(row["run_id"])
        return interrupted


def _lost(row: sqlite3.Row, now: float) -> bool:
    from engine.runs.store.workers import _worker_lost

    alive = pid_alive(int(row["pid"]), str(row["host"])) if row["pid"] is not None and row["host"] else None
    return _worker_lost(row["heartbeat_at"] or 0.0, alive, now, SCRIPT_STALE_AFTER_S,
                       pulse_age(script_pulse_id(row["run_id"]), now))


def _device(program: str, host: str) -> str:
    """Where a script run trains, as the Runs table's device column shows it: 'train.py on laptop-7'."""
    from pathlib import PurePath

    return f"{PurePath(str(program)).name or 'script'} on {host}"[:200]


def _default_script_name(program: str) -> str:
    """A script run's default name: its script's file name without `.py` ('train' for train.py), else 'script'."""
    from pathlib import PurePath

    from engine.records import fit_name

    stem = PurePath(str(program)).stem if program else ""
    return fit_name(stem if stem and stem not in ("-c", "-", "") else "script")
