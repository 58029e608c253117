"""The dashboard's shared cache of metric rows: per run and key, read once, then topped up with the new rows only.

Streamlit-free on purpose (app/ui/state.py holds one instance per server process in `st.cache_resource`, shared by every
session), so tests drive it against a real Store without a browser. No torch either.

What is read. Each chart asks for the keys it draws (`get(run_ids, versions, keys)`) and only those are read, at the
*coarse* level: a key with at most MAX_ROWS rows comes whole; a longer history comes as at most MAX_ROWS rows:
  - at once, evenly spaced steps with the first and the latest row (Store.sample_metrics: one index seek per bucket,
    so a cold Compare page over 8 runs x 50,000 steps reads ~14,000 rows per chart instead of 400,000);
  - a second or so later, from a background thread, the lowest and the highest row of each of EXTREME_BUCKETS equal
    step ranges (Store.metric_extremes reads every row's value, ~10 ms per 50,000 rows, so it stays off the page's
    tick): a spike or a dip in the history stays visible, as the figures' own min/max downsampling keeps it.
Every row logged after that first read is added as it comes. When every key is asked for (keys=None: the run report
counts steps and clipped steps) or exact=True, every row of each key is read (the *exact* level).

What the charts compute on a coarse level. Smoothing and every other per-row computation run on the rows read: the
EMA of a coarse level averages points spaced by many steps (and the extremes pull it locally), so the smoothed curve
of a long history is an approximation of the curve smoothed at full resolution (TensorBoard likewise smooths a
sample of 1,000 points per curve); a rolling window of N rows (the clipped fraction) spans N x the spacing in steps.
New rows, and histories of up to MAX_ROWS rows, are exact. The CSV export of a chart holds exactly the drawn points.
`coarse_keys` tells which keys of which runs are held coarse, for a caption.

Consistency. Per run and tick one indexed query reads the rows with id >= `hi`, the newest id already read: the row
`hi` must come back first. A resumed run deletes the rows logged after its checkpoint, the newest ones, so when `hi`
is gone the run is read again from scratch; a run whose version (`queued_at`: resuming re-queues a run) changed is
read again too. Keys that appear later (validation after the first epoch, layer statistics) arrive with the new rows;
a key asked for later is read up to `hi` and then follows the new rows like the others.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import pandas as pd

from engine.runs.store import METRIC_COLUMNS, Store

log = logging.getLogger(__name__)

REFINE_MODES = ("background", "now", "off")


class _Entry:
    """The rows of one key of one run held at one level: its history up to id `upto` (whole, or a coarse level), then
    every newer row."""

    __slots__ = ("_new", "_rows", "checked", "last_step", "merges", "refined", "sampled", "upto")

    def __init__(self, rows: pd.DataFrame, upto: int, sampled: bool):
        self._rows, self._new = rows, []
        self.upto, self.sampled = upto, sampled
        self.refined = not sampled  # a coarse history gets its extremes added once
        self.merges = 0  # history rows merged in (the rows are re-sorted); new rows only ever go at the end
        self.last_step = int(rows["step"].max()) if len(rows) else -1  # the history's last step
        # as a BY_STEP lookup: entry -> (its merges, rows) already looked up (see MetricsCache._align)
        self.checked: dict[_Entry, tuple[int, int]] = {}

    def append(self, rows: pd.DataFrame) -> None:
        self._new.append(rows)

    def rows(self) -> pd.DataFrame:
        if self._new:  # merged on demand, once: the next tick concatenates one frame per key
            parts = [part for part in (self._rows, *self._new) if len(part)]
            self._rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
            self._new.clear()
        return self._rows

    def merge(self, rows: pd.DataFrame) -> None:
        """Add rows of the history read later (extremes, step lookups), keeping steps ascending."""
        if len(rows):
            merged = pd.concat([self.rows(), rows], ignore_index=True).drop_duplicates("id")
            self._rows = merged.sort_values(["step", "id"], kind="stable", ignore_index=True)
            self.merges += 1

    def __len__(self) -> int:
        return len(self._rows) + sum(len(part) for part in self._new)


class _Run:
    __slots__ = ("coarse", "exact", "hi", "keys", "read_at", "version")

    def __init__(self, version: float | None):
        self.version = version
        self.hi = 0  # the newest metric id read for this run (every key)
        self.keys: set[str] = set()  # keys logged up to hi
        self.coarse: dict[str, _Entry] = {}
        self.exact: dict[str, _Entry] = {}
        self.read_at = 0.0

    def entries(self, key: str) -> list[_Entry]:
        """The distinct entries holding `key` (one entry can serve both levels)."""
        found = [entry for entry in (self.coarse.get(key), self.exact.get(key)) if entry is not None]
        return found[:1] if len(found) == 2 and found[0] is found[1] else found


class MetricsCache:
    """Metric rows per run and key, read only for the keys asked and topped up with rows newer than the last id seen.

    Thread-safe (one lock; the store has a connection per thread). `refine`: "background" adds the extremes of coarse
    histories from a daemon thread (the dashboard), "now" adds them before `get` returns (tests, benchmarks), "off"
    never. `rows_read` counts the rows read from the store.
    """

    COLUMNS = METRIC_COLUMNS
    MAX_ROWS = 2000  # per run and key at the coarse level (a chart draws at most 1,000 points per curve)
    EXTREME_BUCKETS = 100  # each one's lowest and highest row join a coarse history: 2 x 100 of the MAX_ROWS
    # 0/1 flags and counters: their extremes say nothing (0 and 1; the ends) and would weigh on a rolling mean of rows
    NO_EXTREMES = frozenset({"clipped", "examples"})
    # keys the figures look up by step (the examples x axis): at the coarse level they are read at the steps of the
    # rows they come with, so that every point has its x
    BY_STEP = ("examples",)
    REGROW = 3  # a coarse entry grown past REGROW x MAX_ROWS by new rows is read again at the coarse level
    REREAD_S = 0.3  # the charts of one page refresh share one read per run
    # Runs held at once, least recently used first out: without a bound the server grew with every run ever viewed
    # (70 -> 370 MB after 24 runs). The runs a call asks for are never evicted by that call, so a Compare view of
    # more runs than this still gets them all; the next call's runs push the oldest out.
    MAX_RUNS = 16

    def __init__(self, store: Store, *, max_rows: int | None = None, extreme_buckets: int | None = None,
                 refine: str = "background"):
        if refine not in REFINE_MODES:
            raise ValueError(f"refine={refine!r}: allowed values are {', '.join(REFINE_MODES)}")
        self.store = store
        self.max_rows = max_rows or self.MAX_ROWS
        self.extreme_buckets = self.EXTREME_BUCKETS if extreme_buckets is None else extreme_buckets
        if self.max_rows - 2 * self.extreme_buckets < 2:
            raise ValueError(f"max_rows={self.max_rows} leaves no room for evenly spaced rows beside "
                             f"{self.extreme_buckets} buckets of extremes")
        self.refine = refine
        self.rows_read = 0
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()  # least recently used first
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._coarse_seen: dict[tuple[str, ...], dict[str, list[str]]] = {}  # run ids -> last coarse_keys answer
        self._thread: threading.Thread | None = None

    # ---- reads ----
    def get(self, run_ids: Iterable[str], versions: dict[str, float], keys: Iterable[str] | None = None, *,
            exact: bool | None = None) -> pd.DataFrame:
        """Rows of `run_ids` (only `keys` when given), long format (COLUMNS), grouped by run then key, steps ascending.

        exact: every row (True) or the coarse level for long histories (False); by default coarse when keys are
        given (a chart) and exact for keys=None (every key: counts over a run's steps need every row).
        """
        run_ids = list(dict.fromkeys(run_ids))
        exact = keys is None if exact is None else exact
        wanted_keys = None if keys is None else list(dict.fromkeys(keys))
        frames = []
        with self._lock:
            self._refresh(run_ids, versions)
            for run_id in run_ids:
                run = self._runs[run_id]
                wanted = sorted(run.keys) if wanted_keys is None else wanted_keys
                entries = {key: self._entry(run_id, run, key, exact) for key in wanted}
                if not exact:
                    self._align(run_id, entries)
                frames += [rows for rows in (entry.rows() for entry in entries.values()) if len(rows)]
        if not frames:
            return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in
                                 zip(self.COLUMNS, ("int64", "str", "int64", "int64", "str", "float64", "float64"))})
        return pd.concat(frames, ignore_index=True)

    def keys(self, run_ids: Iterable[str], versions: dict[str, float]) -> set[str]:
        """Every key logged by any of the runs (nothing is read but the keys and the new rows)."""
        run_ids = list(dict.fromkeys(run_ids))
        with self._lock:
            self._refresh(run_ids, versions)
            return set().union(*(self._runs[run_id].keys for run_id in run_ids))

    def coarse_keys(self, run_ids: Iterable[str]) -> dict[str, list[str]]:
        """run_id -> the keys this cache holds at a coarse level for it (rows left out of the history).

        Every session asks on every tick (it is part of a shared view's version), so while another thread holds
        the cache (reading new rows for a figure) the last answer for the same runs is given instead of waiting:
        a view then notices a refinement one tick later, never a wrong figure."""
        run_ids = tuple(run_ids)
        if not self._lock.acquire(blocking=False):
            last = self._coarse_seen.get(run_ids)
            if last is not None:
                return last
            self._lock.acquire()
        try:
            held = {run_id: self._runs.get(run_id) for run_id in run_ids}
            answer = {run_id: sorted(k for k, e in run.coarse.items() if e.sampled) for run_id, run in held.items()
                      if run is not None and any(e.sampled for e in run.coarse.values())}
            if len(self._coarse_seen) > 64:
                self._coarse_seen.clear()
            self._coarse_seen[run_ids] = answer
            return answer
        finally:
            self._lock.release()

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def wait_refined(self, timeout: float = 30.0) -> bool:
        """Wait until the extremes of every coarse history read so far are in; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ---- internals (the lock is held) ----
    def _read(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.rows_read += len(frame)
        return frame

    def _refresh(self, run_ids: list[str], versions: dict[str, float]) -> None:
        self._evict(keep=set(run_ids))
        now = time.monotonic()
        for run_id in run_ids:
            if run_id in self._runs:
                self._runs.move_to_end(run_id)
            version = versions.get(run_id)
            run = self._runs.get(run_id)
            if run is None or run.version != version:
                self._load(run_id, version)
                continue
            if now - run.read_at < self.REREAD_S:
                continue
            run.read_at = now
            # one indexed query per run from its own last id: runs written side by side have very different last
            # ids, and reading from the smallest one would re-read the other runs' history every tick
            rows = self.store.get_metrics(run_id, after_id=max(0, run.hi - 1))
            if run.hi:
                if rows.empty or int(rows["id"].iloc[0]) != run.hi:
                    # the newest row read is gone: a resume deleted the rows past its checkpoint (they are logged
                    # again) or the run was deleted; what this cache holds no longer matches the store
                    self._load(run_id, version)
                    continue
                rows = rows.iloc[1:]
            if rows.empty:
                continue
            self.rows_read += len(rows)
            for key, part in rows.groupby("key", sort=False):
                key = str(key)
                run.keys.add(key)
                for entry in run.entries(key):
                    entry.append(part)
            run.hi = int(rows["id"].iloc[-1])

    def _evict(self, keep: set[str]) -> None:
        """Drop least recently used runs (not those in `keep`) until at most MAX_RUNS - len(keep) others remain."""
        room = max(0, self.MAX_RUNS - len(keep))
        others = [run_id for run_id in self._runs if run_id not in keep]
        for run_id in others[:max(0, len(others) - room)]:
            del self._runs[run_id]

    def held_runs(self) -> list[str]:
        """The runs whose rows are held now, least recently used first."""
        with self._lock:
            return list(self._runs)

    def _load(self, run_id: str, version: float | None) -> None:
        """Start (over) on a run: its newest id and its keys, no rows yet."""
        run = _Run(version)
        run.hi = self.store.last_metric_id(run_id)
        run.keys = set(self.store.metric_keys(run_id)) if run.hi else set()
        run.read_at = time.monotonic()
        self._runs[run_id] = run

    def _entry(self, run_id: str, run: _Run, key: str, exact: bool) -> _Entry:
        level, other_level = (run.exact, run.coarse) if exact else (run.coarse, run.exact)
        entry = level.get(key)
        if entry is not None and not exact and len(entry) > self.REGROW * self.max_rows:
            del level[key]  # grown long by new rows since it was read: read it again at the coarse level
            entry = None
        if entry is not None:
            return entry
        other = other_level.get(key)
        if other is not None and not other.sampled and (exact or len(other) <= self.max_rows):
            level[key] = other  # whole and short: serves both levels
            return other
        if key not in run.keys:  # not logged yet: its rows will come with the new rows
            entry = _Entry(pd.DataFrame(columns=self.COLUMNS), run.hi, sampled=False)
        else:
            # room is kept for the extremes, on every key: keys logged at every step then share their sampled steps
            budget = None if exact else self.max_rows - 2 * self.extreme_buckets
            rows = self._read(self.store.sample_metrics(run_id, key, budget, upto_id=run.hi))
            entry = _Entry(rows, run.hi, sampled=bool(rows.attrs.get("sampled")))
        level[key] = entry
        if not entry.sampled and len(entry) <= self.max_rows:
            other_level.setdefault(key, entry)
        if entry.sampled and not exact and key not in self.NO_EXTREMES and self.refine != "off":
            if self.refine == "now":
                entry.merge(self._read(self.store.metric_extremes(run_id, key, self.extreme_buckets, upto_id=entry.upto)))
                entry.refined = True
            else:
                self._schedule(run_id, key, entry)
        return entry

    def _align(self, run_id: str, entries: dict[str, _Entry]) -> None:
        """Give each BY_STEP key a row at every step of the other keys' rows (the examples x axis looks them up by
        step): a coarse history of it holds only its own sampled steps. Incremental: each other entry's rows are
        checked once (new rows only, unless history rows were merged into it since)."""
        for key in self.BY_STEP:
            lookup = entries.get(key)
            others = [entry for other, entry in entries.items() if other != key]
            if lookup is None or not lookup.sampled or not others:
                continue
            fresh = []
            for entry in others:
                merges, done = lookup.checked.get(entry, (-1, 0))
                rows = entry.rows()
                start = done if merges == entry.merges else 0
                if start < len(rows):
                    fresh.append(rows["step"].to_numpy(dtype=np.int64)[start:])
                lookup.checked[entry] = (entry.merges, len(rows))
            if len(lookup.checked) > 64:  # entries read again since: forget the oldest
                for stale in list(lookup.checked)[:-32]:
                    del lookup.checked[stale]
            if not fresh:
                continue
            steps = np.unique(np.concatenate(fresh))
            # rows past the lookup's history come with the new rows: look up only the history's steps
            steps = steps[steps <= lookup.last_step]
            missing = np.setdiff1d(steps, lookup.rows()["step"].to_numpy(dtype=np.int64))
            if missing.size:
                lookup.merge(self._read(self.store.metrics_at_steps(run_id, key, missing.tolist(), upto_id=lookup.upto)))

    # ---- the extremes of coarse histories, off the page's tick ----
    def _schedule(self, run_id: str, key: str, entry: _Entry) -> None:
        self._pending += 1
        self._jobs.put((run_id, key, entry))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._refine_loop, name="metrics-extremes", daemon=True)
            self._thread.start()

    def _current(self, run_id: str, key: str, entry: _Entry) -> bool:
        run = self._runs.get(run_id)
        return run is not None and run.coarse.get(key) is entry and not entry.refined

    def _refine_loop(self) -> None:
        while True:
            run_id, key, entry = self._jobs.get()
            try:
                with self._lock:
                    wanted = self._current(run_id, key, entry)
                if wanted:  # the store read runs outside the lock: pages keep reading meanwhile
                    rows = self.store.metric_extremes(run_id, key, self.extreme_buckets, upto_id=entry.upto)
                    with self._lock:
                        if self._current(run_id, key, entry):
                            entry.merge(self._read(rows))
                            entry.refined = True
            except Exception:  # the chart keeps its evenly spaced rows
                log.exception("reading the extremes of %s of run %s failed", key, run_id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
