"""Run report page: what a run learned and whether it trained the way a healthy run does.

For one run (chosen in the selector, kept in the URL as ?run=ID): its status and progress, the recipe checks
as pass/warn/skip badges, the evaluation of its best/last (and EMA/SWA) weights in scikit-learn's
classification-report format with a clickable confusion matrix listing the misclassified validation images,
per-layer statistics over training with histograms, the gradient norm before/after clipping, and two helper
jobs started from here: the LR finder (with one click to train at the suggested lr) and overfit-one-batch.

The engine computes everything (the worker stores reports, checks and histograms as artifacts); the page only
reads the store and queues jobs. Live parts (the header, the diagnostics, a running helper job) are fragments
that refresh while something runs; when it ends they rerun the whole page so the final report appears.
"""

from __future__ import annotations

import contextlib
import re

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from app import report_figures as rf
from app.live import run_status_row
from app.state import ACTIVE, get_dataset, get_runner, get_store, run_metrics, runs_frame

THUMBS_PER_PAGE = 24
THUMB_COLUMNS = 4
OVERFIT_WHY = ("A model and optimizer that cannot memorise a handful of examples have a bug (labels, loss, "
               "optimizer wiring) or far too little capacity or learning rate.")
LATER_CHECKS = {"input_independent": "input-independent baseline (after the first epoch)",
                "clipping": "gradient clipping (when the run ends)",
                "update_ratio": "layer health: dead units, saturation, update ratio (when the run ends)"}
MORE_LAYER_STATS = ("act_mean", "act_grad_mean", "act_grad_std", "grad_mean", "zero_frac")


@contextlib.contextmanager
def readable_errors(what: str):
    """Show an engine error as one readable line instead of a traceback (Streamlit's reruns pass through)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any engine failure must leave the rest of the report usable
        st.error(f"Could not show {what}: {type(exc).__name__}: {exc}")


def escape_md(text: str) -> str:
    """Text from the engine (layer names with underscores, x0.1...) shown literally in markdown."""
    return re.sub(r"([\\`*_{}\[\]<>#|~$])", r"\\\1", str(text))


RENDERED: dict[str, bool] = {}  # what this script run has drawn already (the badge row is drawn first)


def helper_jobs(run_id: str, kind: str) -> pd.DataFrame:
    """The helper jobs ('lr_find', 'overfit') queued for `run_id`, newest first."""
    jobs = get_store().list_runs(kind=kind)
    if jobs.empty or "parent_id" not in jobs.columns:
        return jobs.iloc[0:0]
    return jobs[jobs["parent_id"] == run_id]


# ---- page: run selection ----------------------------------------------------------------------------------------
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
        st.warning(f"There is no run {wanted!r}; showing the latest run instead.")
if st.session_state.get("report_run") not in run_ids:
    st.session_state["report_run"] = run_ids[0]  # the latest run
# name and id only: the status is shown live below (a label read at page load would go stale while it trains)
names = {row.run_id: f"{row.name} · {row.run_id[:6]}" for row in runs.itertuples()}


def _url_follows_selection() -> None:
    st.query_params["run"] = st.session_state["report_run"]


run_id = st.selectbox("run", run_ids, format_func=lambda r: names.get(r, r), key="report_run",
                      on_change=_url_follows_selection)
st.query_params["run"] = run_id
store = get_store()
run = store.get_run(run_id)
if run is None:
    st.info("This run was just deleted. Pick another one above.")
    st.stop()
config = run["config"]
run_active = run["status"] in ACTIVE


def overfit_result() -> dict | None:
    """The newest overfit-one-batch result: the latest finished job's own, else the one stored on the run."""
    jobs = helper_jobs(run_id, "overfit")
    for job_id in jobs.loc[jobs["status"] == "completed", "run_id"]:
        result = store.get_artifact(str(job_id), "overfit_one_batch")
        if result:
            return result
    return store.get_artifact(run_id, "overfit_one_batch")


# ---- header and recipe checks (live while the run trains) -------------------------------------------------------
def show_check(check: dict) -> None:
    status = check.get("status", "skip")
    with st.container(border=True):
        st.badge(rf.badge_label(check), icon=rf.badge_icon(status), color=rf.badge_color(status),
                 help=check.get("why") or None)
        if check.get("message"):
            st.markdown(escape_md(check["message"]) + (" *(measured after the resume)*" if check.get("resumed") else ""))
        numbers = rf.check_numbers_text(check)
        if numbers:
            st.caption(escape_md(numbers))
        if check.get("why"):
            st.caption(f"Why it matters: {escape_md(check['why'])}")


