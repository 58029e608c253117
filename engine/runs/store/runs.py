"""Runs in the store: creating (queueing) them, reading one or a listing, finding one by a short id, their
names, and what their worker reports (running, progress, final status).

A run leaves the store as a `RunRecord` (engine.records), a dict with its parsed RunConfig (a ScriptConfig for a
script's run, engine.runs.store.scripts) and its progress, ETA and duration (`get_run`; `claim_next` in
engine.runs.store.queue), or as one row of the `list_runs` DataFrame (the record's keys, the config spread over
one `cfg.<field>` column per field). Reads of runs first reap workers that
died (throttled; see engine.runs.store.workers), so a run's status is true within seconds of its worker's death
whoever reads it.

Faults the store is built to survive (each has a test):
- Leases (fencing): every claim of a run takes a new `lease` number; a worker's writes carry `fence=(run_id,
  lease)` and apply only while that lease is current and the run is running (`check_fence`, also used by the
  metric, checkpoint and artifact writes), so a worker frozen past the reaper and woken after its run was resumed
  elsewhere cannot write a duplicated step or overwrite the final status (`LeaseLost`). Checkpoint files are moved
  into place inside the same fenced transaction (engine.runs.store.artifacts).
- Unreadable rows are quarantined: listing skips and reports them (`frame.attrs["unreadable"]`), a claim fails
  them with the reason, and they can still be cancelled and deleted.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from typing import Any, Iterable, cast

import pandas as pd

from engine.classroom import LOCAL, Actor
from engine.config import RunConfig
from engine.paths import check_data_dir
from engine.records import (NAME_MAX, STATUSES, TERMINAL, RunKind, RunRecord, RunStatus, ScriptConfig, check_name,
                             fit_name)
from engine.runs.access import check_submission, run_examples
from engine.runs.lineage import check_transfer
from engine.runs.store.classes import class_limits, queued_of
from engine.runs.store.schema import StoreBase

# The runs table's columns: a RunRecord's keys (`group` is stored as grp) less its three derived ones.
RUN_COLUMNS = ("run_id", "kind", "name", "grp", "owner", "owner_role", "owner_id", "config", "status", "device",
               "worker_id", "created_at", "queued_at", "parent_id", "started_at", "finished_at", "heartbeat_at", "step",
               "total_steps", "epoch", "error", "cancel_requested", "resume_from", "lease", "claimed_at", "pace",
               "pace_at", "pace_since")
# Names are capped when written (engine.records.NAME_MAX); rows written before the cap are cut when read, so one
# 50 MB name cannot take every page down.
RUN_SELECT = ", ".join(f"substr({c}, 1, 1000) AS {c}" if c in ("name", "grp", "owner", "error") else c
                       for c in RUN_COLUMNS)

Fence = tuple[str, int]  # (run_id, lease): the claim a worker's write is made under


class LeaseLost(RuntimeError):
    """A worker's write was refused: the run is no longer its own (reaped, resumed elsewhere, deleted)."""


class UnreadableRun(ValueError):
    """A run row that cannot be parsed (damaged config JSON, unknown status or kind)."""


