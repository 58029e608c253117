"""What a character run writes, on any page: its recorded samples growing beside its validation loss (with the
counting baselines as reference lines), and a sampler of its checkpoint with a temperature slider and a prefix box.

`samples_panel` draws inside the caller's live fragment (the Train page's, a lesson's, the Run report's), so the
samples refresh with the curves; the newest evaluation comes first, with its step. Samples are shown through
`st.code` (literal text: a text file's model may write anything) and the prefix is checked against the run's
vocabulary with one line when it does not fit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.charts.chars import sample_caption, samples_text, with_baselines
from app.charts.metrics import ChartOptions, metric_chart
from app.charts.text import escape_md
from app.ui.presentation import plotly_chart
from app.ui.state import get_store, run_metrics
from engine.records import LM_BASELINES, samples_artifact, samples_steps

SHOWN_EVALUATIONS = 3  # the newest evaluations shown per run; the first one (step 0) stays in the Run report


def recorded_samples(run_id: str, newest: int = SHOWN_EVALUATIONS) -> list[dict]:
    """The run's recorded samples, newest evaluation first."""
    store = get_store()
    steps = samples_steps(store.list_artifacts(run_id))[::-1][:newest]
    return [record for record in (store.get_artifact(run_id, samples_artifact(step)) for step in steps)
            if isinstance(record, dict)]


def show_samples(run_id: str, newest: int = SHOWN_EVALUATIONS, long: bool = False) -> None:
    records = recorded_samples(run_id, newest)
    if not records:
        st.caption("The first samples appear as soon as the run starts (step 0: random letters).")
    for record in records:
        st.caption(escape_md(sample_caption(record)))
        st.code(samples_text(record.get("samples", []), long), language=None, wrap_lines=True)


def samples_panel(runs: pd.DataFrame, key: str) -> None:
    """For each character run of `runs`: validation loss with the baselines beside its newest samples."""
    for _, row in runs.iterrows():
        run_id = row["run_id"]
        loss_col, samples_col = st.columns([3, 2])
        metrics = run_metrics([run_id], runs, ["val_loss"])
        figure = metric_chart(metrics, runs[runs["run_id"] == run_id], "val_loss", ChartOptions(x_axis="epoch")).figure
        with_baselines(figure, get_store().get_artifact(run_id, LM_BASELINES))
        with loss_col:
            st.markdown(f"**{escape_md(row['name'])}**: validation loss (nats per character)")
            plotly_chart(figure, key=f"{key}_val_loss_{run_id}")
        with samples_col:
            st.markdown("**What it writes** (newest first)")
            show_samples(run_id, long=row.get("cfg.dataset") != "names")
            if key != "report_samples":  # the Run report has the sampler below; elsewhere it is one click away
                # a short label: half a projected page wide at 1024 px, a longer one is cut
                st.page_link("views/run_report.py", label="Write with it", icon=":material/edit_note:",
                             help="On the Run report: its own names, with a temperature slider and a prefix box",
                             query_params={"run": run_id})


def samples_side_by_side(runs: pd.DataFrame, label_column: str, columns: int = 4) -> None:
    """The newest samples of each run in its own column, headed by its label (a lesson's variants)."""
    rows = list(runs.iterrows())
    for start in range(0, len(rows), columns):
        for column, (_, row) in zip(st.columns(columns), rows[start:start + columns]):
            with column:
                st.markdown(f"**{escape_md(row[label_column])}**")
                records = recorded_samples(row["run_id"], 1)
                if not records:
                    st.caption("waiting for its first samples")
                    continue
                st.caption(escape_md(sample_caption(records[0])))
                st.code(samples_text(records[0].get("samples", [])[:12], long=True), language=None, wrap_lines=True)


def live_samples(run_ids: list[str], key: str = "train_samples") -> None:
    """`samples_panel` of `run_ids` in its own live fragment (refreshed while any of them trains)."""
    from app.ui.live import live_fragment

    live_fragment(key, lambda runs: samples_panel(runs[runs["run_id"].isin(run_ids)], key), run_ids, every=2.0)


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint...")
def _char_model(run_id: str, which: str, stamp: int):
    from engine.char_runs import load_char_model

    return load_char_model(run_id, which)


def sampler(run_id: str, key: str) -> None:
    """Samples of the run's checkpoint at a chosen temperature and prefix (refreshed on every change)."""
    from engine.char_runs import write
    from engine.checkpoints import resolve

    try:
        path = Path(resolve(run_id, "best"))
    except FileNotFoundError:
        st.caption("The sampler opens once the run has a checkpoint (written at the end of every epoch).")
        return
    temp_col, prefix_col, seed_col = st.columns([3, 2, 1])
    temperature = temp_col.slider("temperature", 0.1, 2.0, 0.8, 0.1, key=f"{key}_temperature",
                                  help="below 1: the likeliest characters, again and again; above 1: wilder")
    prefix = prefix_col.text_input("starts with", "", max_chars=40, key=f"{key}_prefix",
                                   help="every sample starts with these characters")
    seed = seed_col.number_input("seed", 0, 10_000, 0, key=f"{key}_seed", help="another seed, other samples")
    try:
        loaded = _char_model(run_id, "best", path.stat().st_mtime_ns)
        result = write(loaded, 20, temperature, prefix, int(seed))
    except (OSError, ValueError) as exc:
        st.error(escape_md(str(exc)), icon=":material/block:")
        return
    scores = [f"{result[k]:.0%} {word}" for k, word in (("new", "new"), ("real", "real held-out names"))
              if k in result]
    st.caption(escape_md(f"the best checkpoint (epoch {loaded.epoch + 1})" + (" · " + " · ".join(scores)
                                                                              if scores else "")))
    st.code(samples_text(result["samples"], loaded.config.dataset != "names"), language=None, wrap_lines=True)
