"""Class page (class mode only): the leaderboard for everyone, and the teacher's controls.

Students see the leaderboard (each student's best finished run per validation split), can open an entry's run
report (its whole config) or compare entries. The teacher also sees every student's runs live, pauses the queue,
sets the class limits, cancels everything, removes a student's runs and frees a name. Every teacher action is
checked again by the engine (engine.runs.access): this page only decides what to show.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.leaderboard import SHOWN_DECIMALS, class_summary, leaderboard, splits
from app.charts.text import escape_md
from app.ui.identity import session_actor
from app.ui.live import live_fragment, status_text
from app.ui.state import get_runner, get_store, runs_frame
from engine.records import ACTIVE, RunKind
from engine.runs.access import ClassLimits, PermissionDenied

actor = session_actor()
store = get_store()
st.title("Class")


def best_val_acc(run_ids: list[str]) -> dict[str, float]:
    if not run_ids:
        return {}
    return store.get_metrics(run_ids, keys=["val_acc"]).groupby("run_id")["value"].max().to_dict()


def board(runs: pd.DataFrame) -> None:
    st.subheader("Leaderboard")
    choices = splits(runs)
    if not choices:
        st.info("No finished student runs yet. When students' runs finish, each student's best validation accuracy "
                "appears here.", icon=":material/leaderboard:")
        return
    label = st.selectbox("validation split", list(choices), key="board_split",
                         help="Accuracies compare only on the same validation images.")
    table = leaderboard(runs, best_val_acc(list(runs["run_id"])), choices[label])
    event = st.dataframe(table, hide_index=True, key="board_table", on_select="rerun", selection_mode="multi-row",
                         column_config={"best val acc": st.column_config.NumberColumn(format=f"%.{SHOWN_DECIMALS}f"),
                                        "run": st.column_config.TextColumn("run", width="medium"),
                                        "lr": st.column_config.NumberColumn(format="%g"),
                                        "run_id": st.column_config.TextColumn("run id", width="small")})
    chosen = [table["run_id"].iloc[i] for i in event.selection.rows] if event and event.selection else []
    a, b = st.columns(2)
    a.page_link("views/compare.py", label=f"Compare selected ({len(chosen)})", icon=":material/stacked_line_chart:",
                query_params={"runs": ",".join(chosen)}, disabled=not chosen)
    b.page_link("views/run_report.py", label="Report of the selected run", icon=":material/fact_check:",
                query_params={"run": chosen[0]} if chosen else None, disabled=len(chosen) != 1,
                help="its whole config, recipe checks and evaluation")


def teacher_controls() -> None:
    st.subheader("Queue and limits")
    paused = store.settings().get("queue_paused") == "1"
    q1, q2 = st.columns([3, 2])
    want_paused = q1.toggle("Pause the queue", value=paused, key="class_pause",
                            help="Students' queued runs wait until you resume; runs already training go on, and "
                                 "your own runs still start.")
    if want_paused != paused:
        store.set_queue_paused(want_paused, actor=actor)
        st.toast("Queue paused" if want_paused else "Queue resumed")
    if q2.button("Cancel every run", key="class_cancel_all", icon=":material/cancel:"):
        confirm_cancel_all()
    limits = store.limits()
    with st.form("class_limits"):
        st.caption("Class limits, per student. A lesson counts as one run for the first two; its runs are bounded "
                   "by the runs per lesson, each by the work of the largest run allowed (epochs x examples).")
        c1, c2, c3 = st.columns(3)  # two rows of three: five in a row were cut at 1024 px
        c4, c5, _ = st.columns(3)
        values = {
            "running": c1.number_input("running at once", 1, 64, limits.running, key="limit_running"),
            "queued": c2.number_input("waiting in the queue", 1, 1000, limits.queued, key="limit_queued"),
            "epochs": c3.number_input("epochs per run", 1, 1000, limits.epochs, key="limit_epochs"),
            "examples": c4.number_input("examples per run", 1, 10**9, limits.examples, step=1000,
                                        key="limit_examples", help="training examples per run"),
            "lesson_runs": c5.number_input("runs per lesson", 1, 1000, limits.lesson_runs, key="limit_lesson_runs",
                                           help="the most runs one lesson of a student may start; the teacher "
                                                "can run a bigger one for the whole class"),
        }
        if st.form_submit_button("Save limits"):
            for name, value in values.items():
                store.set_limit(name, int(value), actor=actor)
            st.toast("Class limits saved")
    defaults = ClassLimits()
    st.caption(f"Defaults: {defaults.running} running, {defaults.queued} queued, {defaults.epochs} epochs, "
               f"{defaults.examples:,} examples, {defaults.lesson_runs} runs per lesson (the server's TRAINLENS_MAX_* "
               "settings override them).")

    st.subheader("Students")
    live_fragment("class_students", students_live, every=2.0)
    runs = runs_frame()
    names = sorted(set(store.members().query("role == 'student'")["name"]) | set(runs.loc[runs["owner_role"] == "student", "owner"]))
    if names:
        student = st.selectbox("student", names, key="class_student")
        s2, s3 = st.columns(2)  # a row of their own: beside the name they were cut to "Remove th…" at 1024 px
        if s2.button("Remove their runs", key="class_remove", icon=":material/delete:"):
            confirm_remove(student)
        if s3.button("Free their name", key="class_free", icon=":material/person_remove:",
                     help="Signs them out everywhere; the name can be taken again."):
            store.free_name(student, actor=actor)
            st.toast(f"{escape_md(student)} is signed out")


def students_live(runs: pd.DataFrame) -> None:
    st.dataframe(class_summary(runs, store.members()), hide_index=True, key="class_summary")
    students = runs[(runs["owner_role"] == "student") & (runs["kind"] == RunKind.TRAIN)]
    active = students[students["status"].isin(ACTIVE)]
    if not active.empty:
        st.dataframe(pd.DataFrame({"student": active["owner"], "run": active["name"],
                                   "status": active["status"].map(status_text),
                                   "progress": active["progress"].astype(float)}),
                     hide_index=True, key="class_active",
                     column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                                 max_value=1.0, format="percent")})


@st.dialog("Cancel every run?")
def confirm_cancel_all() -> None:
    st.write("Every queued run is cancelled and every running run stops after its current step, yours included.")
    if st.button("Cancel them all", type="primary", key="class_cancel_all_confirm"):
        count = get_runner().cancel_all()
        st.toast(f"{count} run(s) cancelled")
        st.rerun()


@st.dialog("Remove a student's runs?")
def confirm_remove(student: str) -> None:
    st.write("Every run of this student is cancelled and deleted, with its metrics and checkpoints:")
    st.dataframe(pd.DataFrame({"student": [student]}), hide_index=True, key="class_remove_who")
    if st.button("Remove for good", type="primary", key="class_remove_confirm"):
        with st.spinner("Stopping and deleting..."):
            removed = get_runner().remove_owner_runs(student)
        st.toast(f"Removed {removed} run(s)")
        st.rerun()


try:
    live_fragment("class_board", board, every=5.0)
    if actor.is_teacher:
        teacher_controls()
except PermissionDenied as exc:
    st.error(escape_md(str(exc)), icon=":material/block:")
