"""Runs page: a live table of every run, with filters and actions (compare, cancel, resume, delete).

In class mode everyone sees every run (read-only), students start on "My runs only", queued runs show their place
in the queue and why they wait, and the action buttons count only the selected runs this user may change (the
engine refuses the others anyway: see engine.runs.access)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts.text import escape_md
from app.ui.identity import class_mode, session_actor
from app.ui.live import live_fragment, status_text
from app.ui.state import format_duration, get_runner, get_store, own_change_recent, runs_frame, shared_figure
from engine.classroom import name_key
from engine.records import ACTIVE, DELETABLE, RESUMABLE, STATUSES, RunKind, RunStatus
from engine.runs.placement import cluster_summary, placements, read_cluster, runs_on
from engine.runs.access import CapReached, PermissionDenied
from engine.runs.lineage import source_names

st.title("Runs")
runs = runs_frame()
actor = session_actor()
in_class = class_mode().enabled


def quarantined(unreadable: list[dict]) -> None:
    """Rows the store cannot read (a damaged config, an unknown status): listed apart, so the others still show."""
    st.warning(f"{len(unreadable)} run record(s) could not be read and are left out of the table below. They cannot "
               "be trained, resumed or compared; mark them failed and delete them to tidy up.", icon=":material/warning:")
    st.dataframe(pd.DataFrame(unreadable)[["run_id", "name", "status", "problem"]], hide_index=True,
                 key="runs_unreadable")
    if st.button(f"Mark failed and delete ({len(unreadable)})", key="runs_unreadable_delete"):
        store = get_store()
        for row in unreadable:
            store.mark_unreadable_failed(row["run_id"], row["problem"])
            get_runner().delete(row["run_id"])
        st.rerun()


def workers_cannot_start() -> bool:
    """Why queued runs wait when no worker can start (a Ray cluster that is not there, a store a worker cannot open):
    the reason the runner recorded, and, for whoever may, a way to try again once it is fixed. True when shown."""
    problem = get_runner().pool_problem()
    if problem is None:
        return False
    st.error(f"Runs wait in the queue: {escape_md(problem.describe())}.", icon=":material/report:")
    if not actor.is_student and st.button("Try again now", key="runs_workers_retry",
                                          help="start the workers again, after fixing what stopped them"):
        try:
            get_runner().start_now()
        except ValueError as exc:  # a setting it cannot start with
            st.error(escape_md(str(exc)))
        else:
            st.rerun()
    return True


if runs.attrs.get("unreadable"):
    quarantined(runs.attrs["unreadable"])
if runs.empty:
    st.info("No runs yet. Start the default run (MNIST digits, ConvNet, Adam, 3 epochs) or configure one on the Train page.")
    if st.button("Start the default run", type="primary", key="runs_default_run"):
        from engine.config import RunConfig

        try:
            get_runner().submit(RunConfig())
        except (CapReached, PermissionDenied) as exc:
            st.error(escape_md(str(exc)))
        else:
            st.rerun()
    st.page_link("views/train.py", label="Configure a run", icon=":material/tune:")
    st.stop()

if in_class:
    mine_only = st.toggle("My runs only", value=actor.is_student, key="runs_mine",
                          help="Everyone's runs are visible to the whole class; you can change only your own.")
else:
    mine_only = False
f1, f2, f3 = st.columns(3)
status_filter = f1.multiselect("status", STATUSES, key="runs_status", format_func=status_text)
group_filter = f2.multiselect("group", sorted({g for g in runs["group"] if g}), key="runs_group")
# owners by name as compared everywhere ('Ana' and ' ana ' are one entry), shown as last written
owner_filter = f3.multiselect("owner", sorted({name_key(o): o for o in runs["owner"][::-1] if o}.values(),
                                              key=name_key), key="runs_owner")
more_columns = st.toggle("More columns", key="runs_more_columns",
                         help="duration, group, device, where it runs, run id and error")


def best_val_acc(run_ids: list[str]) -> dict[str, float]:
    store = get_store()
    frame = store.get_metrics(run_ids, keys=["val_acc"]) if run_ids else pd.DataFrame(columns=["run_id", "value"])
    return frame.groupby("run_id")["value"].max().to_dict()


# columns the filters and actions read; shown columns are everything else
HIDDEN = ["raw_status", "raw_owner", "raw_owner_key", "raw_owner_id", "raw_role"]
# what a run is and how it does: at 1024 px (projector mode too) these fit beside the sidebar without scrolling the
# table sideways (the projector audit checks); where and how it ran behind the "More columns" toggle
SHOWN = ["name", "status", "progress", "best val acc", "owner"]
DETAILS = ["from", "duration", "group", "device", "runs on", "run_id", "error"]  # from: the run it started from


def everyones_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's row as the table shows it, plus the HIDDEN columns: one table for every session while the runs
    stay as they are (app.ui.state.shared_figure), so a class's sixty ticking tabs do not each filter the wide runs
    frame (one column per config field), read best accuracies and queue places, and format it all again.
    Plain object columns: filtering a dozen of them per tick costs far less than Arrow-backed strings do."""
    best = best_val_acc(list(runs["run_id"]))
    where = placements(get_store(), list(runs["run_id"]))
    places = get_store().queue_positions() if (runs["status"] == RunStatus.QUEUED).any() else {}
    sources = source_names(runs)  # lineage: the run each one started from (init_from)
    table = pd.DataFrame({
        "run_id": runs["run_id"],
        "name": runs["name"],
        "group": runs["group"],
        "status": [status_cell(r, s, e, places) for r, s, e in zip(runs["run_id"], runs["status"], runs["eta_s"])],
        # a script's length is its own: while it runs, an empty cell rather than a bar stuck at 0%
        "progress": runs["progress"].astype(float).where(~((runs["kind"] == RunKind.SCRIPT)
                                                           & (runs["status"] == RunStatus.RUNNING))),
        "device": runs["device"].fillna(""),
        "runs on": [runs_on(where.get(r), d) for r, d in zip(runs["run_id"], runs["device"].fillna(""))],
        "best val acc": runs["run_id"].map(best).astype(float),
        "duration": runs["duration_s"].map(format_duration),
        "owner": [o + (" (teacher)" if role == "teacher" else "")
                  for o, role in zip(runs["owner"], runs["owner_role"])],
        "from": runs["run_id"].map(lambda r: sources.get(r, "")),
        "error": runs["error"].fillna(""),
        "raw_status": runs["status"], "raw_owner": runs["owner"], "raw_owner_key": runs["owner"].map(name_key),
        "raw_owner_id": runs["owner_id"], "raw_role": runs["owner_role"],
    })
    text = [c for c in table.columns if c not in ("progress", "best val acc")]
    return table.astype({c: object for c in text}).reset_index(drop=True)


