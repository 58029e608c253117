"""How a race reads on the Compare page: grouped by what was raced, and timed in steps per second, not seconds.

Pure functions over the runs frame (no streamlit): `raced_field` picks the config field a set of runs differs in
(the one to group by when a race opens), `steps_per_second` and `shared_machine` turn durations into a rate with
the note that matters in a classroom: runs that trained at the same time shared the machine, so their speeds say
more about who else was running than about the optimizer.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

NOT_RACED = ("seed", "name", "group")  # differ between any two runs of a race: never what was raced
# when several fields differ (a race of optimizers at their recommended rates also varies lr), the first of these
PREFERRED = ("optimizer", "model", "schedule", "lr")


def raced_field(runs: pd.DataFrame) -> str | None:
    """The config field (without the cfg. prefix) these runs differ in, or None when they share every setting."""
    if len(runs) < 2:
        return None
    varying = [c.removeprefix("cfg.") for c in runs.columns
               if c.startswith("cfg.") and c.removeprefix("cfg.") not in NOT_RACED
               and runs[c].astype(str).nunique() > 1]
    if not varying:
        return None
    return next((f for f in PREFERRED if f in varying), varying[0])


def opening_group_by(runs: pd.DataFrame) -> str | None:
    """The field a Compare view of `runs` opens grouped by: the raced field when the runs are one race (one group)
    with several runs per raced value (seeds), so that each value becomes one mean line with its band."""
    if runs.empty or runs["group"].nunique() != 1 or not str(runs["group"].iloc[0]):
        return None
    field = raced_field(runs)
    if field is None or runs[f"cfg.{field}"].astype(str).nunique() == len(runs):
        return None
    return field


def steps_per_second(steps: pd.Series, duration_s: pd.Series) -> pd.Series:
    """Optimizer steps per second of wall time (NaN without a positive duration)."""
    duration = duration_s.astype(np.float64)
    return steps.astype(np.float64) / duration.where(duration > 0)


def shared_machine(runs: pd.DataFrame, now: float | None = None) -> bool:
    """True when two of the runs trained at the same time (their start-to-finish intervals overlap)."""
    now = time.time() if now is None else now
    spans = sorted((float(s), float(f) if pd.notna(f) else now)
                   for s, f in zip(runs["started_at"], runs["finished_at"]) if pd.notna(s))
    return any(next_start < end for (_, end), (next_start, _) in zip(spans, spans[1:]))
