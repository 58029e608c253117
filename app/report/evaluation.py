"""The Run report's evaluation: scikit-learn's classification report of the best/last/EMA/SWA weights and a
clickable confusion matrix whose cells list the misclassified validation images, each linked to Explain."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from app.charts import report as rf
from app.charts.text import escape_md
from app.ui.presentation import plotly_chart
from app.ui.state import run_split
from engine import records
from engine.config import RunConfig
from engine.datasets import dataset_info
from engine.records import ACTIVE, UNSUCCESSFUL, EvaluationReport, RunRecord, RunStatus
from engine.runs.store import Store

THUMBS_PER_PAGE = 24
THUMB_COLUMNS = 3  # in half a 1024 px projector page, a fourth column cut each thumbnail's Explain link


def explain_link(run_id: str, index: int) -> bool:
    """A link to the Explain page for one validation image; False when this dashboard has no Explain page."""
    try:
        # no icon: under a thumbnail in a third of half a 1024 px projector page, the icon cut the label
        st.page_link("views/explain.py", label="Explain", query_params={"run": run_id, "sample": str(index)})
        return True
    except StreamlitPageNotFoundError:
        return False


def cell_label(cell: str, evaluation: EvaluationReport, noun: str = "images") -> str:
    true, pred = (int(v) for v in cell.split(","))
    labels, counts = evaluation["labels"], evaluation["confusion"]
    return f"true {labels[true]} → predicted {labels[pred]} ({counts[true][pred]} {noun})"


def misclassified_grid(run_id: str, config: RunConfig, evaluation: EvaluationReport, true: int, pred: int) -> None:
    """Thumbnails of one confusion cell's images (the run's own validation split), most confident mistake first."""
    from app.report.text_mistakes import is_text, misclassified_sentences

    if is_text(config):  # a text run's cells list sentences, not thumbnails
        return misclassified_sentences(config, evaluation, true, pred)
    labels = evaluation["labels"]
    examples = rf.cell_examples(evaluation, true, pred)
    total = int(evaluation["confusion"][true][pred])
    if not examples:
        st.info(f"None of the {total} images of this cell was stored (the report keeps the "
                f"{len(evaluation.get('misclassified') or [])} most confident mistakes).")
        return
    try:
        images = run_split(config).val_x  # the split the report was computed on: indexes mean the same images
    except Exception as exc:  # noqa: BLE001 - a dataset that cannot load (moved folder...) still lists the mistakes
        st.warning(f"The validation images could not be loaded ({escape_md(exc)}); listing the mistakes without "
                   "thumbnails.")
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
                explain_ok = explain_link(run_id, index)
    if not explain_ok:
        st.caption("Links to the Explain page appear here once that page is part of the dashboard.")


def _clicked_cell(evaluation: EvaluationReport, cells: list[str]) -> str | None:
    """Follow a click on the heatmap (its selection state, read before it is drawn); a note when the click chose
    no listable cell."""
    chart_state = st.session_state.get("report_confusion")
    try:
        points = chart_state["selection"]["points"] if chart_state else None
    except (KeyError, TypeError):
        points = None
    clicked = rf.cell_from_points(points)
    clicked_key = None if clicked is None else f"{clicked[0]},{clicked[1]}"
    if clicked_key == st.session_state.get("report_last_click"):
        return None
    st.session_state["report_last_click"] = clicked_key
    if clicked_key in cells:
        st.session_state["report_cell"] = clicked_key
    elif clicked is not None:
        true, pred = clicked
        count = evaluation["confusion"][true][pred]
        label = escape_md(evaluation["labels"][true])  # a class label may come from a CSV: text, never markdown
        return (f"That cell holds the {count} correctly classified images of {label}: click a cell off the "
                "diagonal to see mistakes." if true == pred else "No image fell in that cell.")
    return None


def confusion_section(run_id: str, config: RunConfig, evaluation: EvaluationReport) -> None:
    cells = [f"{t},{p}" for t, p, _ in rf.confusion_cells(evaluation)]
    if st.session_state.get("report_cell") not in cells:
        st.session_state.pop("report_cell", None)
    note = _clicked_cell(evaluation, cells)
    if cells and "report_cell" not in st.session_state:
        st.session_state["report_cell"] = cells[0]  # the biggest confusion

    st.subheader("Confusion matrix")
    matrix_col, images_col = st.columns(2, gap="medium")
    with matrix_col:
        mode = st.radio("show", ["counts", "normalised"], horizontal=True, key="report_normalized",
                        help="normalised: each row divided by the number of images of its true class")
        selected = st.session_state.get("report_cell")
        outline = tuple(int(v) for v in selected.split(",")) if selected else None
        plotly_chart(rf.confusion_figure(evaluation, mode == "normalised", outline), key="report_confusion",
                        on_select="rerun", selection_mode="points")
        st.caption("Rows: true class; columns: predicted class. Click a cell to list its images.")
    with images_col:
        if note:
            st.info(note)
        if not cells:
            st.success("No validation image was misclassified.")
            return
        noun = "sentences" if dataset_info(config.dataset).kind == "text" else "images"
        cell = st.selectbox(f"misclassified {noun} of the cell", cells,
                            format_func=lambda c: cell_label(c, evaluation, noun), key="report_cell")
        true, pred = (int(v) for v in cell.split(","))
        misclassified_grid(run_id, config, evaluation, true, pred)


def _no_report_yet(run: RunRecord, config: RunConfig) -> None:
    status = run["status"]
    if status in ACTIVE:
        st.info("The evaluation report (per-class precision, recall and F1, confusion matrix, misclassified images) "
                "is computed when the run finishes, for its best and last weights"
                + (" and its EMA/SWA averages." if config.ema or config.swa else "."))
    elif status == RunStatus.CANCELLED:
        why = f" ({escape_md(run['error'])})" if run.get("error") else ""  # a class time limit, say
        st.info(f"This run was cancelled before its final evaluation{why}. Resume it from the Runs page to finish "
                "training and get the report.")
    elif status in UNSUCCESSFUL:
        st.info(f"No evaluation: the run {status.replace('_', ' ')} before it could be evaluated"
                + (f" ({escape_md(run['error'])})." if run.get("error") else "."))
    else:
        st.info("No evaluation report was stored for this run.")


def evaluation_section(store: Store, run: RunRecord) -> None:
    """Report of the chosen weights: headline numbers, the per-class table (and sklearn's text), the confusion matrix."""
    run_id, config = run["run_id"], run["config"]
    st.header("Evaluation on the validation set")
    artifacts = set(store.list_artifacts(run_id))
    available = [k for k in records.REPORT_KINDS if records.report_artifact(k) in artifacts]
    if not available:
        _no_report_yet(run, config)
        return
    if st.session_state.get("report_weights") not in available:
        st.session_state.pop("report_weights", None)  # another run had other weights
    which = st.radio("weights", available, format_func=rf.REPORT_TITLES.get, horizontal=True, key="report_weights",
                     help="best: the checkpoint with the best validation metric; last: the weights at the end")
    evaluation: EvaluationReport = store.get_artifact(run_id, records.report_artifact(which))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("accuracy", f"{evaluation['accuracy']:.2%}")
    m2.metric("validation loss", f"{evaluation['loss']:.4f}" if evaluation.get("loss") is not None else "n/a")
    m3.metric(f"validation {'sentences' if dataset_info(config.dataset).kind == 'text' else 'images'}",
              f"{evaluation['n']:,}")
    m4.metric("misclassified", f"{evaluation.get('misclassified_total', 0):,}")
    from app.report.text_mistakes import subset_accuracy  # sentiment: accuracy on and off the hard subset

    subset_accuracy(store, run_id)
    table_tab, text_tab = st.tabs(["Classification report", "As printed by scikit-learn"])
    with table_tab:
        shown = rf.report_display(rf.report_table(evaluation))
        st.dataframe(shown, key="report_table", hide_index=True, height=36 * (len(shown) + 1) + 2,
                     column_config={"class": st.column_config.TextColumn("class", width="medium")})
        st.caption("Per-class precision, recall, F1 and support from scikit-learn's classification_report; "
                   "micro, macro and weighted averages over the classes.")
    with text_tab:
        st.code(evaluation["report_text"], language=None)
    confusion_section(run_id, config, evaluation)