class RunsMixin(StoreBase):
    """Creating, reading and listing runs, and what a run's worker reports about it."""

    def create_run(self, config: RunConfig, *, kind: str = RunKind.TRAIN, owner: str = "", name: str | None = None,
                   group: str | None = None, parent_id: str | None = None, actor: Actor | None = None) -> str:
        """Validate and enqueue a run; returns its run_id.

        With an `actor` the run is theirs (owner_id = their member id in a class, owner = their display name as a
        label, owner_role = role), and a student's run must fit the class limits (`CapReached`), checked in the same
        transaction that inserts it, so 1,000 submissions at once cannot slip past the queued cap. Without a `name`
        the run gets a unique readable default (`unique_name`). A run started from another (`init_from`) is checked
        and its source resolved first (engine.runs.lineage: SourceRefused, one line)."""
        kind = RunKind(kind)  # ValueError names the allowed kinds
        owner, owner_role, owner_id = check_new_run(config, name, group, owner, actor)
        if kind == RunKind.TRAIN:  # the run it starts from, resolved to its full id, and what fine-tuning needs
            config = check_transfer(self, config)
        group = group if group is not None else config.group
        parameters, examples = run_costs(config, actor)
        with self._tx() as c:
            if actor is not None and actor.is_student:
                check_submission(actor, class_limits(c), config, parameters=parameters, examples=examples,
                                 queued=queued_of(c, actor))
            if group and is_launch_group(c, group):  # a run slipped into a launch would ride on its one place
                raise ValueError(f"group {group!r} is a lesson's launch: only its own runs have it; choose another "
                                 "group")
            return insert_run(c, config, kind=kind, name=name, owner=owner, owner_role=owner_role, owner_id=owner_id,
                              group=group, parent_id=parent_id, actor=actor)

    def unique_name(self, config: RunConfig, actor: Actor | None = None) -> str:
        """The default name a run of `config` by `actor` would get now (the Train form suggests it)."""
        return _unique_name(self.conn, default_name(config, actor))

    def get_run(self, run_id: str) -> RunRecord | None:
        """One run (None when there is no such run). Reaps dead workers first: see `reap_if_due`
        (engine.runs.store.workers)."""
        self.reap_if_due()
        row = self.conn.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return None
        try:
            record = run_record(row)
        except UnreadableRun as exc:
            problem = f"run {run_id} is unreadable ({exc}); mark it failed and delete it on the Runs page"
            raise UnreadableRun(problem) from None
        if record["status"] == RunStatus.RUNNING and self.not_responding(run_id):
            record["error"] = self.not_responding(run_id)  # its worker is lost; the store cannot say so yet
        return record

    def mark_unreadable_failed(self, run_id: str, problem: str) -> None:
        """Fail a quarantined run (whatever its recorded status) so it can be deleted; its worker, if one still
        trains it, loses its lease."""
        self.conn.execute(f"UPDATE runs SET status='{RunStatus.FAILED}', error=?, finished_at=?, lease=lease+1 "
                          "WHERE run_id=?", (f"unreadable run record: {problem}"[:1000], time.time(), run_id))

    def find_run(self, prefix: str) -> str | None:
        """Resolve a run id or a unique prefix of one (the CLI accepts short ids)."""
        if not prefix:
            return None
        rows = self.conn.execute("SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return rows[0]["run_id"] if len(rows) == 1 else None

    def list_runs(self, *, status: Iterable[str] | None = None, group: str | None = None,
                  kind: str | Iterable[str] | None = None) -> pd.DataFrame:
        """All runs (of one `kind`, or of several), newest first, with progress/ETA and one `cfg.<field>` column per
        config field (a script run's: one per key of its config, nested keys dotted; see ScriptConfig.columns).

        Reaps dead workers first (see `reap_if_due`), so a status filter sees the truth too."""
        self.reap_if_due()
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            status = list(status)
            query += f" AND status IN ({','.join('?' * len(status))})"
            args += status
        if group is not None:
            query += " AND grp=?"
            args.append(group)
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += kinds
        query = query.replace("SELECT *", f"SELECT {RUN_SELECT}", 1)
        rows = [dict(r) for r in self.conn.execute(query + " ORDER BY created_at DESC, rowid DESC", args)]
        records, unreadable = [], []
        for run in rows:
            run["group"] = run.pop("grp")
            if run["status"] == RunStatus.RUNNING and self.not_responding(run["run_id"]):
                run["error"] = self.not_responding(run["run_id"])  # its worker is lost; the store cannot say so yet
            try:
                parsed = parse_run(run)
                config = parsed.columns() if isinstance(parsed, ScriptConfig) else parsed.to_dict()
            except UnreadableRun as exc:  # quarantined: listed apart, never breaks the listing of the others
                unreadable.append({"run_id": run["run_id"], "name": run["name"], "status": run["status"],
                                   "problem": str(exc)})
                continue
            del run["config"]
            run.update(run_progress(run))
            run.update({f"cfg.{k}": v for k, v in config.items()})
            records.append(run)
        frame = pd.DataFrame.from_records(records)
        if frame.empty:  # the same columns as a listing with runs: a RunRecord's keys, the config as cfg.<field>
            columns = [key for key in RunRecord.__annotations__ if key != "config"]
            frame = pd.DataFrame(columns=columns + [f"cfg.{k}" for k in RunConfig().to_dict()])
        frame.attrs["unreadable"] = unreadable
        return frame

    def runs_fingerprint(self) -> str:
        """A value that changes whenever anything `list_runs` shows changes (status, progress, names, owners,
        errors, configs...): readers that share one listing (the dashboard's sessions) compare it instead of
        listing again. One aggregate query in SQLite. It reaps first, as a listing does, and counts the runs that
        read as not responding while a write waits (they change what a listing shows, not the table)."""
        self.reap_if_due()
        row = self.conn.execute(
            "SELECT COUNT(*) || ':' || COALESCE(group_concat(run_id || status || step || '/' || total_steps || '/' || "
            "epoch || '/' || lease || '/' || queued_at || '/' || COALESCE(started_at, '') || '/' || "
            "COALESCE(finished_at, '') || '/' || COALESCE(device, '') || '/' || length(name) || name || grp || owner || "
            "owner_role || owner_id || kind || length(COALESCE(error, '')) || '/' || length(config) || '/' || "
            "cancel_requested, "
            "'|'), '') FROM runs").fetchone()
        return row[0] + ("|not responding:" + ",".join(sorted(self._not_responding)) if self._not_responding else "")

    def set_running(self, run_id: str, worker_id: str, device: str, fence: Fence | None = None) -> None:
        now = time.time()
        with self._tx() as c:
            check_fence(c, fence)
            c.execute(f"UPDATE runs SET status='{RunStatus.RUNNING}', worker_id=?, device=?, started_at=COALESCE(started_at, ?), "
                      f"heartbeat_at=?, error=NULL, {PACE_RESET} WHERE run_id=?", (worker_id, device, now, now, run_id))

    def update_status(self, run_id: str, status: str, error: str | None = None, fence: Fence | None = None) -> bool:
        """Set a run's status. Under a `fence` it applies only while that lease still owns the running run;
        returns whether it applied (a stale worker's final word is dropped, not an error)."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r}: allowed values are {', '.join(STATUSES)}")
        finished = time.time() if status in TERMINAL else None
        with self._tx() as c:
            try:
                check_fence(c, fence)
            except LeaseLost:
                return False
            # a cancel without a word of its own keeps the reason it was asked for (the class's time limit)
            c.execute("UPDATE runs SET status=?, error=COALESCE(?, CASE WHEN ?=? THEN error END), finished_at=? "
                      "WHERE run_id=?", (status, None if error is None else str(error)[:4000], status,
                                         RunStatus.CANCELLED.value, finished, run_id))
        return True

    def update_progress(self, run_id: str, step: int, total_steps: int, epoch: int, fence: Fence | None = None) -> None:
        """A worker's progress report; it also measures the run's pace (`next_pace`) for its ETA."""
        now = time.time()
        with self._tx() as c:
            check_fence(c, fence)
            before = c.execute("SELECT step, pace, pace_at, pace_since FROM runs WHERE run_id=?", (run_id,)).fetchone()
            pace, since = next_pace(before, step, now) if before is not None else (None, now)
            c.execute("UPDATE runs SET step=?, total_steps=?, epoch=?, heartbeat_at=?, pace=?, pace_at=?, pace_since=? "
                      "WHERE run_id=?", (step, total_steps, epoch, now, pace, now, since, run_id))


def check_new_run(config: RunConfig, name: str | None, group: str | None, owner: str,
                  actor: Actor | None) -> tuple[str, str, str]:
    """Validate a new run's config, name, group and data folder (ValueError says which is wrong); its (owner,
    owner_role, owner_id): the actor's (a class member's id), else `owner` as the local user."""
    config.validate()
    if name is not None:
        check_name("run name", name)
    if group is not None:
        check_name("group", group)
    owner, owner_role, owner_id = ((actor.name, actor.role, actor.member_id) if actor is not None
                                   else (owner, LOCAL, ""))
    if owner_role != LOCAL and not owner_id:
        raise ValueError(f"{owner!r} is not a member of the class (no member id): sign in to the class first")
    check_name("owner", owner)
    if config.data_dir:
        check_data_dir(config.data_dir)  # ValueError: a dashboard user cannot point a worker anywhere on disk
    return owner, owner_role, owner_id


def run_costs(config: RunConfig, actor: Actor | None) -> tuple[int | None, int | None]:
    """(parameters, training examples) of a student's run for the class limits, counted before the write lock is
    taken (torch's meta device, a CSV's rows); (None, None) for anyone else, who has no such limits."""
    if actor is None or not actor.is_student:
        return None, None
    from engine.transfer import estimate_summary

    return estimate_summary(config)["total"], run_examples(config)  # a fine-tuning run's adapters included


def insert_run(c: sqlite3.Connection, config: RunConfig, *, kind: str, name: str | None, owner: str, owner_role: str,
               owner_id: str, group: str, parent_id: str | None, actor: Actor | None) -> str:
    """Queue one checked run inside the caller's transaction; its run_id. Without a `name` it gets a unique readable
    default (`unique_name`)."""
    run_id, now = uuid.uuid4().hex[:12], time.time()
    if name is None:
        name = _unique_name(c, default_name(config, actor))
    c.execute("INSERT INTO runs(run_id, kind, name, grp, owner, owner_role, owner_id, config, status, created_at, "
              "queued_at, parent_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
              (run_id, kind, name, group, owner, owner_role, owner_id, config.to_json(), RunStatus.QUEUED, now, now,
               parent_id))
    return run_id


def is_launch_group(c: sqlite3.Connection, group: str) -> bool:
    """Whether `group` is a lesson launch's (engine.runs.store.launches): only that launch's runs may have it."""
    return c.execute("SELECT 1 FROM launches WHERE grp=?", (group,)).fetchone() is not None


def default_name(config: RunConfig, actor: Actor | None) -> str:
    """A run's readable default name: the config's own name, else model-optimizer-lr-seed, led by the owner's
    display name in a class (where thirty people start the same default run)."""
    base = config.display_name()
    if actor is not None and actor.role != LOCAL and not config.name:
        base = f"{actor.name}-{base}"
    return fit_name(base)


def _unique_name(c: sqlite3.Connection, base: str) -> str:
    """`base`, or `base #2`, `base #3`...: the first one no run has (a short counter keeps names readable)."""
    taken = {r["name"] for r in c.execute("SELECT name FROM runs WHERE name=? OR substr(name, 1, ?)=?",
                                         (base, len(base) + 2, base + " #"))}
    if base not in taken:
        return base
    counter = 2
    while f"{base} #{counter}" in taken:
        counter += 1
    return fit_name(f"{base[:NAME_MAX - 8]} #{counter}") if len(base) > NAME_MAX - 8 else f"{base} #{counter}"


def parse_run(run: dict[str, Any]) -> RunConfig | ScriptConfig:
    """The RunConfig of a run row (a ScriptConfig for a script's run); UnreadableRun says what is wrong with the
    row."""
    if run.get("status") not in STATUSES:
        raise UnreadableRun(f"unknown status {str(run.get('status'))[:40]!r}")
    if run.get("kind") not in tuple(RunKind):
        raise UnreadableRun(f"unknown kind {str(run.get('kind'))[:40]!r}")
    if run.get("kind") == RunKind.SCRIPT:
        import json

        try:
            config = json.loads(run["config"])
        except (ValueError, TypeError, RecursionError) as exc:
            raise UnreadableRun(f"its config is not readable: {str(exc)[:200]}") from None
        if not isinstance(config, dict):
            raise UnreadableRun(f"its config is not a JSON object but {type(config).__name__}")
        return ScriptConfig(config)
    try:
        return RunConfig.from_json(run["config"])
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise UnreadableRun(f"its config is not readable: {str(exc)[:200]}") from None


def check_fence(c: sqlite3.Connection, fence: Fence | None) -> None:
    """Inside a write transaction: LeaseLost unless `fence` (run_id, lease) still owns its running run."""
    if fence is None:
        return
    run_id, lease = fence
    row = c.execute("SELECT status, lease FROM runs WHERE run_id=?", (run_id,)).fetchone()
    if row is None or row["lease"] != lease or row["status"] != RunStatus.RUNNING:
        state = "deleted" if row is None else (f"{row['status']}" if row["lease"] == lease else "claimed again")
        raise LeaseLost(f"run {run_id} is no longer this worker's (lease {lease}; the run is {state})")


def run_record(row: sqlite3.Row) -> RunRecord:
    """The RunRecord of a row selected with RUN_SELECT; UnreadableRun when its config, status or kind is not."""
    run = dict(row)
    run["group"] = run.pop("grp")
    run["config"] = parse_run(run)
    run.update(run_progress(run))
    return cast(RunRecord, run)


# The ETA, computed here only (pages and the CLI read `eta_s`): the steps left at the run's pace, the pace smoothed
# over its progress reports (exponentially, over about PACE_TAU_S) and measured from its first report on, so the
# start (data loading, the first slow steps) never counts; none until the pace was measured ETA_AFTER_S.
ETA_AFTER_S = 3.0
PACE_TAU_S = 10.0  # measured on a loaded 2-core machine: 5 s followed the noise, 10 s was within 23% on average
# a claim starts measuring afresh (a resumed run may train at another pace, on another device)
PACE_RESET = "pace=NULL, pace_at=NULL, pace_since=NULL"


def next_pace(before: sqlite3.Row, step: int, now: float) -> tuple[float | None, float]:
    """(pace, pace_since) after a progress report of `step` at `now`, given the run's row before it."""
    last_step, pace, last_at, since = before["step"] or 0, before["pace"], before["pace_at"], before["pace_since"]
    if last_at is None or since is None or step < last_step:  # the claim's first report (or a step back): start
        return None, now
    elapsed = now - last_at
    if elapsed <= 0:
        return pace, since
    measured = (step - last_step) / elapsed
    if pace is None:
        return measured, since
    weight = 1.0 - math.exp(-elapsed / PACE_TAU_S)
    return pace + weight * (measured - pace), since


def run_progress(run: dict[str, Any]) -> dict[str, Any]:
    """Progress fraction, ETA and duration derived from the stored step counters, pace and timestamps."""
    total, step = run.get("total_steps") or 0, run.get("step") or 0
    progress = min(1.0, step / total) if total else 0.0
    started, finished = run.get("started_at"), run.get("finished_at")
    now = time.time()
    duration = ((finished or now) - started) if started else None
    eta = None
    pace, pace_at, since = run.get("pace"), run.get("pace_at"), run.get("pace_since")
    if (run.get("status") == RunStatus.RUNNING and pace and pace > 0 and pace_at and since and 0 < step < total
            and pace_at - since >= ETA_AFTER_S):
        eta = max(0.0, (total - step) / pace - (now - pace_at))
    if run.get("status") == RunStatus.COMPLETED:
        progress = 1.0
    return {"progress": progress, "eta_s": eta, "duration_s": duration}
