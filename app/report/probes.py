"""The Run report's helper jobs, started from the page and run by the workers: the fast.ai learning-rate finder
(with one click to train at its suggestion) and Karpathy's overfit-one-batch check."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import report as rf
from app.charts.text import escape_md
from app.report.checks import OVERFIT_BADGE_KEY, overfit_result, show_check
from app.report.common import latest_job
from app.ui.presentation import plotly_chart
from engine import records
from engine.records import ACTIVE, UNSUCCESSFUL, RunKind, RunRecord, RunStatus, fit_name
from engine.runs.runner import Runner
from engine.runs.store import Store


def start_job(runner: Runner, run: RunRecord, kind: RunKind, label: str) -> None:
    try:
        runner.submit(run["config"], kind=kind, parent_id=run["run_id"], name=fit_name(f"{label}: {run['name']}"))
    except (ValueError, OSError) as exc:
        st.error(f"Could not start the {label}: {escape_md(exc)}")


def job_poller(store: Store, runner: Runner, job_id: str, live_sweep: bool) -> None:
    """Progress of a queued/running helper job; the LR sweep drawn point by point; a full rerun when it ends."""
    @st.fragment(run_every=1.0)
    def poll() -> None:
        job = store.get_run(job_id)
        if job is None or job["status"] not in ACTIVE:
            st.rerun()  # finished (or deleted): the whole page shows its result
        if job["status"] == RunStatus.QUEUED:
            st.info("Waiting for a free worker (a run in training keeps its worker busy until it ends).")
            return
        st.progress(min(1.0, float(job["progress"] or 0.0)), text=f"step {job['step']}/{job['total_steps']}")
        if live_sweep:
            sweep = rf.lr_sweep_frame(store.get_metrics(job_id, keys=list(records.LR_FIND_KEYS)))
            if not sweep.empty:
                plotly_chart(rf.lr_finder_figure(sweep["lr"], sweep["loss"], sweep["smoothed"], live=True),
                                key="report_lr_live")
        if st.button("Cancel", key=f"report_cancel_{job_id}"):
            runner.cancel(job_id)

    poll()


def job_failed(job: pd.Series, what: str) -> bool:
    if job["status"] in UNSUCCESSFUL or job["status"] == RunStatus.CANCELLED:
        reason = f": {escape_md(job['error'])}" if isinstance(job["error"], str) and job["error"] else "."
        st.error(f"The last {what} {job['status']}{reason} Start it again with the button above.")
        return True
    return False


def launch_with_lr(runner: Runner, run: RunRecord, result: dict) -> None:
    """One click to train this run's config at the finder's suggestion (optionally with one-cycle)."""
    run_id, config = run["run_id"], run["config"]
    choices = [k for k in ("valley", "steepest") if rf.suggested_lr(result, k)]
    if st.session_state.get("report_lr_choice") not in choices:
        st.session_state.pop("report_lr_choice", None)
    if not choices:
        st.warning("The sweep made no suggestion (the curve was too short or never went down).")
        return
    which = st.radio("suggestion", choices, horizontal=True, key="report_lr_choice",
                     format_func=lambda k: f"{rf.SUGGESTION_TITLES[k]}: lr = {rf.suggested_lr(result, k):.2g}",
                     help="valley: the middle of the longest steady descent (fast.ai's default); steepest: where the "
                          "loss falls fastest, often a little too high")
    lr = float(f"{rf.suggested_lr(result, which):.2g}")
    one_cycle = st.checkbox("one-cycle schedule", key="report_one_cycle",
                            help="warm up to the lr, then anneal (Smith's one-cycle): tolerates the high end of the range")
    if st.button(f"Start a run with lr={lr:g}", type="primary", key="report_start_suggested"):
        try:
            name = fit_name(f"{run['name']} · lr {lr:g}" + (" · one-cycle" if one_cycle else ""))
            new = config.with_updates(lr=lr, schedule="onecycle" if one_cycle else config.schedule, name=name)
            handle = runner.submit(new)
            st.session_state["report_launched"] = {"from": run_id, "run": handle.run_id, "name": name}
        except (ValueError, OSError) as exc:
            st.error(f"Could not start the run: {escape_md(exc)}")
    launched = st.session_state.get("report_launched")
    if launched and launched.get("from") == run_id:
        st.success(f"Started {escape_md(launched['name'])} ({launched['run'][:6]}).")
        c1, c2 = st.columns(2)
        c1.page_link("views/compare.py", label="Compare it with this run", icon=":material/stacked_line_chart:",
                     query_params={"runs": f"{launched['run']},{run_id}"})
        c2.page_link("views/run_report.py", label="Open its report", icon=":material/fact_check:",
                     query_params={"run": launched["run"]})


def finished_job(store: Store, runner: Runner, run: RunRecord, kind: RunKind, *, button: str, key: str, icon: str,
                 job_label: str, what: str, live_sweep: bool, button_again: str | None = None,
                 not_run_note: str | None = None) -> pd.Series | None:
    """The start button and the life of the run's newest helper job of `kind`: its progress while it is queued or
    running, its failure; returns the job once it has finished well (None until then)."""
    latest, busy = latest_job(store, run["run_id"], kind)
    label = button_again if latest is not None and button_again else button
    if st.button(label, key=key, disabled=busy, icon=icon):
        start_job(runner, run, kind, job_label)
        st.rerun()
    if latest is None:
        if not_run_note:
            st.info(not_run_note)
        return None
    if busy:
        job_poller(store, runner, str(latest["run_id"]), live_sweep=live_sweep)
        return None
    if job_failed(latest, what):
        return None
    return latest


def lr_finder_section(store: Store, runner: Runner, run: RunRecord) -> None:
    run_id = run["run_id"]
    st.header("Learning-rate finder")
    st.caption("fast.ai style: one training step per learning rate, from 1e-7 up to 10 exponentially over 100 steps, "
               "on a fresh copy of this run's model and optimizer; it stops when the loss explodes. Runs as a "
               "background job; the run itself is not touched.")
    latest = finished_job(store, runner, run, RunKind.LR_FIND, key="report_lr_find", icon=":material/travel_explore:",
                          button="Find a learning rate", button_again="Run the LR finder again",
                          job_label="lr finder", what="LR finder", live_sweep=True,
                          not_run_note="Not run yet for this run. It takes a few seconds once a worker is free.")
    if latest is None:
        return
    result = store.get_artifact(str(latest["run_id"]), records.LR_FIND) or store.get_artifact(run_id, records.LR_FIND)
    if not result:
        st.info("The LR finder finished without a result.")
        return
    plotly_chart(rf.lr_finder_figure(result["lrs"], result["losses"], result["smoothed"], result.get("suggestions")),
                    key="report_lr_finder")
    st.caption(f"{result.get('steps', len(result['lrs']))} steps in {result.get('seconds', 0):.1f} s"
               + (", stopped when the loss exploded" if result.get("stopped_early") else "")
               + f". This run trained at lr {run['config'].lr:g}.")
    launch_with_lr(runner, run, result)


def overfit_section(store: Store, runner: Runner, run: RunRecord) -> None:
    run_id = run["run_id"]
    st.header("Overfit one batch")
    st.caption("Karpathy's recipe: train a copy of the model on one batch of 16 images until the loss is near zero. "
               "Runs on request and for lessons, not on every run: 0.1-1 s for small models, at most 10 s (where the "
               "check stops) for a ResNet that never gets there.")
    latest = finished_job(store, runner, run, RunKind.OVERFIT, button="Overfit one batch", key="report_overfit",
                          icon=":material/fitness_center:", job_label="overfit one batch",
                          what="overfit-one-batch check", live_sweep=False)
    if latest is None:
        return
    result = overfit_result(store, run_id)
    if not result:
        st.info("The check finished without a result.")
        return
    if st.session_state.get(OVERFIT_BADGE_KEY) != run_id and st.session_state.get("report_overfit_synced") != latest["run_id"]:
        # the job ended while this page was drawn: the badge row above still says "not run"; draw it again
        st.session_state["report_overfit_synced"] = str(latest["run_id"])
        st.rerun()
    badge_col, curve_col = st.columns([1, 2])
    with badge_col:
        show_check(result)
    with curve_col:
        numbers = result.get("numbers") or {}
        plotly_chart(rf.overfit_figure(numbers.get("curve") or [], numbers.get("target_loss")), key="report_overfit_curve")
