"""Metric rows in the store: a worker's batched writes and every read a page, the CLI or a report makes.

A worker logs (run_id, step, epoch, key, value, wall_time) rows in batched transactions under its lease
(`fence`, see engine.runs.store.runs): a worker that lost its run writes none of them, so a resumed run's curve has
no duplicated step. Row ids are monotonic, so a live reader fetches only the rows newer than the last id it saw
(`get_metrics(after_id=)`). The dashboard's metrics cache reads through the bounded reads (`sample_metrics`,
`metric_extremes`, `metrics_at_steps`): their cost follows what a chart draws, not a run's length. Reads return
DataFrames with the columns METRIC_COLUMNS.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from engine.runs.store.runs import Fence, check_fence
from engine.runs.store.schema import StoreBase

METRIC_COLUMNS = ["id", "run_id", "step", "epoch", "key", "value", "wall_time"]


class MetricsMixin(StoreBase):
    """Logging and reading metric rows."""

    def log_batch(self, rows: list[tuple[str, int, int, str, float, float]], fence: Fence | None = None) -> None:
        """Insert (run_id, step, epoch, key, value, wall_time) rows in one transaction (LeaseLost under a stale
        fence: none of them is written)."""
        if rows:
            with self._tx() as c:
                check_fence(c, fence)
                c.executemany("INSERT INTO metrics(run_id, step, epoch, key, value, wall_time) VALUES (?,?,?,?,?,?)", rows)

    def delete_metrics_after(self, run_id: str, step: int, fence: Fence | None = None) -> None:
        """Drop rows logged after a checkpoint's step (a resumed run logs them again)."""
        with self._tx() as c:
            check_fence(c, fence)
            c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))

    def get_metrics(self, run_ids: str | Iterable[str], keys: Iterable[str] | None = None,
                    after_id: int = 0) -> pd.DataFrame:
        """Metric rows of the given runs (newer than `after_id`), ordered by id; columns METRIC_COLUMNS."""
        run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        if not run_ids:
            return pd.DataFrame(columns=METRIC_COLUMNS)
        query = (f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE run_id IN ({','.join('?' * len(run_ids))}) "
                 "AND id>?")
        args: list[Any] = [*run_ids, after_id]
        if keys is not None:
            keys = list(keys)
            query += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        return self._metrics_frame(query + " ORDER BY id", args)

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """One metric of one run as (step, epoch, value, wall_time)."""
        cursor = self.conn.execute("SELECT step, epoch, value, wall_time FROM metrics WHERE run_id=? AND key=? ORDER BY step",
                                   (run_id, key))
        return pd.DataFrame(cursor.fetchall(), columns=["step", "epoch", "value", "wall_time"])

    def last_values(self, run_id: str) -> dict[str, float]:
        """The latest value of every key of a run (final metrics)."""
        cursor = self.conn.execute("SELECT key, value FROM metrics WHERE id IN "
                                   "(SELECT MAX(id) FROM metrics WHERE run_id=? GROUP BY key)", (run_id,))
        return {row["key"]: row["value"] for row in cursor}

    def count_metrics(self, run_id: str | None = None) -> int:
        if run_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id=?", (run_id,)).fetchone()[0]

    # The dashboard's metrics cache (app/server/metrics_cache.py) reads through the next five: bounded by what a chart draws,
    # never a long history row by row. `+id` keeps SQLite on the (run_id, key, step) index: with a bound on id it would
    # otherwise pick metrics_run(run_id, id) and visit every row of the run.
    def last_metric_id(self, run_id: str) -> int:
        """The id of the run's newest metric row, 0 when it has none (a reader's snapshot bound)."""
        row = self.conn.execute("SELECT MAX(id) FROM metrics WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def metric_keys(self, run_id: str) -> list[str]:
        """The keys a run has logged, sorted: one index seek per key, not a read of the run's rows."""
        cursor = self.conn.execute(
            "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM metrics WHERE run_id=:run UNION ALL "
            "SELECT (SELECT MIN(key) FROM metrics WHERE run_id=:run AND key>k.key) FROM k WHERE k.key IS NOT NULL) "
            "SELECT key FROM k WHERE key IS NOT NULL", {"run": run_id})
        return [row[0] for row in cursor]

    def sample_metrics(self, run_id: str, key: str, max_rows: int | None = None, *,
                       upto_id: int | None = None) -> pd.DataFrame:
        """One key of one run (rows with id <= upto_id), ordered by step: every row, or at most max_rows of them.

        When more rows exist, the key's step range is cut into max_rows - 1 equal buckets and the first row of each
        is kept, plus the last row: evenly spaced by step, the first and the latest point always in. One index seek
        per bucket finds them, so the cost is the same for 50,000 or 5 million rows. `.attrs["sampled"]` says whether
        rows were left out. Columns METRIC_COLUMNS.
        """
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"max_rows={max_rows}: a sample keeps at least the first and the last row")
        args = {"run": run_id, "key": key, "upto": upto_id}
        where = "run_id=:run AND key=:key" + ("" if upto_id is None else " AND +id<=:upto")
        columns = ", ".join(f"m.{column}" for column in METRIC_COLUMNS)
        fits = max_rows is None or self.conn.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM metrics WHERE {where} LIMIT :limit)",
            {**args, "limit": max_rows + 1}).fetchone()[0] <= max_rows
        if fits:
            frame = self._metrics_frame(f"SELECT {columns} FROM metrics m WHERE {where} ORDER BY step, id", args)
            frame.attrs["sampled"] = False
            return frame
        first = self.conn.execute(f"SELECT step FROM metrics WHERE {where} ORDER BY step, id LIMIT 1", args).fetchone()[0]
        last = self.conn.execute(f"SELECT id, step FROM metrics WHERE {where} ORDER BY step DESC, id DESC LIMIT 1",
                                 args).fetchone()
        width = -(-(last["step"] - first + 1) // (max_rows - 1))  # at most max_rows - 1 buckets
        # a skip scan: from each kept row, seek to the first row of the next bucket
        following = ("(SELECT n.{} FROM metrics n WHERE n.run_id=:run AND n.key=:key AND "
                     "n.step >= :first + ((b.step - :first) / :width + 1) * :width"
                     f"{'' if upto_id is None else ' AND +n.id<=:upto'} ORDER BY n.step, n.id LIMIT 1)")
        frame = self._metrics_frame(
            f"WITH RECURSIVE b(id, step) AS (SELECT id, step FROM (SELECT id, step FROM metrics WHERE {where} "
            f"ORDER BY step, id LIMIT 1) UNION ALL SELECT {following.format('id')}, {following.format('step')} "
            f"FROM b WHERE b.id IS NOT NULL) "
            f"SELECT {columns} FROM metrics m WHERE m.id IN (SELECT id FROM b WHERE id IS NOT NULL UNION SELECT :last) "
            "ORDER BY m.step, m.id", {**args, "first": first, "width": width, "last": last["id"]})
        frame.attrs["sampled"] = True
        return frame

    def metric_extremes(self, run_id: str, key: str, buckets: int, *, upto_id: int | None = None) -> pd.DataFrame:
        """The lowest and the highest row of each of `buckets` equal step ranges of one key of one run (rows with id
        <= upto_id), ordered by step: at most 2 x buckets rows, the key's minimum and maximum among them. NaN values
        (stored as NULL) are left out. Unlike sample_metrics this reads every row's value (~10 ms per 50,000 rows)."""
        if buckets < 1:
            raise ValueError(f"buckets={buckets}: need at least 1")
        args = {"run": run_id, "key": key, "upto": upto_id}
        where = "run_id=:run AND key=:key" + ("" if upto_id is None else " AND +id<=:upto")
        first, last = self.conn.execute(f"SELECT MIN(step), MAX(step) FROM metrics WHERE {where}", args).fetchone()
        if first is None:
            return self._metrics_frame(None)
        # SQLite's bare columns: with a single min() or max(), the other columns come from the row holding it
        pick = (f"SELECT {', '.join(METRIC_COLUMNS)}, {{}}(value) FROM metrics WHERE {where} AND value IS NOT NULL "
                "GROUP BY (step - :first) / :width")
        frame = self._metrics_frame(f"{pick.format('MIN')} UNION ALL {pick.format('MAX')}",
                                    {**args, "first": first, "width": -(-(last - first + 1) // buckets)})
        return frame.drop_duplicates("id").sort_values(["step", "id"], ignore_index=True)

    def metrics_at_steps(self, run_id: str, key: str, steps: Iterable[int], *, upto_id: int | None = None) -> pd.DataFrame:
        """The rows of one key of one run logged at the given steps (id <= upto_id), ordered by step."""
        steps = sorted({int(step) for step in steps})
        where = "run_id=? AND key=?" + ("" if upto_id is None else " AND +id<=?")
        frames = [self._metrics_frame(None)]
        for start in range(0, len(steps), 500):  # well under SQLite's limit on bound parameters
            chunk = steps[start:start + 500]
            frames.append(self._metrics_frame(
                f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE {where} AND step IN ({','.join('?' * len(chunk))})",
                [run_id, key, *([] if upto_id is None else [upto_id]), *chunk]))
        frames = [frame for frame in frames if len(frame)] or frames[:1]
        return pd.concat(frames, ignore_index=True).sort_values(["step", "id"], ignore_index=True)

    def _metrics_frame(self, query: str | None, args: Any = ()) -> pd.DataFrame:
        """The rows of a query selecting METRIC_COLUMNS (none for None), with get_metrics' columns and dtypes.
        Plain tuples and one array per column: several times faster than sqlite3.Row objects through pandas."""
        import numpy as np  # local: the store's other readers do without it

        rows = []
        if query is not None:
            cursor = self.conn.cursor()
            cursor.row_factory = None
            rows = cursor.execute(query, args).fetchall()
        columns = list(zip(*rows))[:len(METRIC_COLUMNS)] if rows else [()] * len(METRIC_COLUMNS)
        ids, run_ids, steps, epochs, keys, values, walls = columns
        # the text columns as pandas' own string arrays, built directly: letting pandas infer them from lists took a
        # third of a cold Compare tick's CPU (8 runs x 50,000 steps, benchmarks/compare_refresh.py); same dtype
        return pd.DataFrame({"id": np.array(ids, dtype=np.int64), "run_id": pd.array(run_ids, dtype="str"),
                             "step": np.array(steps, dtype=np.int64), "epoch": np.array(epochs, dtype=np.int64),
                             "key": pd.array(keys, dtype="str"), "value": np.array(values, dtype=np.float64),
                             "wall_time": np.array(walls, dtype=np.float64)})
