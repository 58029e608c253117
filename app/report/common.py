"""What every Run report section shares: readable errors, and the run's helper jobs (LR finder, overfit check)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pandas as pd
import streamlit as st

from app.charts.text import escape_md
from engine.records import ACTIVE, RunKind
from engine.runs.store import Store


@contextlib.contextmanager
def readable_errors(what: str) -> Iterator[None]:
    """Show an engine error as one readable line instead of a traceback (Streamlit's reruns pass through)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any engine failure must leave the rest of the report usable
        st.error(f"Could not show {what}: {type(exc).__name__}: {escape_md(exc)}")


def helper_jobs(store: Store, run_id: str, kind: RunKind) -> pd.DataFrame:
    """The helper jobs of `kind` queued for `run_id`, newest first."""
    jobs = store.list_runs(kind=kind)
    if jobs.empty or "parent_id" not in jobs.columns:
        return jobs.iloc[0:0]
    return jobs[jobs["parent_id"] == run_id]


def latest_job(store: Store, run_id: str, kind: RunKind) -> tuple[pd.Series | None, bool]:
    """The run's newest helper job of `kind` (None if never started), and whether it is still queued/running."""
    jobs = helper_jobs(store, run_id, kind)
    latest = jobs.iloc[0] if not jobs.empty else None
    return latest, latest is not None and latest["status"] in ACTIVE