def recipe_badges(status: str) -> None:
    checks = rf.merge_checks(store.get_artifact(run_id, "recipe_checks"),
                             store.get_artifact(run_id, "recipe_checks_resumed"))
    overfit = overfit_result()
    RENDERED["overfit_badge"] = overfit is not None
    checks.append(overfit or {"name": "overfit_one_batch", "title": "Overfit one batch", "status": "skip",
                              "numbers": {}, "why": OVERFIT_WHY,
                              "message": "Not run: this check runs on request (and for lessons), not on every run. "
                                         "Start it in the Overfit one batch section below."})
    if status == "queued":
        st.info("Waiting for a free worker. The loss-at-initialisation check appears as soon as training starts, "
                "the input-independent baseline after the first epoch, the rest when the run ends.")
        return
    columns = st.columns(3)
    for index, check in enumerate(checks):
        with columns[index % 3]:
            show_check(check)
    if status in ACTIVE:
        names_done = {c.get("name") for c in checks}
        pending = [text for name, text in LATER_CHECKS.items() if name not in names_done
                   and (name != "update_ratio" or config.layer_stats_every)]
        if pending:
            st.caption("Still to come: " + "; ".join(pending) + ".")


@st.fragment(run_every=1.0 if run_active else None)
def overview() -> None:
    current = None
    with readable_errors("the run's status"):
        now = runs_frame()
        row = now[now["run_id"] == run_id]
        if row.empty:
            st.info("This run was deleted.")
            return
        current = row.iloc[0]
        run_status_row(current, key="report")
        if run_active and current["status"] not in ACTIVE:
            st.rerun()  # the run just ended: rerun the whole page so its evaluation and final checks appear
        summary = store.get_artifact(run_id, "model_summary") or {}
        facts = [f"{config.dataset}", f"{config.model}", f"{config.optimizer} lr {config.lr:g}",
                 f"schedule {config.schedule}", f"batch {config.batch_size}", f"{config.epochs} epochs"]
        if summary.get("parameters"):
            facts.insert(2, f"{summary['parameters']:,} parameters")
        st.caption(" · ".join(facts))
        if summary.get("repr"):
            with st.expander("Model and configuration"):
                st.code(summary["repr"], language=None)
                st.json(config.to_dict(), expanded=False)
    if current is None:
        return
    st.subheader("Recipe checks")
    with readable_errors("the recipe checks"):
        recipe_badges(str(current["status"]))


overview()


# ---- evaluation -------------------------------------------------------------------------------------------------
def explain_link(index: int) -> bool:
    """A link to the Explain page for one validation image; False when this dashboard has no Explain page."""
    try:
        st.page_link("views/explain.py", label="Explain", icon=":material/visibility:",
                     query_params={"run": run_id, "sample": str(index)})
        return True
    except StreamlitPageNotFoundError:
        return False


def cell_label(cell: str, evaluation: dict) -> str:
    true, pred = (int(v) for v in cell.split(","))
    labels, counts = evaluation["labels"], evaluation["confusion"]
    return f"true {labels[true]} → predicted {labels[pred]} ({counts[true][pred]} images)"


