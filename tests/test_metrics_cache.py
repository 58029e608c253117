"""The dashboard's metrics cache (app/server/metrics_cache.py) against a real SQLite store, and the worker pool's
warm-up.

The cache must read only the keys asked, only the new rows after the first read, long histories at a bounded coarse
level (evenly spaced steps, the first and latest rows, the extremes), and start over when a resumed run rewrites its
rows. Rows read are counted both by the cache (`rows_read`) and by a store that counts what its reads return.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from app.server.metrics_cache import MetricsCache
from engine.config import RunConfig
from engine.runs.store import Store

STEP_KEYS = ("loss", "lr", "grad_norm")


class CountingStore(Store):
    """A Store that counts the calls and the rows of the metric reads the cache makes."""

    def __init__(self, path):
        super().__init__(path)
        self.calls: Counter[str] = Counter()
        self.rows = 0

    def _counted(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        self.calls[name] += 1
        self.rows += len(frame)
        return frame

    def get_metrics(self, *args, **kwargs):
        return self._counted("get_metrics", super().get_metrics(*args, **kwargs))

    def sample_metrics(self, *args, **kwargs):
        return self._counted("sample_metrics", super().sample_metrics(*args, **kwargs))

    def metric_extremes(self, *args, **kwargs):
        return self._counted("metric_extremes", super().metric_extremes(*args, **kwargs))

    def metrics_at_steps(self, *args, **kwargs):
        return self._counted("metrics_at_steps", super().metrics_at_steps(*args, **kwargs))


@pytest.fixture
def store(tmp_path):
    store = CountingStore(tmp_path / "metrics.db")
    yield store
    store.close()


def new_run(store: Store) -> str:
    return store.create_run(RunConfig())


def log_steps(store: Store, run_id: str, steps, keys=STEP_KEYS, value=None, steps_per_epoch: int = 1000) -> None:
    """Rows as the trainer logs them: per step, one row per key; value(key, steps) -> values (default: noise)."""
    steps = np.asarray(list(steps), dtype=np.int64)
    rng = np.random.default_rng(int(steps[0]) if steps.size else 0)
    columns = {key: (value(key, steps) if value else rng.normal(1.0, 0.1, steps.size)) for key in keys}
    rows = [(run_id, int(step), int((step - 1) // steps_per_epoch), key, float(columns[key][i]), 1.7e9 + float(step))
            for i, step in enumerate(steps) for key in keys]
    for start in range(0, len(rows), 100_000):
        store.log_batch(rows[start:start + 100_000])


def versions(store: Store, *run_ids: str) -> dict[str, float]:
    runs = store.list_runs()
    return {r: float(v) for r, v in zip(runs["run_id"], runs["queued_at"]) if r in run_ids}


def stored(store: Store, run_ids, keys=None) -> pd.DataFrame:
    """What the store holds, in the order the cache returns rows (run, key, step)."""
    frame = Store.get_metrics(store, run_ids, keys)
    return sort(frame)


def sort(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["run_id", "key", "step", "id"], ignore_index=True)[list(MetricsCache.COLUMNS)]


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(sort(got), sort(want), check_dtype=False)


def live_cache(store: Store, **options) -> MetricsCache:
    cache = MetricsCache(store, **options)
    cache.REREAD_S = 0.0  # every call reads the new rows (the page's ticks are 1.5 s apart)
    return cache


# ---- which rows ----------------------------------------------------------------------------------------------------
def test_returns_exactly_the_rows_of_the_keys_asked(store):
    a, b = new_run(store), new_run(store)
    log_steps(store, a, range(1, 301), keys=("loss", "lr", "grad_norm", "examples"))
    log_steps(store, b, range(1, 201), keys=("loss", "lr", "grad_norm", "examples"))
    store.log_batch([(a, 300, 0, "val_acc", 0.9, 1.7e9)])
    cache = live_cache(store)
    got = cache.get([a, b], versions(store, a, b), ["loss", "val_acc"])
    same_rows(got, stored(store, [a, b], ["loss", "val_acc"]))
    assert list(dict.fromkeys(got["run_id"])) == [a, b]  # grouped by run, then key, steps ascending
    for _, part in got.groupby(["run_id", "key"]):
        assert part["step"].is_monotonic_increasing
    assert cache.rows_read == len(got)  # no other key was read
    assert set(store.calls) == {"sample_metrics"}
    # a key no run has logged: nothing to read, an empty frame with the columns
    assert cache.get([a, b], versions(store, a, b), ["swa_val_acc"]).columns.tolist() == list(MetricsCache.COLUMNS)


def test_keys_are_listed_without_reading_rows(store):
    run = new_run(store)
    log_steps(store, run, range(1, 501), keys=("loss", "lr", "examples", "weight_norm/fc1"))
    cache = live_cache(store)
    assert cache.keys([run], versions(store, run)) == {"loss", "lr", "examples", "weight_norm/fc1"}
    assert cache.rows_read == 0 and store.rows == 0


def test_every_key_and_every_row_when_no_keys_are_given(store):
    run = new_run(store)
    log_steps(store, run, range(1, 3001), keys=("loss", "clipped"))
    cache = live_cache(store, max_rows=500, extreme_buckets=50, refine="off")
    same_rows(cache.get([run], versions(store, run)), stored(store, [run]))  # the run report counts every step
    assert len(cache.get([run], versions(store, run), ["loss"], exact=True)) == 3000
    assert len(cache.get([run], versions(store, run), ["loss"])) <= 500  # a chart: the coarse level


# ---- only the new rows ---------------------------------------------------------------------------------------------
def test_after_new_rows_only_those_are_read(store):
    runs = [new_run(store), new_run(store)]
    for run in runs:
        log_steps(store, run, range(1, 1001))
    cache = live_cache(store)
    cache.get(runs, versions(store, *runs), ["loss", "lr"])
    rows_before, calls_before = store.rows, store.calls.copy()
    for run in runs:
        log_steps(store, run, range(1001, 1101))
    got = cache.get(runs, versions(store, *runs), ["loss", "lr"])
    same_rows(got, stored(store, runs, ["loss", "lr"]))  # the latest points are there
    new_rows = 2 * 100 * len(STEP_KEYS)
    # one query per run from its newest id read: that row again (is it still there?) and the new rows of every key
    assert store.calls - calls_before == Counter({"get_metrics": 2})
    assert store.rows - rows_before == new_rows + len(runs)
    # nothing new: the same single query per run, no rows
    cache.get(runs, versions(store, *runs), ["loss", "lr"])
    assert store.rows - rows_before == new_rows + 2 * len(runs)


def test_new_keys_are_seen_as_they_appear(store):
    run = new_run(store)
    log_steps(store, run, range(1, 1001))
    cache = live_cache(store)
    assert "val_acc" not in cache.keys([run], versions(store, run))
    assert cache.get([run], versions(store, run), ["val_acc"]).empty
    store.log_batch([(run, 1000, 0, "val_acc", 0.8, 1.7e9), (run, 1000, 0, "ema_val_acc", 0.81, 1.7e9)])
    assert {"val_acc", "ema_val_acc"} <= cache.keys([run], versions(store, run))
    assert cache.get([run], versions(store, run), ["val_acc"])["value"].tolist() == [0.8]
    # a key first asked for now is read up to the newest row seen, then follows the new rows
    store.log_batch([(run, 2000, 1, "ema_val_acc", 0.85, 1.7e9)])
    assert cache.get([run], versions(store, run), ["ema_val_acc"])["value"].tolist() == [0.81, 0.85]


# ---- a resumed run -------------------------------------------------------------------------------------------------
def relogged(key, steps):
    return np.full(steps.size, 9.0)


@pytest.mark.parametrize("page_reads_before_the_worker_deletes", [False, True])
def test_a_resumed_run_is_read_again(store, page_reads_before_the_worker_deletes):
    run, other = new_run(store), new_run(store)
    log_steps(store, run, range(1, 3001))
    log_steps(store, other, range(1, 101))
    cache = live_cache(store, max_rows=500, extreme_buckets=50, refine="now")
    cache.get([run, other], versions(store, run, other), ["loss"])
    # interrupted at step 3000, resumed from its checkpoint at step 2000: re-queued (a new queued_at), then the
    # worker deletes the rows past step 2000 and logs them again
    store.update_status(run, "interrupted")
    store.resume_run(run)
    if page_reads_before_the_worker_deletes:  # the page sees the new version first and reads the old rows again
        assert cache.get([run], versions(store, run), ["loss"])["step"].max() == 3000
    store.delete_metrics_after(run, 2000)
    log_steps(store, run, range(2001, 2201), value=relogged)
    got = cache.get([run, other], versions(store, run, other), ["loss"])
    mine = got[got["run_id"] == run]
    # read again at the coarse level (2,200 rows > 500): rows of the store only, the re-logged ones up to the latest
    assert mine["step"].max() == 2200 and mine["step"].is_unique
    assert set(mine["id"]) <= set(stored(store, [run], ["loss"])["id"])
    assert (mine.loc[mine["step"] > 2000, "value"] == 9.0).all()
    same_rows(cache.get([run], versions(store, run), ["loss"], exact=True), stored(store, [run], ["loss"]))
    same_rows(got[got["run_id"] == other], stored(store, [other], ["loss"]))
    log_steps(store, run, range(2201, 2301), value=relogged)  # and every row logged from then on
    assert cache.get([run], versions(store, run), ["loss"])["step"].tolist()[-100:] == list(range(2201, 2301))


def test_rows_rewritten_without_a_new_version_are_read_again(store):
    run = new_run(store)
    log_steps(store, run, range(1, 401))
    cache = live_cache(store)
    cache.get([run], versions(store, run), ["loss", "lr"])
    store.delete_metrics_after(run, 300)  # the newest row this cache read is gone
    log_steps(store, run, range(301, 351), value=relogged)
    same_rows(cache.get([run], versions(store, run), ["loss", "lr"]), stored(store, [run], ["loss", "lr"]))
    store.delete_run(run)
    assert cache.get([run], versions(store, run), ["loss"]).empty


# ---- the coarse level ----------------------------------------------------------------------------------------------
def spiky(key, steps):
    """A decaying curve with noise, a spike and a dip well inside the history, and the global extremes elsewhere."""
    rng = np.random.default_rng(len(key))
    values = 2.0 * np.exp(-steps / 5000) + rng.normal(0, 0.05, steps.size)
    values[steps == 7777] = 50.0  # the maximum
    values[steps == 12345] = -50.0  # the minimum
    values[steps == 15001] = 10.0  # a spike, not the maximum
    return values


@pytest.mark.parametrize("refine", ["now", "background"])
def test_coarse_level_keeps_the_ends_and_the_extremes_within_its_budget(store, refine):
    run = new_run(store)
    log_steps(store, run, range(1, 20_001), keys=("loss",), value=spiky)
    cache = live_cache(store, max_rows=600, extreme_buckets=100, refine=refine)
    first = cache.get([run], versions(store, run), ["loss"])
    assert len(first) <= (600 if refine == "now" else 600 - 2 * 100)  # evenly spaced steps at once...
    assert cache.wait_refined(timeout=30)
    got = cache.get([run], versions(store, run), ["loss"])  # ...and the extremes once read
    assert len(got) <= 600
    steps, values = got["step"].to_numpy(), got["value"].to_numpy()
    assert steps[0] == 1 and steps[-1] == 20_000 and np.all(np.diff(steps) > 0)
    assert {7777, 12345, 15001} <= set(steps.tolist())
    assert values.max() == 50.0 and values.min() == -50.0
    # evenly spaced: no gap between kept steps much wider than the budget's spacing
    assert np.diff(steps).max() <= math.ceil(20_000 / (600 - 2 * 100 - 1))
    want = stored(store, [run], ["loss"]).set_index("id")
    assert np.allclose(want.loc[got["id"], "value"].to_numpy(), values)  # real rows, not averages
    # then every new row joins it: the latest points are always there
    log_steps(store, run, range(20_001, 20_051), keys=("loss",))
    latest = cache.get([run], versions(store, run), ["loss"])
    assert latest["step"].tolist()[-50:] == list(range(20_001, 20_051))


def test_store_sample_and_extremes_stay_within_their_budgets(store):
    run = new_run(store)
    log_steps(store, run, range(1, 5_001), keys=("loss",), value=spiky)
    log_steps(store, run, range(5_001, 5_101), keys=("loss",), value=spiky)  # newer rows, past upto_id below
    upto = store.last_metric_id(run) - 100
    for budget in (2, 3, 7, 100, 999):
        sample = store.sample_metrics(run, "loss", budget, upto_id=upto)
        assert sample.attrs["sampled"] and len(sample) <= budget
        assert sample["step"].iloc[0] == 1 and sample["step"].iloc[-1] == 5_000
    whole = store.sample_metrics(run, "loss", 5_000, upto_id=upto)
    assert not whole.attrs["sampled"] and whole["step"].tolist() == list(range(1, 5_001))
    extremes = store.metric_extremes(run, "loss", 10, upto_id=upto)
    history = whole["value"]
    assert len(extremes) <= 20 and extremes["step"].max() <= 5_000
    assert extremes["value"].max() == history.max() and extremes["value"].min() == history.min()
    assert store.metric_keys(run) == ["loss"] and store.metric_keys("nope") == [] and store.last_metric_id("nope") == 0


def test_cold_read_of_a_big_history_reads_far_fewer_rows_than_it_holds(store):
    runs = [new_run(store), new_run(store)]
    for run in runs:  # 2 runs x 50,000 steps x 3 keys
        log_steps(store, run, range(1, 50_001))
    held = 2 * 50_000 * len(STEP_KEYS)
    cache = live_cache(store, refine="off")
    got = cache.get(runs, versions(store, *runs), list(STEP_KEYS))
    assert len(got) <= 2 * len(STEP_KEYS) * MetricsCache.MAX_ROWS
    assert store.rows == cache.rows_read == len(got) < held / 20
    for (_, key), part in got.groupby(["run_id", "key"]):
        assert part["step"].iloc[0] == 1 and part["step"].iloc[-1] == 50_000


def test_examples_axis_gets_an_x_for_every_coarse_point(store):
    run = new_run(store)
    log_steps(store, run, range(1, 10_001), keys=("loss", "examples"),
              value=lambda key, steps: steps * 64.0 if key == "examples" else spiky(key, steps))
    store.log_batch([(run, step, step // 1000 - 1, "val_acc", 0.9, 1.7e9) for step in range(1000, 10_001, 1000)])
    cache = live_cache(store, max_rows=400, extreme_buckets=50, refine="now")
    got = cache.get([run], versions(store, run), ["loss", "val_acc", "examples"])
    examples = got[got["key"] == "examples"]
    assert set(got.loc[got["key"] != "examples", "step"]) <= set(examples["step"])
    assert (examples["value"] == examples["step"] * 64.0).all()
    lookups = store.calls["metrics_at_steps"]
    log_steps(store, run, range(10_001, 10_101), keys=("loss", "examples"),
              value=lambda key, steps: steps * 64.0 if key == "examples" else spiky(key, steps))
    again = cache.get([run], versions(store, run), ["loss", "val_acc", "examples"])
    assert store.calls["metrics_at_steps"] == lookups  # new rows bring their own x: nothing looked up again
    assert set(again.loc[again["key"] != "examples", "step"]) <= set(again.loc[again["key"] == "examples", "step"])


def test_a_coarse_history_grown_long_by_new_rows_is_read_coarse_again(store):
    run = new_run(store)
    log_steps(store, run, range(1, 101), keys=("loss",))
    cache = live_cache(store, max_rows=200, extreme_buckets=20, refine="off")
    assert len(cache.get([run], versions(store, run), ["loss"])) == 100  # short: whole
    log_steps(store, run, range(101, 501), keys=("loss",))
    assert len(cache.get([run], versions(store, run), ["loss"])) == 500  # new rows come whole...
    log_steps(store, run, range(501, 1001), keys=("loss",))
    got = cache.get([run], versions(store, run), ["loss"])  # ...until past MetricsCache.REGROW x max_rows
    assert len(got) <= 200 and got["step"].iloc[0] == 1 and got["step"].iloc[-1] == 1000
    assert len(cache.get([run], versions(store, run), ["loss"], exact=True)) == 1000


def test_bad_options_are_refused(store):
    with pytest.raises(ValueError, match="refine"):
        MetricsCache(store, refine="later")
    with pytest.raises(ValueError, match="no room"):
        MetricsCache(store, max_rows=100, extreme_buckets=50)
    with pytest.raises(ValueError, match="max_rows"):
        store.sample_metrics("run", "loss", 1)


# ---- the worker pool's warm-up (app/ui/state.py) -------------------------------------------------------------------
class FakeRunner:
    def __init__(self, error: Exception | None = None):
        self.error, self.calls = error, 0

    def warm_pool(self) -> int:
        self.calls += 1
        if self.error:
            raise self.error
        return 2


def test_pool_warmup_runs_in_the_background_and_keeps_its_error(monkeypatch):
    from app.ui.state import PoolWarmup

    ok = PoolWarmup(FakeRunner()).start()
    assert ok.done.wait(10) and ok.started == 2 and ok.error is None
    failed = PoolWarmup(FakeRunner(OSError("fork failed"))).start()
    assert failed.done.wait(10) and failed.error == "OSError: fork failed"
    monkeypatch.setenv("TRAINLENS_WARM_POOL", "0")
    assert not PoolWarmup.enabled()
    monkeypatch.setenv("TRAINLENS_WARM_POOL", "1")
    assert PoolWarmup.enabled()


@pytest.mark.timeout(300)
def test_the_dashboard_warms_the_pool_once_and_shows_a_failure(monkeypatch):
    from ui_helpers import fresh_app

    from app.ui import state
    from engine.runs.runner import Runner

    calls = []

    def failing(self):
        calls.append(self)
        raise RuntimeError("cannot start workers here")

    monkeypatch.setattr(Runner, "warm_pool", failing)
    monkeypatch.setenv("TRAINLENS_WARM_POOL", "1")
    at = fresh_app()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warmup = state.pool_warmup()
    assert warmup is not None and warmup.done.wait(30)
    at.run()  # the next rerun shows why the pool is cold; the page itself works
    assert not at.exception
    assert any("could not be started in advance" in w.value and "cannot start workers here" in w.value
               for w in at.sidebar.warning)
    at.switch_page("views/runs.py").run()
    assert not at.exception and len(calls) == 1  # once per server process, not per rerun or page


def test_the_cache_holds_at_most_max_runs_least_recently_used_out(store):
    runs = [new_run(store) for _ in range(MetricsCache.MAX_RUNS + 8)]
    for run_id in runs:
        log_steps(store, run_id, range(1, 51))
    cache = live_cache(store)
    for run_id in runs:  # a user opening one run after another
        cache.get([run_id], versions(store, run_id), keys=["loss"])
    held = cache.held_runs()
    assert len(held) == MetricsCache.MAX_RUNS and held == runs[-MetricsCache.MAX_RUNS:]
    cache.get([runs[-MetricsCache.MAX_RUNS]], versions(store, runs[-MetricsCache.MAX_RUNS]), keys=["loss"])
    assert cache.held_runs()[-1] == runs[-MetricsCache.MAX_RUNS]  # used again: now the most recent
    # a Compare view of more runs than the bound still gets every one of them, with every row
    wide = runs[:MetricsCache.MAX_RUNS + 4]
    got = cache.get(wide, versions(store, *wide), keys=["loss"])
    same_rows(got, stored(store, wide, ["loss"]))
    assert set(cache.held_runs()) == set(wide)


def test_coarse_keys_do_not_wait_for_a_read_in_progress(store):
    import threading
    import time

    run_id = new_run(store)
    log_steps(store, run_id, range(1, 2001), keys=("loss",))
    cache = live_cache(store, max_rows=500, extreme_buckets=50, refine="off")
    cache.get([run_id], versions(store, run_id), ["loss"])
    first = cache.coarse_keys([run_id])
    assert first == {run_id: ["loss"]}
    held = threading.Event()
    done = threading.Event()

    def reader():  # another session's figure build holding the cache
        with cache._lock:
            held.set()
            done.wait(5.0)

    thread = threading.Thread(target=reader)
    thread.start()
    assert held.wait(5.0)
    asked = time.monotonic()
    assert cache.coarse_keys([run_id]) == first  # the last answer, at once
    assert time.monotonic() - asked < 0.5
    done.set()
    thread.join()
