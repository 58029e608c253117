"""A worker's first run starts fast: the warm-up done before the first claim (engine/runs/warmup.py) and the sink
that writes a run's first rows at once instead of after its flush interval (engine.runs.worker.StoreSink)."""

from __future__ import annotations

import sys
import time

import torch

from engine.config import RunConfig
from engine.runs.store import Store


def test_warm_up_imports_the_loop_and_reads_the_default_dataset_without_touching_the_random_state(monkeypatch):
    from engine.data import loading
    from engine.runs.warmup import warm_up

    loading._mnist5k_arrays.cache_clear()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    warm_up()
    assert "engine.train" in sys.modules and "torch._dynamo" in sys.modules  # torch.optim's first-use import
    assert loading._mnist5k_arrays.cache_info().currsize == 1  # a run's load_dataset now only indexes it
    assert torch.equal(torch.get_rng_state(), state)


def test_a_failed_warm_up_is_logged_and_never_raised(monkeypatch):
    from engine.data import loading
    from engine.runs.warmup import warm_up

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(loading, "load_run_split", broken)
    logged = []
    warm_up(logged.append)
    assert len(logged) == 1 and "no space left on device" in logged[0]


def test_a_runs_first_rows_are_written_without_waiting_for_the_flush_interval(trainlens_home, monkeypatch):
    from engine.runs import worker

    monkeypatch.setattr(worker, "FLUSH_S", 3600.0)  # later rows wait an hour: only the first ones go at once
    store = Store()
    run_id = store.create_run(RunConfig(model="mlp", hidden=16, depth=1, epochs=1, train_limit=100).validate())
    lease = store.claim_next("w", "cpu")["lease"]
    sink = worker.StoreSink(store, run_id, lease=lease)
    try:
        sink.log(1, 0, {"loss": 2.3, "lr": 0.01})
        deadline = time.monotonic() + 30
        while store.count_metrics(run_id) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.count_metrics(run_id) == 2
        sink.log(2, 0, {"loss": 2.2})
        time.sleep(0.3)
        assert store.count_metrics(run_id) == 2  # batched: written with the next flush (here: at close)
    finally:
        assert sink.close() is True
    assert store.count_metrics(run_id) == 3