def status_cell(run_id: str, status: str, eta_s: float | None, places: dict[str, int]) -> str:
    """'running, 1m 20s left', 'queued #3 in queue', 'completed': the ETA in the status, one column fewer."""
    if run_id in places:
        return f"{status_text(status)} #{places[run_id]} in queue"
    if status == RunStatus.RUNNING and eta_s is not None and eta_s == eta_s:  # NaN: no pace measured yet
        return f"{status_text(status)}, {format_duration(eta_s)} left"
    return status_text(status)


def shared_table(runs: pd.DataFrame) -> pd.DataFrame:
    """everyones_table of `runs`, shared by every session while the runs' fingerprint (app.ui.state.runs_frame)
    holds."""
    version = runs.attrs.get("fingerprint")
    if version is None:  # a frame not from runs_frame: nothing says when a shared table would be stale
        return everyones_table(runs)
    # after this user changed runs (cancel, resume, delete) the table they see must show it: the exact version,
    # not one built up to a second before their click
    return shared_figure(("runs table",), lambda: everyones_table(runs), version,
                         live=bool(runs["status"].isin(ACTIVE).any()) and not own_change_recent())


def mine(table: pd.DataFrame) -> np.ndarray:
    """Which rows of the table are this user's own runs: their member id's in a class (never those of someone who
    typed the same name), the OS user's otherwise. Vectorised: sixty tabs filter the table every tick."""
    owner_column = "raw_owner_id" if actor.member_id else "raw_owner"
    return ((table[owner_column].to_numpy() == (actor.member_id or actor.name))
            & (table["raw_role"].to_numpy() == actor.role))


def filtered(full: pd.DataFrame) -> pd.DataFrame:
    """This session's rows of the table: its filters applied (My runs, status, group, owner)."""
    keep = np.ones(len(full), dtype=bool)
    if mine_only:
        keep &= mine(full)
    owner_keys = [name_key(o) for o in owner_filter]
    for column, chosen in (("raw_status", status_filter), ("group", group_filter), ("raw_owner_key", owner_keys)):
        if chosen:
            keep &= np.isin(full[column].to_numpy(), chosen)
    return full if keep.all() else full[keep]