def misclassified_grid(evaluation: dict, true: int, pred: int) -> None:
    labels = evaluation["labels"]
    examples = rf.cell_examples(evaluation, true, pred)
    total = int(evaluation["confusion"][true][pred])
    if not examples:
        st.info(f"None of the {total} images of this cell was stored (the report keeps the "
                f"{len(evaluation.get('misclassified') or [])} most confident mistakes).")
        return
    try:
        split = get_dataset(config.dataset, _data_seed(), config.val_fraction, config.data_dir, config.train_limit)
        images = split.val_x
    except Exception as exc:  # noqa: BLE001 - a dataset that cannot load (moved folder...) still lists the mistakes
        st.warning(f"The validation images could not be loaded ({exc}); listing the mistakes without thumbnails.")
        images = None
    listed = f"{len(examples)} of {total}" if len(examples) < total else f"{total}"
    st.markdown(f"**{listed} validation images of true class {escape_md(labels[true])} predicted as "
                f"{escape_md(labels[pred])}**, most confident mistake first")
    pages = (len(examples) - 1) // THUMBS_PER_PAGE + 1
    page = 1
    if pages > 1:
        page = st.number_input(f"page (of {pages}, {THUMBS_PER_PAGE} images each)", 1, pages, 1,
                               key=f"report_thumb_page_{true}_{pred}", width=220)
    shown = examples[(page - 1) * THUMBS_PER_PAGE: page * THUMBS_PER_PAGE]
    explain_ok = True
    columns = st.columns(THUMB_COLUMNS)
    for position, example in enumerate(shown):
        with columns[position % THUMB_COLUMNS]:
            index = int(example["index"])
            if images is not None and 0 <= index < len(images):
                st.image(rf.thumbnail(images[index].cpu().numpy()), caption=f"#{index}")
            st.caption(f"predicted **{escape_md(labels[example['pred']])}** ({example['confidence']:.0%}) · "
                       f"true {escape_md(labels[example['true']])} ({example['true_prob']:.0%})")
            if explain_ok:
                explain_ok = explain_link(index)
    if not explain_ok:
        st.caption("Links to the Explain page appear here once that page is part of the dashboard.")


def _data_seed() -> int:
    from engine.data.loading import DATA_SEED  # imports torch: only when thumbnails are drawn

    return DATA_SEED


def confusion_section(evaluation: dict, which: str) -> None:
    cells = [f"{t},{p}" for t, p, _ in rf.confusion_cells(evaluation)]
    if st.session_state.get("report_cell") not in cells:
        st.session_state.pop("report_cell", None)
    # a click on the heatmap (the selection state of the chart, read before it is drawn) chooses the cell
    chart_state = st.session_state.get("report_confusion")
    try:
        points = chart_state["selection"]["points"] if chart_state else None
    except (KeyError, TypeError):
        points = None
    clicked = rf.cell_from_points(points)
    clicked_key = None if clicked is None else f"{clicked[0]},{clicked[1]}"
    note = None
    if clicked_key != st.session_state.get("report_last_click"):
        st.session_state["report_last_click"] = clicked_key
        if clicked_key in cells:
            st.session_state["report_cell"] = clicked_key
        elif clicked is not None:
            true, pred = clicked
            count = evaluation["confusion"][true][pred]
            note = (f"That cell holds the {count} correctly classified images of {evaluation['labels'][true]}: click "
                    "a cell off the diagonal to see mistakes." if true == pred else "No image fell in that cell.")
    if cells and "report_cell" not in st.session_state:
        st.session_state["report_cell"] = cells[0]  # the biggest confusion

    st.subheader("Confusion matrix")
    matrix_col, images_col = st.columns(2, gap="medium")
    with matrix_col:
        mode = st.radio("show", ["counts", "normalised"], horizontal=True, key="report_normalized",
                        help="normalised: each row divided by the number of images of its true class")
        selected = st.session_state.get("report_cell")
        outline = tuple(int(v) for v in selected.split(",")) if selected else None
        st.plotly_chart(rf.confusion_figure(evaluation, mode == "normalised", outline), key="report_confusion",
                        on_select="rerun", selection_mode="points")
        st.caption("Rows: true class; columns: predicted class. Click a cell to list its images.")
    with images_col:
        if note:
            st.info(note)
        if not cells:
            st.success("No validation image was misclassified.")
            return
        cell = st.selectbox("misclassified images of the cell", cells,
                            format_func=lambda c: cell_label(c, evaluation), key="report_cell")
        true, pred = (int(v) for v in cell.split(","))
        misclassified_grid(evaluation, true, pred)


