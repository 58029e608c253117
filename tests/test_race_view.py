"""How a race reads on Compare: the raced field found from the runs' configs, steps/s instead of durations, and the
note that runs sharing the machine were timed against each other."""

from __future__ import annotations

import pandas as pd

from app.charts.race import opening_group_by, raced_field, shared_machine, steps_per_second


def runs(rows: list[dict]) -> pd.DataFrame:
    base = {"group": "race", "cfg.seed": 0, "cfg.name": "", "cfg.group": "race", "cfg.optimizer": "adam",
            "cfg.lr": 0.002, "cfg.model": "mlp", "started_at": 0.0, "finished_at": 10.0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_the_raced_field_prefers_the_optimizer_over_its_learning_rate():
    race = runs([{"cfg.optimizer": "sgd", "cfg.lr": 0.1, "cfg.seed": s} for s in (0, 1)]
                + [{"cfg.optimizer": "adam", "cfg.seed": s} for s in (0, 1)])
    assert raced_field(race) == "optimizer"
    assert opening_group_by(race) == "optimizer"
    one_seed_each = race[race["cfg.seed"] == 0]
    assert raced_field(one_seed_each) == "optimizer" and opening_group_by(one_seed_each) is None  # nothing to average
    assert raced_field(runs([{"cfg.seed": 0}, {"cfg.seed": 1}])) is None  # seeds only: no raced field
    mixed = race.assign(group=["a", "a", "b", "b"])
    assert opening_group_by(mixed) is None  # not one race


def test_steps_per_second_and_the_shared_machine_note():
    frame = runs([{"started_at": 0.0, "finished_at": 10.0}, {"started_at": 5.0, "finished_at": 25.0}])
    rate = steps_per_second(pd.Series([100, 100]), frame["finished_at"] - frame["started_at"])
    assert list(rate) == [10.0, 5.0]
    assert shared_machine(frame)
    one_after_the_other = runs([{"started_at": 0.0, "finished_at": 10.0}, {"started_at": 10.0, "finished_at": 20.0}])
    assert not shared_machine(one_after_the_other)
    still_running = runs([{"started_at": 0.0, "finished_at": None}, {"started_at": 30.0, "finished_at": 40.0}])
    assert shared_machine(still_running, now=50.0)
    assert steps_per_second(pd.Series([5]), pd.Series([0.0])).isna().all()
