"""Class page (class mode only): the leaderboard for everyone, and the teacher's controls.

Students see the leaderboard (each student's best finished run per validation split), can open an entry's run
report (its whole config) or compare entries. The teacher also sees every student's runs live and who is signed in,
idle, signed out or waiting to be let back in (and lets them in, or not), pauses the queue, sets the class limits,
cancels everything, removes a student's runs and signs a student out. Every teacher action is
checked again by the engine (engine.runs.access): this page only decides what to show.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app.charts.leaderboard import SHOWN_DECIMALS, class_summary, leaderboard, member_labels, splits
from app.charts.text import escape_md
from app.ui.identity import session_actor
from app.ui.live import live_fragment, status_text
from app.ui.state import get_runner, get_store, runs_frame
from engine.classroom import name_key
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
    table = leaderboard(runs, best_val_acc(list(runs["run_id"])), choices[label], member_labels(store.members()))
    event = st.dataframe(table, hide_index=True, key="board_table", on_select="rerun", selection_mode="multi-row",
                         column_config={"best val acc": st.column_config.NumberColumn(format=f"%.{SHOWN_DECIMALS}f"),
                                        "run": st.column_config.TextColumn("run", width="medium"),
                                        "lr": st.column_config.NumberColumn(format="%g"),
                                        # kept for the selection, not shown: with it the table scrolled sideways
                                        # at 1024 px (the projector audit of the Class page)
                                        "run_id": None})
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
        st.caption("What one run may cost")
        d1, d2, d3, d4, d5 = st.columns([1.4, 1, 1, 1, 1])
        values |= {
            # in millions: "10" reads at a glance where 10000000 is cut off in a 1024-pixel column
            "parameters": round(d1.number_input("parameters (millions)", 0.001, 1e6, limits.parameters / 1e6,
                                                step=1.0, format="%g", key="limit_parameters",
                                                help="A run's model weights, counted from its config (10 million = "
                                                     "40 MB of weights).") * 1e6),
            "batch": d2.number_input("batch size", 1, 8192, limits.batch, key="limit_batch"),
            "cpus": d3.number_input("CPU cores", 0.1, 1024.0, float(limits.cpus), step=0.5, format="%g",
                                    key="limit_cpus", help="A run's num_cpus (cores it reserves on a Ray cluster)."),
            "gpus": d4.number_input("GPUs", 0.0, 64.0, float(limits.gpus), step=0.25, format="%g", key="limit_gpus",
                                    help="A run's num_gpus; 0.25 lets four runs share one GPU, 0 keeps students off "
                                         "the GPUs."),
            "minutes": d5.number_input("minutes", 1, 10_000, limits.minutes, key="limit_minutes",
                                       help="Training time per run; a run over it is stopped (it can be resumed)."),
        }
        if st.form_submit_button("Save limits"):
            try:
                for name, value in values.items():
                    store.set_limit(name, value, actor=actor)
            except ValueError as exc:
                st.error(escape_md(str(exc)), icon=":material/error:")
            else:
                st.toast("Class limits saved")
    d = ClassLimits()
    st.caption(f"Defaults: {d.running} running, {d.queued} queued, {d.epochs} epochs, {d.examples:,} examples, "
               f"{d.parameters:,} parameters, batches of {d.batch}, {d.cpus:g} CPU cores, {d.gpus:g} GPU and "
               f"{d.minutes} minutes per run, {d.lesson_runs} runs per lesson (the server's TRAINLENS_MAX_* settings "
               "override them).")

    st.subheader("Students")
    live_fragment("class_students", students_live, every=2.0)
    members = store.members()
    summary = class_summary(runs_frame(), members)
    if not summary.empty:
        labels = dict(zip(summary["member_id"], summary["student"]))
        # by member id: two students who chose the same name are two entries ("Ana", "Ana (2)")
        member_id = st.selectbox("student", list(labels), format_func=labels.get, key="class_student")
        s2, s3 = st.columns(2)  # under the choice, so both labels fit whole on a 1024-pixel screen
        if s2.button("Remove their runs", key="class_remove", icon=":material/delete:", width="stretch"):
            confirm_remove(member_id, labels[member_id])
        if s3.button("Sign them out", key="class_free", icon=":material/person_remove:", width="stretch",
                     help="Ends their sign-in on every browser; the name can be taken by someone new, who does not "
                          "get their runs. They come back with their rejoin code, or you let them back in."):
            store.free_member(member_id, actor=actor)
            st.toast(f"{escape_md(labels[member_id])} is signed out")


@st.fragment(run_every=3.0)
def requests_live() -> None:
    """Students asking to be let back in (they lost their rejoin code, or their tab): refreshed every 3 s."""
    waiting = store.rejoin_requests()
    if waiting.empty:
        return
    members = store.members()
    labels = member_labels(members)
    for request in waiting.itertuples():
        with st.container(border=True, key=f"rejoin_{request.request_id}"):
            ago = max(0, int(time.time() - request.requested_at))
            st.markdown(f":material/front_hand: **{escape_md(request.name)}** asks to be let back in "
                        f"({ago // 60} min {ago % 60} s ago). Let them in only if it is really them.")
            same = members[(members["role"] == "student") & (members["name"].map(name_key) == request.name_key)]
            options = list(same["member_id"])
            who, let_in, refuse = st.columns([2, 1, 1], vertical_alignment="bottom")
            chosen = who.selectbox("let them in as", options, key=f"rejoin_as_{request.request_id}",
                                   format_func=lambda m: f"{labels[m]} ({same.set_index('member_id').at[m, 'status']})",
                                   disabled=not options, placeholder="no student of that name")
            if let_in.button("Let them in", key=f"rejoin_yes_{request.request_id}", type="primary",
                             disabled=chosen is None):
                decide(request.request_id, chosen)
            if refuse.button("Refuse", key=f"rejoin_no_{request.request_id}"):
                decide(request.request_id, None)


def decide(request_id: str, member_id: str | None) -> None:
    try:
        store.decide_rejoin(request_id, member_id, actor=actor)
    except ValueError as exc:  # answered meanwhile (another teacher tab), or withdrawn
        st.error(escape_md(str(exc)), icon=":material/block:")
        return
    st.rerun()


def students_live(runs: pd.DataFrame) -> None:
    st.dataframe(class_summary(runs, store.members()).drop(columns="member_id"), hide_index=True,
                 key="class_summary")
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
def confirm_remove(member_id: str, label: str) -> None:
    st.write("Every run of this student is cancelled and deleted, with its metrics and checkpoints:")
    st.dataframe(pd.DataFrame({"student": [label]}), hide_index=True, key="class_remove_who")
    if st.button("Remove for good", type="primary", key="class_remove_confirm"):
        with st.spinner("Stopping and deleting..."):
            removed = get_runner().remove_owner_runs(member_id)
        st.toast(f"Removed {removed} run(s)")
        st.rerun()


try:
    if actor.is_teacher:
        requests_live()  # first: a student waiting at the door should not wait for the teacher to scroll
    live_fragment("class_board", board, every=5.0)
    if actor.is_teacher:
        teacher_controls()
except PermissionDenied as exc:
    st.error(escape_md(str(exc)), icon=":material/block:")