def evaluation_section() -> None:
    st.header("Evaluation on the validation set")
    artifacts = set(store.list_artifacts(run_id))
    available = [k for k in rf.REPORT_KINDS if f"report/{k}" in artifacts]
    if not available:
        status = run["status"]
        if status in ACTIVE:
            st.info("The evaluation report (per-class precision, recall and F1, confusion matrix, misclassified images) "
                    "is computed when the run finishes, for its best and last weights"
                    + (" and its EMA/SWA averages." if config.ema or config.swa else "."))
        elif status == "cancelled":
            st.info("This run was cancelled before its final evaluation. Resume it from the Runs page to finish "
                    "training and get the report.")
        elif status in ("diverged", "failed", "interrupted"):
            st.info(f"No evaluation: the run {status.replace('_', ' ')} before it could be evaluated"
                    + (f" ({run['error']})." if run.get("error") else "."))
        else:
            st.info("No evaluation report was stored for this run.")
        return
    if st.session_state.get("report_weights") not in available:
        st.session_state.pop("report_weights", None)  # another run had other weights
    which = st.radio("weights", available, format_func=rf.REPORT_TITLES.get, horizontal=True, key="report_weights",
                     help="best: the checkpoint with the best validation metric; last: the weights at the end")
    evaluation = store.get_artifact(run_id, f"report/{which}")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("accuracy", f"{evaluation['accuracy']:.2%}")
    m2.metric("validation loss", f"{evaluation['loss']:.4f}" if evaluation.get("loss") is not None else "n/a")
    m3.metric("validation images", f"{evaluation['n']:,}")
    m4.metric("misclassified", f"{evaluation.get('misclassified_total', 0):,}")
    table_tab, text_tab = st.tabs(["Classification report", "As printed by scikit-learn"])
    with table_tab:
        shown = rf.report_display(rf.report_table(evaluation))
        st.dataframe(shown, key="report_table", hide_index=True, height=36 * (len(shown) + 1) + 2,
                     column_config={"class": st.column_config.TextColumn("class", width="medium")})
        st.caption("Per-class precision, recall, F1 and support from scikit-learn's classification_report; "
                   "micro, macro and weighted averages over the classes.")
    with text_tab:
        st.code(evaluation["report_text"], language=None)
    confusion_section(evaluation, which)


with readable_errors("the evaluation"):
    evaluation_section()


# ---- layer statistics and gradient norm (live while the run trains) ---------------------------------------------
def layer_statistics(metrics: pd.DataFrame) -> None:
    st.header("Layer statistics")
    if config.layer_stats_every == 0:
        st.info("Layer statistics were off for this run (layer_stats_every = 0). To record them, set *layer statistics "
                "every K steps* in the Run tab of the Train page (50 costs about 2% of training time) and start the "
                "run again.")
        return
    if not rf.layer_names(metrics, "update_ratio") and not rf.layer_names(metrics, "act_std"):
        st.info(f"Sampled every {config.layer_stats_every} steps: the first points appear as soon as training starts."
                if run_active else "No layer statistics were logged for this run.")
        return
    st.caption(f"Sampled every {config.layer_stats_every} steps on one training batch (makemore, lecture 4).")
    hist_steps = rf.histogram_steps(store.list_artifacts(run_id))
    first_hist = store.get_artifact(run_id, f"hist/{hist_steps[0]}") if hist_steps else None
    all_params = st.toggle("all parameter tensors (biases, norms)", key="report_all_params",
                           help="makemore judges the update ratio on the weight matrices only")
    params = None if all_params else rf.matrix_param_names(metrics, first_hist)
    left, right = st.columns(2)
    with left:
        st.markdown("**Update-to-data ratio per parameter** (log10 std(update) / std(weights))")
        st.plotly_chart(rf.update_ratio_figure(metrics, params), key="report_update_ratio")
        st.markdown("**Gradient std per parameter**")
        st.plotly_chart(rf.layer_stat_figure(metrics, "grad_std", params, log_y=True), key="report_grad_std")
    with right:
        st.markdown("**Activation std per layer**")
        st.plotly_chart(rf.layer_stat_figure(metrics, "act_std"), key="report_act_std")
        prefix = "sat_frac" if rf.layer_names(metrics, "sat_frac") and not rf.layer_names(metrics, "dead_frac") else "dead_frac"
        st.markdown("**Dead ReLU units per layer**" if prefix == "dead_frac" else "**Saturated tanh/sigmoid outputs**")
        st.plotly_chart(rf.layer_stat_figure(metrics, prefix, y_range=[-0.02, 1.02]), key="report_dead_frac")
        if prefix == "dead_frac" and rf.layer_names(metrics, "sat_frac"):
            st.plotly_chart(rf.layer_stat_figure(metrics, "sat_frac", y_range=[-0.02, 1.02]), key="report_sat_frac")
    more = [p for p in MORE_LAYER_STATS if rf.layer_names(metrics, p)]
    if more:
        with st.expander("More per-layer statistics"):
            extra = st.selectbox("statistic", more, format_func=rf.LAYER_STAT_TITLES.get, key="report_more_stat")
            st.plotly_chart(rf.layer_stat_figure(metrics, extra), key="report_more_chart")
    st.subheader("Histograms per layer")
    if not hist_steps:
        st.caption("Histograms are kept at about 8 sampled steps over the run; none yet.")
        return
    shown = st.session_state.get("report_hist_step")
    if shown not in hist_steps or shown == st.session_state.get("report_hist_latest"):
        st.session_state["report_hist_step"] = hist_steps[-1]  # follow the newest histogram until moved
    st.session_state["report_hist_latest"] = hist_steps[-1]
    step = st.select_slider("step", hist_steps, key="report_hist_step",
                            help="a sampled step whose activations and gradients were histogrammed")
    histogram = store.get_artifact(run_id, f"hist/{step}") or {}
    columns = st.columns(3)
    for column, kind in zip(columns, ("activations", "act_grads", "grads")):
        with column:
            st.plotly_chart(rf.histogram_figure(histogram, kind, step), key=f"report_hist_{kind}")


