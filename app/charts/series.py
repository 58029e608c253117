"""Pure numeric transforms behind the dashboard's curves.

Smoothing (TensorBoard's debiased EMA), display downsampling that keeps the extremes, the x
coordinate of each metric row on the four axes (step, epoch, examples, wall time), splitting the
long metrics frame into per-run series, and the mean/spread band across the runs of a group.

Everything here is numpy/pandas only: no streamlit (tests check it without a browser) and no torch
(the page must stay light). The figure builders in `app.charts.metrics` sit on top of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from engine.records import is_epoch_level

X_AXES = ("step", "epoch", "examples", "wall_time")
BANDS = ("std", "minmax")


# Exponent budget for w**-k inside one block of the vectorised EMA: float64 overflows near e**709.
_EMA_EXPONENT_LIMIT = 690.0


def chart_keys(keys: Sequence[str], x_axis: str) -> list[str]:
    """What a chart of `keys` needs from the store: its keys, their EMA/SWA twins and the early-stopping
    marker for epoch-level keys, and the examples counter when it is the x axis."""
    needed = list(keys)
    for key in keys:
        if is_epoch_level(key):
            needed += [f"ema_{key}", f"swa_{key}", "best_epoch"]
    if x_axis == "examples":
        needed.append("examples")
    return list(dict.fromkeys(needed))


def epoch_level_mask(keys: pd.Series) -> np.ndarray:
    """is_epoch_level for a column of keys, deciding once per distinct key (millions of rows)."""
    epoch_keys = [key for key in keys.unique() if is_epoch_level(str(key))]
    return keys.isin(epoch_keys).to_numpy(dtype=bool)


# ---------------------------------------------------------------------------------------------
# smoothing
# ---------------------------------------------------------------------------------------------
def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average.

    last = last * weight + (1 - weight) * v, starting from 0, and each point is last / (1 - weight**n)
    with n the number of finite points averaged so far (the debias removes the pull towards 0 at
    the start). weight in [0, 1); 0 returns the values unchanged. Non-finite values (a diverged
    loss) are passed through as they are and skipped by the average, so they never poison later
    points. A constant series is returned as is, like TensorBoard, to avoid rounding wiggles.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight={weight!r}: must be in [0, 1)")
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if weight == 0.0 or values.size == 0 or np.all(values == values[0]):
        return out
    finite = np.isfinite(values)
    if finite.any():
        out[finite] = _debiased_ema(values[finite], weight)
    return out


def _debiased_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Vectorised EMA of finite values, by blocks of closed-form geometric sums.

    Inside a block that starts from average c, last_j = w**(j+1) * c + (1-w) * w**j *
    cumsum(v_i * w**-i)_j. All blocks are computed at once as the rows of a matrix (starting from
    0), then each row gets the average carried in from the rows before it. The block length keeps
    v_i * w**-i finite. A Python loop over the values costs ~0.1 s per 50,000-point curve; this
    costs about a millisecond.
    """
    n = values.size
    # headroom below float64's e**709, for the largest value and a cumsum of n terms
    budget = max(1.0, _EMA_EXPONENT_LIMIT - math.log(max(1.0, float(np.abs(values).max()))) - math.log(n + 1))
    block = max(1, min(n, int(budget / -math.log(weight))))
    rows = -(-n // block)
    padded = np.zeros(rows * block)  # padding at the end never reaches the real points
    padded[:n] = values
    log_weight = math.log(weight)
    # exp(j log w) rather than w ** j: numpy's scalar ** array calls pow() per element, 20x slower
    powers = np.exp(np.arange(block, dtype=np.float64) * log_weight)  # w**j
    local = (1.0 - weight) * powers * np.cumsum(padded.reshape(rows, block) / powers, axis=1)
    carries = np.empty(rows)
    carry, decay = 0.0, weight**block
    for row, end in enumerate(local[:, -1].tolist()):  # one step per block, not per value
        carries[row] = carry
        carry = end + decay * carry
    averaged = (local + np.outer(carries, weight * powers)).ravel()[:n]
    debias = -np.expm1(np.arange(1, n + 1, dtype=np.float64) * log_weight)  # 1 - w**n
    return averaged / debias


# ---------------------------------------------------------------------------------------------
# downsampling for display
# ---------------------------------------------------------------------------------------------
def downsample_indices(columns: Sequence[np.ndarray], max_points: int) -> np.ndarray:
    """Sorted indices of the points to draw so that no more than max_points are sent.

    The first and last points are always kept. The points in between are cut into equal runs of
    consecutive points (buckets); in each bucket the minimum and the maximum of every column are
    kept (so a spike or a dip is never lost, as with min/max decimation), and, when a bucket holds
    a non-finite value, its first one too so that a gap (divergence) stays visible. Several columns
    (a band's mean, lower and upper) share one index set so they stay aligned on x.
    """
    columns = [np.asarray(c, dtype=np.float64) for c in columns]
    n = columns[0].size
    if n <= max_points:
        return np.arange(n)
    finite = [np.isfinite(c[1:-1]) for c in columns]
    any_gap = not all(f.all() for f in finite)
    per_bucket = 2 * len(columns) + (1 if any_gap else 0)
    buckets = (max_points - 2) // per_bucket
    if buckets < 1:
        raise ValueError(f"max_points={max_points} is too small: need at least {2 + per_bucket}")
    interior = n - 2
    width = -(-interior // buckets)  # points per bucket; the buckets are the rows of a matrix
    rows = -(-interior // width)  # <= buckets; every row holds at least one real point
    offsets = np.arange(rows) * width
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    for column, ok in zip(columns, finite):
        inner = column[1:-1]
        # padding after the last point is never the minimum nor the maximum; a bucket without
        # finite values picks its first point, a gap point: harmless
        low = np.full(rows * width, np.inf)
        low[:interior] = np.where(ok, inner, np.inf)
        high = np.full(rows * width, -np.inf)
        high[:interior] = np.where(ok, inner, -np.inf)
        keep[offsets + np.argmin(low.reshape(rows, width), axis=1) + 1] = True
        keep[offsets + np.argmax(high.reshape(rows, width), axis=1) + 1] = True
        if any_gap:
            gaps = np.zeros(rows * width, dtype=bool)
            gaps[:interior] = ~ok
            gap_rows = gaps.reshape(rows, width)
            first_gap = offsets + np.argmax(gap_rows, axis=1)
            keep[first_gap[gap_rows.any(axis=1)] + 1] = True
    return np.flatnonzero(keep)


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) reduced to at most max_points for display, keeping each bucket's min and max of y."""
    x = np.asarray(x)
    y = np.asarray(y)
    keep = downsample_indices([y], max_points)
    return x[keep], y[keep]


# ---------------------------------------------------------------------------------------------
# x axes
# ---------------------------------------------------------------------------------------------
def x_values(metrics_df: pd.DataFrame, x_axis: str, rows: pd.DataFrame | None = None) -> pd.Series:
    """The x coordinate of each row of `rows` (default: all of metrics_df), as floats.

    - "step": the global optimizer step.
    - "epoch": epochs completed. A step-level row sits at epoch + k/n (the k-th of the epoch's n
      steps), an epoch-level row at epoch + 1 (it is logged when the epoch ends), so training
      curves and validation curves share the axis. See epoch_positions for how n is found.
    - "examples": the run's `examples` value at the same (run_id, step); NaN when not logged.
    - "wall_time": seconds since the run's first logged row.
    metrics_df gives the context (examples, first row); rows may be any subset of it.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis={x_axis!r}: allowed values are {', '.join(X_AXES)}")
    rows = metrics_df if rows is None else rows
    if x_axis == "step":
        return rows["step"].astype(np.float64)
    if x_axis == "wall_time":
        # map on a categorical run_id returns a categorical: take plain floats
        start = rows["run_id"].map(first_wall_times(metrics_df)).to_numpy(dtype=np.float64)
        return pd.Series(rows["wall_time"].to_numpy(dtype=np.float64) - start, index=rows.index)
    if x_axis == "examples":
        examples = metrics_df.loc[metrics_df["key"] == "examples", ["run_id", "step", "value"]]
        examples = examples.drop_duplicates(["run_id", "step"], keep="last")
        joined = rows[["run_id", "step"]].merge(examples, on=["run_id", "step"], how="left")
        return pd.Series(joined["value"].to_numpy(dtype=np.float64), index=rows.index)
    x = rows["epoch"].to_numpy(dtype=np.float64) + 1.0  # epoch-level rows: the epoch just completed
    step_level = np.flatnonzero(~epoch_level_mask(rows["key"]))
    if step_level.size:
        sub = rows.iloc[step_level]
        step, epoch = sub["step"].to_numpy(dtype=np.int64), sub["epoch"].to_numpy(dtype=np.int64)
        for members in sub.groupby(["run_id", "key"], sort=False, observed=True).indices.values():
            ordered = members[np.argsort(step[members], kind="stable")]
            x[step_level[ordered]] = epoch_positions(step[ordered], epoch[ordered])
    return pd.Series(x, index=rows.index)


def epoch_positions(step: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """Epochs completed at each row of one run's step-level series (sorted by step): epoch + k/n.

    Epoch 0 starts at step 1 (steps are 1-based); a later epoch right after the previous epoch's
    last logged step (or at its own first logged step when that epoch is absent), so keys logged
    every K steps land in place. n runs from there to the epoch's last logged step. The run's
    last epoch is given at least the length of its earlier ones: while it runs, its curve grows
    towards the next integer instead of being stretched to it. Before any epoch finished, n is the
    steps seen so far.
    """
    step = np.asarray(step, dtype=np.int64)
    epoch = np.asarray(epoch, dtype=np.int64)
    if step.size == 0:
        return np.array([], dtype=np.float64)
    bounds = np.flatnonzero(np.diff(epoch)) + 1
    first_row = np.concatenate(([0], bounds))
    end_row = np.concatenate((bounds, [step.size]))
    first, last = step[first_row].copy(), step[end_row - 1]
    follows = epoch[first_row[1:]] == epoch[first_row[:-1]] + 1
    first[1:][follows] = last[:-1][follows] + 1
    first[epoch[first_row] == 0] = 1
    length = last - first + 1
    if length.size > 1:
        length[-1] = max(length[-1], length[:-1].max())
    block = np.repeat(np.arange(first_row.size), end_row - first_row)
    return epoch + (step - first[block] + 1) / length[block]


def first_wall_times(metrics_df: pd.DataFrame) -> dict[str, float]:
    """run_id -> wall time of the run's first logged row (the origin of the wall-time axis)."""
    if metrics_df.empty:
        return {}
    codes, run_ids = _run_codes(metrics_df["run_id"].array)
    first = np.full(len(run_ids), np.inf)
    np.minimum.at(first, codes, metrics_df["wall_time"].to_numpy(dtype=np.float64))
    return dict(zip(run_ids, first.tolist()))


X_TITLES = {
    "step": "step (optimizer updates)",
    "epoch": "epoch (epochs completed)",
    "examples": "examples seen",
    "wall_time": "time since start (s)",
}


# ---------------------------------------------------------------------------------------------
# per-run series
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSeries:
    """One run's values of one key, ordered by step, with their x coordinates (int steps on the
    step axis, floats on the others)."""

    run_id: str
    key: str
    step: np.ndarray
    epoch: np.ndarray
    x: np.ndarray
    y: np.ndarray


def run_series(metrics_df: pd.DataFrame, keys: Sequence[str], x_axis: str = "step",
               starts: Mapping[str, float] | None = None) -> list[RunSeries]:
    """Split the long metrics frame into one RunSeries per (run, key) for the given keys.

    Ordered by run (first appearance) then by the order of `keys`; within a series, by step; x as
    x_values gives it. Built for millions of rows per refresh: one string comparison per key (isin
    is several times slower on Arrow strings), run ids read per contiguous block rather than
    factorised row by row, a sort only when the rows are not already ordered by (run, step), and
    the x axes computed per series with numpy (no pandas joins or groupbys over the whole frame).
    `starts` (run_id -> the run's start time) sets the origin of the wall-time axis; without it, each run's first
    row in metrics_df.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis={x_axis!r}: allowed values are {', '.join(X_AXES)}")
    keys = list(dict.fromkeys(keys))  # unique, in the given order
    key_column = metrics_df["key"].array
    picked = [(key, np.flatnonzero(np.asarray(key_column == key, dtype=bool))) for key in keys]
    picked = [(key, index) for key, index in picked if index.size]
    if not picked:
        return []
    origin = first_wall_times(metrics_df) if x_axis == "wall_time" else {}
    for run_id, start in (starts or {}).items():
        # a run's start (when known) is the origin of its wall-time axis, whichever keys are drawn: an epoch-level
        # chart starting at its own first row would be shifted against the step-level charts of the same run
        if run_id in origin and start is not None and np.isfinite(start):
            origin[run_id] = min(origin[run_id], float(start))
    examples = {s.run_id: s for s in run_series(metrics_df, ["examples"])} if x_axis == "examples" else {}
    run_column = metrics_df["run_id"].array
    steps = metrics_df["step"].to_numpy(dtype=np.int64)
    epochs = metrics_df["epoch"].to_numpy(dtype=np.int64)
    values = metrics_df["value"].to_numpy(dtype=np.float64)
    walls = metrics_df["wall_time"].to_numpy(dtype=np.float64) if x_axis == "wall_time" else None
    run_order: dict[str, int] = {}
    out = []
    for key, index in picked:
        codes, run_ids = _run_codes(run_column.take(index))
        step = steps[index]
        order = _order_by_run_then_step(codes, step)
        if order is not None:
            index, codes, step = index[order], codes[order], step[order]
        epoch, value = epochs[index], values[index]  # one gather each, then slices
        wall = walls[index] if walls is not None else None
        bounds = np.flatnonzero(np.diff(codes)) + 1
        for start, end in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [codes.size]))):
            run_id = run_ids[int(codes[start])]
            run_order.setdefault(run_id, len(run_order))
            part = slice(start, end)
            if x_axis == "step":
                x = step[part]  # integers: plotly sends them as 2-4 byte ints instead of 8-byte floats
            elif x_axis == "wall_time":
                x = wall[part] - origin[run_id]
            elif x_axis == "examples":
                x = _lookup(examples.get(run_id), step[part])
            else:
                x = epoch[part] + 1.0 if is_epoch_level(key) else epoch_positions(step[part], epoch[part])
            out.append(RunSeries(run_id, key, step[part], epoch[part], x, value[part]))
    return sorted(out, key=lambda s: run_order[s.run_id])  # stable: keys keep their order within a run


def _lookup(examples: RunSeries | None, step: np.ndarray) -> np.ndarray:
    """The run's examples count at each step; NaN where it was not logged."""
    if examples is None or examples.step.size == 0:
        return np.full(step.size, np.nan)
    at = np.minimum(np.searchsorted(examples.step, step), examples.step.size - 1)
    return np.where(examples.step[at] == step, examples.y[at], np.nan)


def _run_codes(run_ids: pd.api.extensions.ExtensionArray | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer code per row and the run id of each code, in order of first appearance.

    Rows come grouped in blocks (one run's batch of rows after another), so compare neighbours
    and factorise only the first id of each block: a few thousand strings instead of millions.
    """
    n = len(run_ids)
    if n == 0:
        return np.array([], dtype=np.int64), []
    starts = np.concatenate(([0], np.flatnonzero(np.asarray(run_ids[1:] != run_ids[:-1], dtype=bool)) + 1))
    block_codes, uniques = pd.factorize(run_ids.take(starts))
    codes = np.repeat(block_codes.astype(np.int64), np.diff(np.append(starts, n)))
    return codes, [str(u) for u in uniques]


def _order_by_run_then_step(codes: np.ndarray, step: np.ndarray) -> np.ndarray | None:
    """Permutation sorting rows by (run code, step); None when they already are.

    The store returns rows in insertion order: runs trained side by side interleave, but each
    run's own rows come in step order, so a stable sort on the small run codes (radix sort for
    16-bit integers, linear time) usually finishes the job; a full lexsort is the fallback.
    """
    if codes.size < 2:
        return None
    same_run = codes[1:] == codes[:-1]
    if not np.any((codes[1:] < codes[:-1]) | (same_run & (step[1:] < step[:-1]))):
        return None
    small = codes.astype(np.int16) if codes.max() < np.iinfo(np.int16).max else codes
    order = np.argsort(small, kind="stable")
    ordered_codes, ordered_step = codes[order], step[order]
    if np.any((ordered_codes[1:] == ordered_codes[:-1]) & (ordered_step[1:] < ordered_step[:-1])):
        order = np.lexsort((step, codes))
    return order


# ---------------------------------------------------------------------------------------------
# group bands
# ---------------------------------------------------------------------------------------------
def band_across(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], band: str = "std") -> pd.DataFrame:
    """Mean and spread across runs at each x: columns x, mean, lower, upper, n_runs.

    The grid is the union of the runs' x values: runs that share their x (steps, epochs: the same
    grid across seeds) are then aligned exactly. When the union is over twice as long as the
    longest run (wall time, examples, fractional epochs with other batch sizes share no x), the
    grid is instead evenly spaced with as many points as the longest run. Each run is linearly
    interpolated onto the grid points inside its own x range (never extrapolated; x must increase),
    its own points placed exactly. band="std" gives mean ± the population standard deviation
    (numpy's default, ddof=0, so one run gives a zero-width band rather than NaN); band="minmax"
    gives the min and max across runs. Non-finite values are left out; n_runs counts the runs that
    contributed at each x.
    """
    if band not in BANDS:
        raise ValueError(f"band={band!r}: allowed values are {', '.join(BANDS)}")
    pairs = []
    for x, y in zip(xs, ys):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ok = np.isfinite(x)
        pairs.append((x[ok], y[ok]))
    pairs = [(x, y) for x, y in pairs if x.size]
    if not pairs:
        columns = ("x", "mean", "lower", "upper", "n_runs")
        return pd.DataFrame({name: np.array([], dtype=np.float64) for name in columns})
    grid = np.unique(np.concatenate([x for x, _ in pairs]))
    longest = max(x.size for x, _ in pairs)
    if grid.size > 2 * longest:  # the runs do not share x values: resample onto an even grid
        grid = np.linspace(grid[0], grid[-1], longest)
    table = np.full((len(pairs), grid.size), np.nan)
    for row, (x, y) in enumerate(pairs):
        covered = (grid >= x[0]) & (grid <= x[-1])
        table[row, covered] = np.interp(grid[covered], x, y)
        # the run's own points are placed exactly: np.interp would smear a neighbouring NaN onto them
        position = np.minimum(np.searchsorted(grid, x), grid.size - 1)
        exact = grid[position] == x
        table[row, position[exact]] = y[exact]
    present = np.isfinite(table)
    count = present.sum(axis=0)
    safe = np.maximum(count, 1)
    mean = np.where(present, table, 0.0).sum(axis=0) / safe
    if band == "std":
        spread = np.sqrt(np.where(present, (table - mean) ** 2, 0.0).sum(axis=0) / safe)
        lower, upper = mean - spread, mean + spread
    else:
        lower = np.where(present, table, np.inf).min(axis=0)
        upper = np.where(present, table, -np.inf).max(axis=0)
    empty = count == 0
    for column in (mean, lower, upper):
        column[empty] = np.nan
    return pd.DataFrame({"x": grid, "mean": mean, "lower": lower, "upper": upper, "n_runs": count})


def group_labels(runs_df: pd.DataFrame, group_by: str) -> dict[str, str]:
    """run_id -> group label "field=value" for a config column such as cfg.optimizer."""
    if group_by not in runs_df.columns:
        raise ValueError(f"group_by={group_by!r}: not a runs column; config columns are named cfg.<field>")
    field = group_by.removeprefix("cfg.")
    if not group_by.startswith("cfg."):  # a label column a page added (a lesson's variant): the value says it all
        return {str(run_id): "—" if pd.isna(value) else str(value) for run_id, value in zip(runs_df["run_id"], runs_df[group_by])}
    return {
        str(run_id): f"{field}={'—' if pd.isna(value) else value}"
        for run_id, value in zip(runs_df["run_id"], runs_df[group_by])
    }


def ordered_groups(runs_df: pd.DataFrame, group_by: str) -> list[str]:
    """Group labels sorted by their value (numerically for numbers), missing values last."""
    labels = group_labels(runs_df, group_by)
    values = runs_df.set_index(runs_df["run_id"].astype(str))[group_by]
    order = sorted({labels[r]: values[r] for r in labels}.items(), key=lambda item: group_sort_key(item[1]))
    return [label for label, _ in order]


def group_sort_key(value: object) -> tuple[int, float, str]:
    """Numbers first, in numeric order (lr 1e-4 before 1e-3), then text, then missing values."""
    if pd.isna(value):
        return (2, 0.0, "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