def runs_table(runs_now: pd.DataFrame) -> None:
    # live: it shows when a start fails, and goes once workers run; it says what the cluster caption would
    cluster = None if workers_cannot_start() else cluster_summary(read_cluster())
    if cluster:
        st.caption(escape_md(cluster))  # the error and the address are quoted text, never markdown
    full = shared_table(runs_now)
    view = filtered(full)
    event = st.dataframe(
        view.drop(columns=HIDDEN), hide_index=True, key="runs_table", on_select="rerun", selection_mode="multi-row",
        column_order=SHOWN + DETAILS if more_columns else SHOWN,
        column_config={
            "name": st.column_config.TextColumn("name", width="medium"),
            "run_id": st.column_config.TextColumn("run id", width="small"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        width=120),
            "best val acc": st.column_config.NumberColumn("best acc", format="%.4f", width="small",
                                                          help="best validation accuracy"),
            "error": st.column_config.TextColumn("error", width="large"),
            "from": st.column_config.TextColumn("from", width="medium",
                                                help="the run it started from (its weights), if any"),
        },
    )
    chosen = [view["run_id"].iloc[i] for i in event.selection.rows] if event and event.selection else []
    st.session_state["runs_selected"] = chosen
    actions(chosen, view)
    if in_class:
        why_waiting(full)


def why_waiting(view: pd.DataFrame) -> None:
    """For this user's queued runs (whatever the filters show): their place in the queue and what holds them back."""
    waiting = (view["raw_status"].to_numpy() == RunStatus.QUEUED) & mine(view)
    if not waiting.any():
        return
    store = get_store()
    for row in view[waiting].head(3).itertuples():
        run = {"run_id": row.run_id, "owner_id": row.raw_owner_id, "owner_role": row.raw_role}
        st.info(f"**{escape_md(row.name)}** is waiting. {escape_md(store.waiting_reason(run))}",
                icon=":material/hourglass_top:")


def actions(chosen: list[str], view: pd.DataFrame) -> None:
    runner = get_runner()
    rows = {row.run_id: row for row in view[view["run_id"].isin(chosen)].itertuples()} if chosen else {}
    # only runs this user may change count for the buttons; the engine refuses the others whatever is clicked
    allowed = [r for r in chosen if r in rows and runner.may_act_on(rows[r].raw_owner_id, rows[r].raw_role)]
    statuses = {r: rows[r].raw_status for r in allowed}
    b1, b2, b3, b4 = st.columns([3, 2, 2, 2])  # the compare link's label is the longest
    b1.page_link("views/compare.py", label=f"Compare selected ({len(chosen)})", icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(chosen)}, disabled=not chosen)
    cancellable = [r for r, s in statuses.items() if s in ACTIVE]
    if len(allowed) < len(chosen):
        st.caption(f"{len(chosen) - len(allowed)} selected run(s) belong to someone else: you can view and compare "
                   "them, but only their owner or the teacher can cancel, resume or delete them.")
    if b2.button(f"Cancel ({len(cancellable)})", disabled=not cancellable, key="runs_cancel"):
        if act(runner.cancel, cancellable):
            st.toast(f"Cancel requested for {len(cancellable)} run(s)")
    resumable = [r for r, s in statuses.items() if s in RESUMABLE]
    if b3.button(f"Resume ({len(resumable)})", disabled=not resumable, key="runs_resume",
                 help="continue from the last epoch checkpoint"):
        if act(runner.resume, resumable):
            st.toast(f"Resuming {len(resumable)} run(s)")
    deletable = [r for r, s in statuses.items() if s in DELETABLE]
    if b4.button(f"Delete ({len(deletable)})", disabled=not deletable, key="runs_delete",
                 help="delete runs with their metrics and checkpoints (running runs must be cancelled first)"):
        confirm_delete(deletable)


def act(action, run_ids: list[str]) -> bool:
    """Apply `action` to each run; show the engine's refusal (another's run, a class limit, a run that changed
    state meanwhile) as a message instead of a traceback. True when all went through."""
    for run_id in run_ids:
        try:
            action(run_id)
        except (PermissionDenied, CapReached, ValueError, KeyError) as exc:
            st.error(escape_md(str(exc).strip("'\"")), icon=":material/block:")
            return False
    return True


@st.dialog("Delete runs?")
def confirm_delete(run_ids: list[str]) -> None:
    names = get_store().list_runs().set_index("run_id")["name"]
    st.write(f"This deletes {len(run_ids)} run(s) with their metrics and checkpoints. It cannot be undone.")
    # a table, not markdown: every name shows as typed, and one name cannot hide the others
    st.dataframe(pd.DataFrame({"run id": run_ids, "name": [str(names.get(r, "")) for r in run_ids]}), hide_index=True,
                 key="runs_delete_list")
    if st.button("Delete for good", type="primary", key="runs_delete_confirm"):
        runner = get_runner()
        from app.ui.state import get_metrics_cache

        done = act(runner.delete, run_ids)
        for run_id in run_ids:
            get_metrics_cache().forget(run_id)
        if done:
            st.rerun()


live_fragment("runs_table", runs_table, every=2.0)