def gradient_clipping(metrics: pd.DataFrame) -> None:
    st.header("Gradient norm and clipping")
    summary = rf.clipping_summary(metrics)
    if not summary["steps"]:
        st.info("The gradient norm of every step appears here as soon as training starts.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("steps clipped", f"{summary['fraction']:.0%}", help=f"{summary['clipped']} of {summary['steps']} steps")
    c2.metric("clipping", {"none": "off", "norm": f"norm ≤ {config.clip_value:g}",
                           "value": f"|element| ≤ {config.clip_value:g}"}[config.clip])
    norms = metrics.loc[metrics["key"] == "grad_norm", "value"]
    c3.metric("median gradient norm", f"{norms.median():.3g}" if len(norms) else "n/a")
    if config.clip != "none" and summary["fraction"] > 0.5:
        st.warning(f"Most steps are clipped ({summary['clipped']} of {summary['steps']}): the threshold, not the "
                   "learning rate, sets the step size. Lower the learning rate or raise the clip threshold.")
    if config.clip == "value":
        st.caption("Element-wise clipping: the norm after clipping is not logged, so only the norm before is drawn.")
    st.plotly_chart(rf.grad_norm_figure(metrics, config.clip, config.clip_value), key="report_grad_norm")


@st.fragment(run_every=2.0 if run_active else None)
def diagnostics() -> None:
    with readable_errors("the training diagnostics"):
        metrics = run_metrics([run_id], runs_frame())
        gradient_clipping(metrics)
        layer_statistics(metrics)


diagnostics()


# ---- helper jobs: LR finder, overfit one batch ------------------------------------------------------------------
def start_job(kind: str, label: str) -> None:
    try:
        get_runner().submit(config, kind=kind, parent_id=run_id, name=f"{label}: {run['name']}")
    except (ValueError, OSError) as exc:
        st.error(f"Could not start the {label}: {exc}")


def job_poller(job_id: str, live_sweep: bool) -> None:
    """Progress of a queued/running helper job; the LR sweep drawn point by point; a full rerun when it ends."""
    @st.fragment(run_every=1.0)
    def poll() -> None:
        job = store.get_run(job_id)
        if job is None or job["status"] not in ACTIVE:
            st.rerun()  # finished (or deleted): the whole page shows its result
        if job["status"] == "queued":
            st.info("Waiting for a free worker (a run in training keeps its worker busy until it ends).")
            return
        st.progress(min(1.0, float(job["progress"] or 0.0)), text=f"step {job['step']}/{job['total_steps']}")
        if live_sweep:
            sweep = rf.lr_sweep_frame(store.get_metrics(job_id, keys=["lr_find_lr", "lr_find_loss", "lr_find_smoothed"]))
            if not sweep.empty:
                st.plotly_chart(rf.lr_finder_figure(sweep["lr"], sweep["loss"], sweep["smoothed"], live=True),
                                key="report_lr_live")
        if st.button("Cancel", key=f"report_cancel_{job_id}"):
            get_runner().cancel(job_id)

    poll()


def latest_job(kind: str) -> tuple[pd.Series | None, bool]:
    """This run's newest helper job of `kind` (None if never started), and whether it is still queued/running."""
    jobs = helper_jobs(run_id, kind)
    latest = jobs.iloc[0] if not jobs.empty else None
    return latest, latest is not None and latest["status"] in ACTIVE


def job_failed(job: pd.Series, what: str) -> bool:
    if job["status"] in ("failed", "interrupted", "cancelled", "diverged"):
        reason = f": {job['error']}" if isinstance(job["error"], str) and job["error"] else "."
        st.error(f"The last {what} {job['status']}{reason} Start it again with the button above.")
        return True
    return False


def launch_with_lr(result: dict) -> None:
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
            name = f"{run['name']} · lr {lr:g}" + (" · one-cycle" if one_cycle else "")
            new = config.with_updates(lr=lr, schedule="onecycle" if one_cycle else config.schedule, name=name)
            handle = get_runner().submit(new)
            st.session_state["report_launched"] = {"from": run_id, "run": handle.run_id, "name": name}
        except (ValueError, OSError) as exc:
            st.error(f"Could not start the run: {exc}")
    launched = st.session_state.get("report_launched")
    if launched and launched.get("from") == run_id:
        st.success(f"Started {launched['name']} ({launched['run'][:6]}).")
        c1, c2 = st.columns(2)
        c1.page_link("views/compare.py", label="Compare it with this run", icon=":material/stacked_line_chart:",
                     query_params={"runs": f"{launched['run']},{run_id}"})
        c2.page_link("views/run_detail.py", label="Open its report", icon=":material/fact_check:",
                     query_params={"run": launched["run"]})


def lr_finder_section() -> None:
    st.header("Learning-rate finder")
    st.caption("fast.ai style: one training step per learning rate, from 1e-7 up to 10 exponentially over 100 steps, "
               "on a fresh copy of this run's model and optimizer; it stops when the loss explodes. Runs as a "
               "background job; the run itself is not touched.")
    latest, busy = latest_job("lr_find")
    label = "Find a learning rate" if latest is None else "Run the LR finder again"
    if st.button(label, key="report_lr_find", disabled=busy, icon=":material/travel_explore:"):
        start_job("lr_find", "lr finder")
        st.rerun()
    if latest is None:
        st.info("Not run yet for this run. It takes a few seconds once a worker is free.")
        return
    if busy:
        job_poller(str(latest["run_id"]), live_sweep=True)
        return
    if job_failed(latest, "LR finder"):
        return
    result = store.get_artifact(str(latest["run_id"]), "lr_find") or store.get_artifact(run_id, "lr_find")
    if not result:
        st.info("The LR finder finished without a result.")
        return
    st.plotly_chart(rf.lr_finder_figure(result["lrs"], result["losses"], result["smoothed"], result.get("suggestions")),
                    key="report_lr_finder")
    st.caption(f"{result.get('steps', len(result['lrs']))} steps in {result.get('seconds', 0):.1f} s"
               + (", stopped when the loss exploded" if result.get("stopped_early") else "")
               + f". This run trained at lr {config.lr:g}.")
    launch_with_lr(result)


def overfit_section() -> None:
    st.header("Overfit one batch")
    st.caption("Karpathy's recipe: train a copy of the model on one batch of 16 images until the loss is near zero. "
               "Runs on request and for lessons, not on every run: 0.1-1 s for small models, up to ~12 s for a ResNet "
               "that never gets there.")
    latest, busy = latest_job("overfit")
    if st.button("Overfit one batch", key="report_overfit", disabled=busy, icon=":material/fitness_center:"):
        start_job("overfit", "overfit one batch")
        st.rerun()
    if latest is None:
        return
    if busy:
        job_poller(str(latest["run_id"]), live_sweep=False)
        return
    if job_failed(latest, "overfit-one-batch check"):
        return
    result = overfit_result()
    if not result:
        st.info("The check finished without a result.")
        return
    if not RENDERED.get("overfit_badge", True) and st.session_state.get("report_overfit_synced") != latest["run_id"]:
        # the job ended while this page was drawn: the badge row above still says "not run"; draw it again
        st.session_state["report_overfit_synced"] = str(latest["run_id"])
        st.rerun()
    badge_col, curve_col = st.columns([1, 2])
    with badge_col:
        show_check(result)
    with curve_col:
        numbers = result.get("numbers") or {}
        st.plotly_chart(rf.overfit_figure(numbers.get("curve") or [], numbers.get("target_loss")), key="report_overfit_curve")


with readable_errors("the LR finder"):
    lr_finder_section()
with readable_errors("the overfit-one-batch check"):
    overfit_section()
