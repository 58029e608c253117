"""The class leaderboard: each student's best validation accuracy, per validation split (no streamlit: tests use it).

Accuracies are comparable only on the same validation images, so entries are grouped by the fields that decide a
run's data (engine.data.loading.split_key: dataset, validation fraction, data folder, training-example limit, the
classes chosen);
the page shows one split at a time. Only finished training runs count (completed or stopped early), so a run
that is still climbing cannot top a challenge before it is done. Equal accuracies, as the table shows them
(`SHOWN_DECIMALS`), share a rank (1, 1, 3: standard competition ranking), listed by who finished first.
"""

from __future__ import annotations

import pandas as pd

from engine.classroom import name_key
from engine.datasets import DATASETS
from engine.records import SUCCEEDED, RunKind, RunStatus

SPLIT_COLUMNS = ["cfg.dataset", "cfg.val_fraction", "cfg.data_dir", "cfg.train_limit", "cfg.classes"]
SHOWN_DECIMALS = 4  # the leaderboard shows accuracies to this many decimals; equal as shown, equal in rank


def split_label(dataset: str, val_fraction: float, data_dir: str, train_limit: int, classes: str = "") -> str:
    info = DATASETS.get(dataset)
    parts = [info.title if info else dataset, f"{val_fraction:.0%} validation"]
    if isinstance(classes, str) and classes:  # a subset is validated on its own classes only
        parts.append(f"classes {classes}")
    if train_limit:
        parts.append(f"{int(train_limit):,} training examples")
    if data_dir:
        parts.append(f"from {data_dir}")
    return " · ".join(parts)


def splits(runs: pd.DataFrame) -> dict[str, tuple]:
    """label -> split key, for the splits that have at least one finished student run (most entries first)."""
    finished = _finished_student_runs(runs)
    if finished.empty:
        return {}
    counts = finished.groupby(SPLIT_COLUMNS, dropna=False)["owner_id"].nunique().sort_values(ascending=False)
    return {split_label(*key): tuple(key) for key in counts.index}


def leaderboard(runs: pd.DataFrame, best_val_acc: dict[str, float], split: tuple,
                labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per student, a class member (their best finished run on `split`), best first, ranked from 1; equal
    accuracies (to SHOWN_DECIMALS) share the better rank. `labels` (member id -> name shown, see member_labels)
    tells apart two members who chose the same name."""
    finished = _finished_student_runs(runs)
    for column, value in zip(SPLIT_COLUMNS, split):
        finished = finished[finished[column] == value]
    finished = finished.assign(best=finished["run_id"].map(best_val_acc)).dropna(subset=["best"])
    columns = ["rank", "student", "best val acc", "run", "model", "optimizer", "lr", "epochs", "run_id"]
    if finished.empty:
        return pd.DataFrame(columns=columns)
    top = (finished.sort_values(["best", "finished_at"], ascending=[False, True])
           .drop_duplicates("owner_id", keep="first").reset_index(drop=True))
    shown = top["best"].astype(float).round(SHOWN_DECIMALS)
    top = top.assign(shown=shown).sort_values(["shown", "finished_at"], ascending=[False, True]).reset_index(drop=True)
    labels = labels or {}
    return pd.DataFrame({
        "rank": top["shown"].rank(method="min", ascending=False).astype(int),
        "student": [labels.get(i, o) for i, o in zip(top["owner_id"], top["owner"])],
        "best val acc": top["best"].astype(float),
        "run": top["name"],
        "model": top["cfg.model"],
        "optimizer": top["cfg.optimizer"],
        "lr": top["cfg.lr"].astype(float),
        "epochs": top["cfg.epochs"].astype(int),
        "run_id": top["run_id"],
    })[columns]


def member_labels(members: pd.DataFrame) -> dict[str, str]:
    """member id -> the name to show: the display name, numbered in joining order when several members chose the
    same one ('Ana', 'Ana (2)'), since a freed name can be taken by someone new."""
    labels, seen = {}, {}
    for member_id, name in zip(members["member_id"], members["name"]):
        key = name_key(name)
        seen[key] = seen.get(key, 0) + 1
        labels[member_id] = name if seen[key] == 1 else f"{name} ({seen[key]})"
    return labels


SUMMARY_COLUMNS = ["member_id", "student", "status", "running", "queued", "finished", "runs"]


def class_summary(runs: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Per student (a class member): whether they are signed in, idle, signed out or waiting to rejoin, and their
    runs running, queued and finished (members with no run yet included), for the teacher."""
    students = runs[(runs["owner_role"] == "student") & (runs["kind"] == RunKind.TRAIN)]
    pupils = members[members["role"] == "student"]
    labels, status = member_labels(members), dict(zip(pupils["member_id"], pupils["status"]))
    owner_names = dict(zip(students["owner_id"], students["owner"]))
    rows = []
    for member_id in dict.fromkeys(list(pupils["member_id"]) + list(students["owner_id"])):
        mine = students[students["owner_id"] == member_id]
        rows.append({"member_id": member_id, "student": labels.get(member_id, owner_names.get(member_id, "?")),
                     "status": status.get(member_id, "signed out"),
                     "running": int((mine["status"] == RunStatus.RUNNING).sum()),
                     "queued": int((mine["status"] == RunStatus.QUEUED).sum()),
                     "finished": int(mine["status"].isin(SUCCEEDED).sum()), "runs": len(mine)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _finished_student_runs(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return runs
    return runs[(runs["owner_role"] == "student") & (runs["kind"] == RunKind.TRAIN) & runs["status"].isin(SUCCEEDED)]
