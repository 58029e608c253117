"""Thirty sessions watching one view share its figures, and live refresh intervals stretch under load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ui_helpers import fresh_app

from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store

pytestmark = pytest.mark.timeout(300)


def test_a_figure_is_built_once_for_sessions_asking_at_the_same_moment_and_again_for_new_data():
    from app.server.figure_cache import FigureCache

    cache, calls = FigureCache(), []

    def build():
        calls.append(1)
        time.sleep(0.2)  # long enough for every thread to ask while it is being built
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("view", 1), build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    cache.get(("view", 2), build)  # another view
    assert len(calls) == 2
    cache.get(("view", 2), build, version="step 10")  # a new data version: built again
    assert len(calls) == 3
    cache.get(("view", 2), build, version="step 11", max_age=60.0)  # live: a value built just now still serves
    assert len(calls) == 3
    cache.get(("view", 2), build, version="step 12")  # ended runs ask for the exact version
    assert len(calls) == 4


def finished_runs(n: int = 3) -> list[str]:
    store = Store()
    ids = []
    for seed in range(n):
        run_id = store.create_run(RunConfig(seed=seed), name=f"seed {seed}")
        rng = np.random.default_rng(seed)
        store.log_batch([(run_id, step, 0, "loss", float(2.3 * np.exp(-step / 40) + rng.normal(0, .05)), step * .1)
                         for step in range(200)])
        store.update_status(run_id, RunStatus.COMPLETED)
        ids.append(run_id)
    return ids


def compare_session(run_ids: list[str], clear: bool):
    at = fresh_app() if clear else _app_keeping_caches()
    at.query_params["runs"] = ",".join(run_ids)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _app_keeping_caches():
    from streamlit.testing.v1 import AppTest
    from ui_helpers import MAIN

    return AppTest.from_file(str(MAIN), default_timeout=90)


@pytest.mark.parametrize("sharing", [True, False])
def test_sessions_watching_the_same_compare_view_share_its_figures(trainlens_home, monkeypatch, sharing):
    monkeypatch.setenv("TRAINLENS_SHARED_FIGURES", "1" if sharing else "0")
    run_ids = finished_runs()
    first = compare_session(run_ids, clear=True)
    from app.ui.state import shared_figures

    builds = shared_figures().builds
    sessions = [compare_session(run_ids, clear=False) for _ in range(3)]
    charts = [[c.proto.spec for c in at.get("plotly_chart")] for at in [first] + sessions]
    assert charts[0] and all(c == charts[0] for c in charts)  # every session sees the same figures
    if sharing:
        assert builds >= 1 and shared_figures().builds == builds  # ...built once, by the first session
        assert shared_figures().hits >= 3 * builds
    else:
        assert shared_figures().builds == 0


def test_refresh_intervals_stretch_when_the_server_would_need_more_than_the_budget():
    from app.server.load import CORE_BUDGET, MAX_STRETCH, LoadMeter

    def meter_at(cores: float, stretch: float) -> LoadMeter:
        """A meter whose process clock advanced `cores` CPU seconds per second over 10 s of ticks."""
        meter = LoadMeter(window=10.0)
        for i in range(101):
            meter.sample(stretch, now=100.0 + i * 0.1, cpu=50.0 + cores * i * 0.1)
        return meter

    assert LoadMeter().stretch() == 1.0  # no ticks yet
    laptop = meter_at(0.05, 1.0)
    assert laptop.demand_cores(now=110.0) == pytest.approx(0.05) and laptop.stretch(now=110.0) == 1.0
    busy = meter_at(1.2, 1.0)  # thirty students at the pages' own intervals
    assert busy.stretch(now=110.0) == pytest.approx(min(MAX_STRETCH, 1.2 / CORE_BUDGET))
    # ticks drawn at a stretched interval count for what they would cost at the page's own interval
    stretched = meter_at(0.6, 3.0)
    assert stretched.demand_cores(now=110.0) == pytest.approx(1.8)
    assert meter_at(10.0, 1.0).stretch(now=110.0) == MAX_STRETCH
    # a window with no ticks (the class went home): back to the pages' own intervals
    assert busy.stretch(now=200.0) == 1.0
    # the real clock: the live meter sees the CPU this process burned (the share of a core it got: on a loaded
    # machine a busy thread gets less than one, so the expectation is measured, not assumed)
    live = LoadMeter(window=10.0)
    cpu, wall = time.process_time(), time.monotonic()
    live.sample(1.0)
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        sum(range(1000))
    live.sample(1.0)
    burned = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert live.demand_cores() == pytest.approx(burned, rel=0.25, abs=0.05)


def test_a_stale_live_figure_is_served_while_another_session_rebuilds_it():
    from app.server import figure_cache
    from app.server.figure_cache import FigureCache

    cache = FigureCache()
    cache.get("chart", lambda: "old", version=1, max_age=0.05)
    time.sleep(0.1)  # stale now
    started, release = threading.Event(), threading.Event()

    def slow_build():
        started.set()
        release.wait(5.0)
        return "new"

    builder = threading.Thread(target=lambda: cache.get("chart", slow_build, version=2, max_age=0.05))
    builder.start()
    assert started.wait(5.0)
    asked = time.monotonic()
    assert cache.get("chart", lambda: "never", version=2, max_age=0.05) == "old"  # no waiting for the build
    assert time.monotonic() - asked < 0.5
    release.set()
    builder.join()
    assert cache.get("chart", lambda: "never", version=2, max_age=0.05) == "new"
    # ended runs ask for the exact version: never a stale one
    assert cache.get("chart", lambda: "exact", version=3) == "exact"

    # a busy server: one tick rebuilds at most one stale value, the others show as they were
    busy = FigureCache()
    for key in "abc":
        busy.get(key, lambda key=key: key + "0", version=0, max_age=0.05)
    time.sleep(0.1)
    figure_cache.start_tick()
    got = [busy.get(key, lambda key=key: key + "1", version=1, max_age=0.05, spread=True) for key in "abc"]
    assert got == ["a1", "b0", "c0"]
    figure_cache.start_tick()  # the next tick (of any session) takes the next one
    assert busy.get("b", lambda: "b1", version=1, max_age=0.05, spread=True) == "b1"
    # without load (a laptop), one tick brings every chart up to date
    figure_cache.start_tick()
    time.sleep(0.1)
    assert [busy.get(key, lambda key=key: key + "2", version=2, max_age=0.05) for key in "abc"] == ["a2", "b2", "c2"]
    # a value far past its age is rebuilt even on a busy server (never shown minutes old)
    old = FigureCache()
    old.get("x", lambda: "x0", version=0, max_age=0.01)
    time.sleep(0.1)
    figure_cache.start_tick()
    old.get("y", lambda: "y0", version=0, max_age=0.01)
    figure_cache.start_tick()
    time.sleep(0.02)
    assert old.get("y", lambda: "y1", version=1, max_age=0.01, spread=True) == "y1"  # this tick's one rebuild
    assert old.get("x", lambda: "x1", version=1, max_age=0.01, spread=True) == "x0"  # within 3x age + 2 s
    monkey_old = old._entries["x"]
    old._entries["x"] = (monkey_old[0], monkey_old[1] - 10.0, monkey_old[2])  # built 10 s ago
    assert old.get("x", lambda: "x1", version=1, max_age=0.01, spread=True) == "x1"
