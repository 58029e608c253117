"""The class leaderboard (app/charts/leaderboard.py): equal accuracies share a rank, as the class sees them."""

from __future__ import annotations

from app.charts.leaderboard import leaderboard, splits
from engine.classroom import STUDENT, Actor
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store

TINY = RunConfig(model="mlp", epochs=1, train_limit=64)


def test_ties_share_a_rank_and_the_next_rank_skips_them(trainlens_home):
    store = Store()
    best = {}
    for name, accuracy in [("Ana", 0.9), ("Ben", 0.9), ("Cy", 0.85), ("Dee", 0.90000001), ("Eve", 0.95)]:
        run_id = store.create_run(TINY, actor=Actor(name, STUDENT, f"m-{name.lower()}"))
        store.update_status(run_id, RunStatus.COMPLETED)
        best[run_id] = accuracy
    runs = store.list_runs()
    table = leaderboard(runs, best, next(iter(splits(runs).values())))
    # Dee's 0.90000001 shows as 0.9000: a tie with Ana and Ben, whoever finished first listed first
    assert list(zip(table["rank"], table["student"])) == [(1, "Eve"), (2, "Ana"), (2, "Ben"), (2, "Dee"), (5, "Cy")]
    store.close()
