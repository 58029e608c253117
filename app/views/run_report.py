"""Run report page: what a run learned and whether it trained the way a healthy run does.

For one run (chosen in the selector, kept in the URL as ?run=ID): its status and progress, the recipe checks
as pass/warn/skip badges, the evaluation of its best/last (and EMA/SWA) weights in scikit-learn's
classification-report format with a clickable confusion matrix listing the misclassified validation images,
what the network learned (first-layer filters, the feature layout before and after training, nearest neighbours),
per-layer statistics over training with histograms, the gradient norm before/after clipping, and two helper
jobs started from here: the LR finder (with one click to train at the suggested lr) and overfit-one-batch.

The engine computes everything (the worker stores reports, checks and histograms as artifacts); the page only
reads the store and queues jobs. This script selects the run and lays out the sections of `app/report/`. Live
parts (the header, the diagnostics, a running helper job) are fragments that refresh while something runs; when
the run ends the whole page reruns so the final report appears.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.chars import is_char_run
from app.charts.text import escape_md
from app.report.checks import recipe_badges, run_header
from app.report.common import readable_errors
from app.report.evaluation import evaluation_section
from app.report.features import features_section
from app.report.layers import gradient_clipping, layer_statistics
from app.report.probes import lr_finder_section, overfit_section
from app.report.script import script_report
from app.ui.live import live_fragment
from app.ui.samples import samples_panel, sampler
from app.ui.state import get_runner, get_store, run_metrics, runs_frame
from engine.records import ACTIVE, RunKind

# ---- run selection ----------------------------------------------------------------------------------------------
st.title("Run report")
runs = runs_frame()
if runs.empty:
    st.info("No runs yet. Start one on the Train page: its report (recipe checks, evaluation, layer statistics) "
            "appears here as it trains.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/play_circle:")
    st.stop()

run_ids = list(runs["run_id"])
wanted = st.query_params.get("run")
if wanted:
    found = wanted if wanted in run_ids else get_store().find_run(wanted)
    if found in run_ids:
        if st.session_state.get("report_run") != found:
            st.session_state["report_run"] = found  # a link (or a bookmark) chose the run
    else:
        st.warning(f"There is no run {escape_md(repr(wanted[:40]))}; showing the latest run instead.")
if st.session_state.get("report_run") not in run_ids:
    st.session_state["report_run"] = run_ids[0]  # the latest run
# name and id only: the status is shown live below (a label read at page load would go stale while it trains)
names = {row.run_id: f"{row.name} · {row.run_id[:6]}" for row in runs.itertuples()}


def _url_follows_selection() -> None:
    st.query_params["run"] = st.session_state["report_run"]


run_id = st.selectbox("run", run_ids, format_func=lambda r: names.get(r, r), key="report_run",
                      on_change=_url_follows_selection)
st.query_params["run"] = run_id
store, runner = get_store(), get_runner()
run = store.get_run(run_id)
if run is None:
    st.info("This run was just deleted. Pick another one above.")
    st.stop()
config = run["config"]
run_active = run["status"] in ACTIVE
if run["kind"] == RunKind.SCRIPT:  # a script's run: its config, curves and what it logged (app/report/script.py)
    script_report(store, run)
    st.stop()


# ---- header and recipe checks (live while the run trains) -------------------------------------------------------
def overview(runs_now: pd.DataFrame) -> None:
    row = runs_now[runs_now["run_id"] == run_id]
    if row.empty:
        st.info("This run was deleted.")
        return
    current = row.iloc[0]
    with readable_errors("the run's status"):
        run_header(store, current, config)
    if run_active and current["status"] not in ACTIVE:
        st.rerun()  # the run just ended: rerun the whole page so its evaluation and final checks appear
    st.subheader("Recipe checks")
    with readable_errors("the recipe checks"):
        recipe_badges(store, run_id, config, str(current["status"]))


live_fragment("report_overview", overview, [run_id])

if is_char_run(run):  # a character run's report is what it writes: its samples over training, and a sampler
    live_fragment("report_samples", lambda runs_now: samples_panel(runs_now[runs_now["run_id"] == run_id],
                                                                   "report_samples"), [run_id], every=2.0)
    st.subheader("Write with it")
    with readable_errors("the sampler"):
        sampler(run_id, "report_sampler")
else:
    with readable_errors("the evaluation"):
        evaluation_section(store, run)
    with readable_errors("what the network learned"):
        features_section(run)


# ---- gradient norm and layer statistics (live while the run trains) ---------------------------------------------
def diagnostics(runs_now: pd.DataFrame) -> None:
    with readable_errors("the training diagnostics"):
        metrics = run_metrics([run_id], runs_now)
        gradient_clipping(config, metrics)
        layer_statistics(store, run_id, config, metrics, run_active)


live_fragment("report_diagnostics", diagnostics, [run_id], every=2.0)

# ---- helper jobs: LR finder, overfit one batch ------------------------------------------------------------------
with readable_errors("the LR finder"):
    lr_finder_section(store, runner, run)
with readable_errors("the overfit-one-batch check"):
    overfit_section(store, runner, run)
