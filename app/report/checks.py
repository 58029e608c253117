"""The Run report's header and recipe-check badges: status, the run's facts, and Karpathy's recipe checks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import report as rf
from app.charts.text import escape_md
from app.report.common import helper_jobs
from app.ui.live import run_status_row
from engine import records
from engine.config import RunConfig
from engine.records import ACTIVE, RecipeCheck, RunKind, RunStatus
from engine.runs.store import Store

LATER_CHECKS = {"input_independent": "input-independent baseline (after the first epoch)",
                "clipping": "gradient clipping (when the run ends)",
                "update_ratio": "layer health: dead units, saturation, update ratio (when the run ends)"}
OVERFIT_BADGE_KEY = "report_overfit_badge"  # session state: the run whose badge row showed an overfit result


def overfit_result(store: Store, run_id: str) -> RecipeCheck | None:
    """The newest overfit-one-batch result: the latest finished job's own, else the one stored on the run."""
    jobs = helper_jobs(store, run_id, RunKind.OVERFIT)
    for job_id in jobs.loc[jobs["status"] == RunStatus.COMPLETED, "run_id"]:
        result = store.get_artifact(str(job_id), records.OVERFIT_ONE_BATCH)
        if result:
            return result
    return store.get_artifact(run_id, records.OVERFIT_ONE_BATCH)


# A check's badge names it ("Input-independent baseline: pass"): in a third of a 1024 px projector page Streamlit's
# one-line badge ended in "…", so the badges of these cards wrap instead (constant CSS, no user text).
_WRAPPING_BADGES = ("<style>.st-key-report_checks .stMarkdownBadge { white-space: normal !important; "
                    "overflow: visible !important; text-overflow: clip !important; height: auto !important; }</style>")


def show_check(check: RecipeCheck) -> None:
    """One check as a bordered card: badge, what was measured, the numbers, why it matters."""
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


def recipe_badges(store: Store, run_id: str, config: RunConfig, status: str) -> None:
    """The badge row: every stored check, the overfit check (run on request), and the checks still to come."""
    checks = rf.merge_checks(store.get_artifact(run_id, records.RECIPE_CHECKS),
                             store.get_artifact(run_id, records.RECIPE_CHECKS_RESUMED))
    overfit = overfit_result(store, run_id)
    st.session_state[OVERFIT_BADGE_KEY] = run_id if overfit is not None else None
    checks.append(overfit or {"name": "overfit_one_batch", "title": "Overfit one batch", "status": "skip",
                              "numbers": {}, "why": records.OVERFIT_WHY,
                              "message": "Not run: this check runs on request (and for lessons), not on every run. "
                                         "Start it in the Overfit one batch section below."})
    if status == RunStatus.QUEUED:
        st.info("Waiting for a free worker. The loss-at-initialisation check appears as soon as training starts, "
                "the input-independent baseline after the first epoch, the rest when the run ends.")
        return
    st.html(_WRAPPING_BADGES)
    columns = st.container(key="report_checks").columns(3)
    for index, check in enumerate(checks):
        with columns[index % 3]:
            show_check(check)
    if status in ACTIVE:
        names_done = {c.get("name") for c in checks}
        pending = [text for name, text in LATER_CHECKS.items() if name not in names_done
                   and (name != "update_ratio" or config.layer_stats_every)]
        if pending:
            st.caption("Still to come: " + "; ".join(pending) + ".")


def transfer_line(store: Store, config: RunConfig, summary: dict) -> str:
    """Markdown: the run it started from (a link to its report) and what trained: trainable, frozen and adapter
    parameters; "" for a run from random weights with every weight trained."""
    from engine.runs.lineage import source_id

    parts = []
    source = source_id(config.init_from)
    if source:
        found = store.get_run(source)
        which = config.init_from.partition(":")[2] or "best"
        name = f"**{escape_md(found['name'])}**" if found else f"{source} (deleted)"
        head = " with a new head (other classes)" if summary.get("new_head") else ""
        parts.append(f"Started from {name}'s {which} weights{head}")
    if summary.get("frozen") or summary.get("adapter"):
        adapter = f" ({summary['adapter']:,} in low-rank adapters)" if summary.get("adapter") else ""
        how = f"freeze {config.freeze}" + (f", adapter {config.adapter} rank {config.lora_rank}"
                                           if config.adapter != "none" else "")
        parts.append(f"**{summary.get('trainable', 0):,}** parameters trained{adapter}, **{summary['frozen']:,}** "
                     f"frozen ({escape_md(how)})")
    return " · ".join(parts)


def run_header(store: Store, run: pd.Series, config: RunConfig) -> None:
    """Status row with progress and cancel, the run's facts in one line, its model and full config on request."""
    run_status_row(run, key="report")
    summary = store.get_artifact(str(run["run_id"]), records.MODEL_SUMMARY) or {}
    facts = [f"{config.dataset}", f"{config.model}", f"{config.optimizer} lr {config.lr:g}",
             f"schedule {config.schedule}", f"batch {config.batch_size}", f"{config.epochs} epochs"]
    if summary.get("parameters"):
        facts.insert(2, f"{summary['parameters']:,} parameters")
    if config.classes or config.train_per_class:
        facts.insert(1, " ".join(filter(None, (f"classes {config.classes}" if config.classes else "",
                                               f"{config.train_per_class} per class" if config.train_per_class
                                               else ""))))
    st.caption(escape_md(" · ".join(facts)))
    transfer = transfer_line(store, config, summary)
    if transfer:
        text_col, link_col = st.columns([4, 1.4], vertical_alignment="center")
        text_col.markdown(transfer)
        source = config.init_from.partition(":")[0]
        if source and store.get_run(source) is not None:
            link_col.page_link("views/run_report.py", label="Source run", icon=":material/fact_check:",
                               query_params={"run": source})
    if summary.get("repr"):
        with st.expander("Model and configuration"):
            st.code(summary["repr"], language=None)
            st.json(config.to_dict(), expanded=False)
