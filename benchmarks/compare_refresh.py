"""Benchmark: the server-side figure work of one Compare-page refresh.

Synthesises 8 runs x 50,000 steps in the store's long metrics format (loss, lr, grad_norm,
clipped, examples every step; train/val metrics, EMA twins and best_epoch per epoch), then times
one refresh tick: building the loss (smoothing 0.6), lr, grad_norm and val_acc figures and
serialising each with fig.to_json(), as Streamlit does before sending them to the browser.
Prints the median milliseconds per tick, the split per figure, and the points sent per trace.
Then the whole server-side tick of the page as it runs: the same data in a real SQLite store, and per tick
the runs query, the metrics read through app.server.metrics_cache.MetricsCache (only the keys each chart draws, long
histories at its coarse level), every chart of the Compare page (its CSV data is made on click, not per
tick), the clipped-fraction chart and the final-metrics table. The cold tick is a fresh server's first (an empty
cache; median over --repeats fresh caches), the warm tick one with 100 new steps per run since the last (median
over --repeats ticks).
Targets (issue 23): cold <= 1 s, warm <= 200 ms.

    python benchmarks/compare_refresh.py [--runs 8] [--steps 50000] [--repeats 7] [--store-only] [--x-axis step]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.charts.metrics import ChartOptions, metric_chart  # noqa: E402

STEPS_PER_EPOCH = 1000
BATCH = 64


def synthetic_runs(n_runs: int, n_steps: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics_df, runs_df) shaped like the store's, with plausible noisy curves."""
    rng = np.random.default_rng(seed)
    frames, runs = [], []
    step = np.arange(1, n_steps + 1)
    epoch = (step - 1) // STEPS_PER_EPOCH
    n_epochs = int(epoch[-1]) + 1
    for r in range(n_runs):
        run_id = f"run{r:02d}"
        lr = 1e-3 * (1 + r % 4)
        wall = 1.7e9 + r * 10 + np.cumsum(rng.uniform(0.01, 0.03, n_steps))
        loss = 2.3 * np.exp(-step / (5000 * (1 + r % 3))) + 0.05 + rng.normal(0, 0.08, n_steps).clip(-0.04)
        grad_norm = np.abs(rng.normal(1.0, 0.4, n_steps)) / (1 + step / 20000)
        lrs = lr * 0.5 * (1 + np.cos(np.pi * step / n_steps))
        step_values = {
            "loss": loss, "lr": lrs, "grad_norm": grad_norm,
            "clipped": (grad_norm > 1.0).astype(np.float64), "examples": step * float(BATCH),
        }
        for key, values in step_values.items():
            frames.append(pd.DataFrame({"run_id": run_id, "step": step, "epoch": epoch, "key": key,
                                        "value": values, "wall_time": wall}))
        ends = np.arange(1, n_epochs + 1) * STEPS_PER_EPOCH
        ends = ends[ends <= n_steps]
        acc = 0.98 - 0.5 * np.exp(-np.arange(ends.size) / (3 + r % 3)) + rng.normal(0, 0.005, ends.size)
        epoch_values = {
            "train_loss": loss[ends - 1], "train_acc": acc + 0.01, "val_loss": loss[ends - 1] + 0.05,
            "val_acc": acc, "val_precision": acc, "val_recall": acc, "val_f1": acc,
            "examples_per_s": rng.uniform(2000, 3000, ends.size), "ema_val_acc": acc + 0.003,
        }
        for key, values in epoch_values.items():
            frames.append(pd.DataFrame({"run_id": run_id, "step": ends, "epoch": epoch[ends - 1], "key": key,
                                        "value": values, "wall_time": wall[ends - 1]}))
        frames.append(pd.DataFrame({"run_id": [run_id], "step": [ends[-1]], "epoch": [epoch[ends[-1] - 1]],
                                    "key": ["best_epoch"], "value": [float(np.argmax(acc))],
                                    "wall_time": [wall[-1]]}))
        runs.append({"run_id": run_id, "name": f"adam lr={lr:g} seed={r}", "group": "", "status": "completed",
                     "created_at": wall[0] - 1, "started_at": wall[0], "finished_at": wall[-1],
                     "cfg.optimizer": "adam", "cfg.lr": lr, "cfg.seed": r, "cfg.batch_size": BATCH})
    metrics = pd.concat(frames, ignore_index=True).sort_values(["run_id", "step"], kind="stable", ignore_index=True)
    return metrics, pd.DataFrame(runs)


CHARTS = (("loss", 0.6), ("lr", 0.0), ("grad_norm", 0.0), ("val_acc", 0.0))


def refresh(metrics: pd.DataFrame, runs: pd.DataFrame, timings: dict[str, list[float]]) -> dict[str, tuple[int, int]]:
    """One tick: build and serialise each chart; per chart, the largest trace and the JSON bytes."""
    sent = {}
    for key, smoothing in CHARTS:
        start = time.perf_counter()
        fig = metric_chart(metrics, runs, key, ChartOptions(smoothing=smoothing, max_points=1000)).figure
        payload = fig.to_json()
        timings[key].append(time.perf_counter() - start)
        sent[key] = (max(len(trace.x) for trace in fig.data), len(payload))
    return sent


def measure(metrics: pd.DataFrame, runs: pd.DataFrame, repeats: int, title: str) -> float:
    """Print the per-chart and per-tick medians; returns the tick median in ms."""
    refresh(metrics, runs, {key: [] for key, _ in CHARTS})  # warm-up: plotly validators, numpy paths
    timings: dict[str, list[float]] = {key: [] for key, _ in CHARTS}
    ticks, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        sent = refresh(metrics, runs, timings)
        ticks.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(title)
    for key, _ in CHARTS:
        points, size = sent[key]
        print(f"  {key:<10} {1000 * statistics.median(timings[key]):7.1f} ms   "
              f"max points per trace {points:5d}   JSON {size / 1024:6.0f} KiB")
    tick = 1000 * statistics.median(ticks)
    # on a shared machine the CPU time of this process is the steadier figure
    print(f"  median per tick: {tick:.1f} ms wall (min {1000 * min(ticks):.1f}), "
          f"{1000 * statistics.median(cpu):.1f} ms CPU, over {repeats} ticks; target <= 200 ms")
    return tick


# The Compare page's charts (app/views/compare.py CHARTS): (title, keys, x axis forced when the page's is "step")
PAGE_CHARTS = [("Training loss (per step)", ["loss"], None), ("Validation accuracy", ["val_acc"], "epoch"),
               ("Train vs validation loss", ["train_loss", "val_loss"], "epoch"), ("Learning rate", ["lr"], None),
               ("Gradient norm before clipping", ["grad_norm"], None)]
STEP_KEYS = ("loss", "lr", "grad_norm", "clipped", "examples")


def page_tick(cache, store, run_ids: list[str], x_axis: str, smoothing: float) -> int:
    """The server-side work of one refresh of the Compare page's charts, as app/views/compare.py does it for the
    session that builds them (the others share them): the runs query, the metric keys, each chart reading only its
    keys through the cache and encoded once as JSON, the clipped-fraction chart and the final-metrics table. The
    CSV data is made when its button is clicked, not per refresh. Returns the points plotted."""
    from dataclasses import replace

    from app.charts.metrics import (FINAL_TABLE_KEYS, ChartOptions, clipped_fraction_figure, final_metrics_table,
                                    metric_chart)
    from app.charts.series import chart_keys
    from engine.records import is_epoch_level

    runs_now = store.list_runs(kind="train")
    wanted = set(run_ids)
    versions = {r: float(v) for r, v in zip(runs_now["run_id"], runs_now["queued_at"]) if r in wanted}
    selected = runs_now[runs_now["run_id"].isin(run_ids)]
    keys_present = cache.keys(run_ids, versions)
    options = ChartOptions(x_axis=x_axis, smoothing=smoothing)
    points = 0
    for title, keys, forced_x in PAGE_CHARTS:
        if not keys_present.intersection(keys):
            continue
        chart_options = replace(options, x_axis=x_axis if forced_x is None or x_axis != "step" else forced_x)
        if all(is_epoch_level(k) for k in keys):
            chart_options = replace(chart_options, smoothing=0.0)
        frame = cache.get(run_ids, versions, chart_keys(keys, chart_options.x_axis))
        built = metric_chart(frame, selected, keys if len(keys) > 1 else keys[0], chart_options)
        built.figure.to_json()
        points += sum(len(curve.x) for curve in built.curves)
    clipped = cache.get(run_ids, versions, chart_keys(["clipped"], x_axis))
    if clipped.loc[clipped["key"] == "clipped", "value"].max() > 0:
        clipped_fraction_figure(clipped, selected, 100, options).to_json()
    final_metrics_table(cache.get(run_ids, versions, list(FINAL_TABLE_KEYS)),
                        selected.reset_index(drop=True))
    return points


def store_ticks(metrics: pd.DataFrame, runs: pd.DataFrame, repeats: int, x_axis: str = "step") -> dict[str, float]:
    """The Compare page's server-side tick against a real SQLite store: cold (a fresh server's first tick, its
    cache empty) and warm (100 new steps per run between ticks, only those read). Prints them; returns the medians
    in seconds (cold, cold_cpu, warm, warm_cpu) for benchmarks/cold_paths.py."""
    import tempfile

    from app.server.metrics_cache import MetricsCache
    from engine.config import RunConfig
    from engine.runs.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        ids = {}
        for run in runs.itertuples():
            ids[run.run_id] = store.create_run(RunConfig(name=run.name))
        start = time.perf_counter()
        rows = metrics.assign(run_id=metrics["run_id"].map(ids))[["run_id", "step", "epoch", "key", "value", "wall_time"]]
        for chunk in range(0, len(rows), 200_000):
            store.log_batch(list(rows.iloc[chunk:chunk + 200_000].itertuples(index=False, name=None)))
        print(f"store: wrote {len(rows):,} rows in {time.perf_counter() - start:.1f} s; Compare page ticks, "
              f"x axis {x_axis}, smoothing 0.6")
        run_ids = list(ids.values())
        page_tick(MetricsCache(store, refine="off"), store, run_ids, x_axis, 0.6)  # imports, plotly validators

        # cold: a fresh cache each time (a freshly started server); the extremes of the long histories are read by
        # the cache's background thread after the tick, and timed apart
        cold, cold_cpu, refine = [], [], []
        for _ in range(repeats):
            cache = MetricsCache(store)
            start, start_cpu = time.perf_counter(), time.process_time()
            points = page_tick(cache, store, run_ids, x_axis, 0.6)
            cold.append(time.perf_counter() - start)
            cold_cpu.append(time.process_time() - start_cpu)
            read_cold = cache.rows_read
            cache.wait_refined()
            refine.append(time.perf_counter() - start - cold[-1])
        print(f"  cold tick (first refresh of a fresh server): median {1000 * statistics.median(cold):.0f} ms wall, "
              f"{1000 * statistics.median(cold_cpu):.0f} ms CPU (min {1000 * min(cold):.0f}, max {1000 * max(cold):.0f}) "
              f"over {repeats} fresh caches; read {read_cold:,} of {len(rows):,} rows, plotted {points:,} points; "
              "target <= 1000 ms")
        print(f"  then the extremes of the long histories, in the background: median "
              f"{1000 * statistics.median(refine):.0f} ms more, {cache.rows_read - read_cold:,} rows")

        # warm: the last cache, 100 new steps per run between ticks (a live run adds them between 1.5 s refreshes)
        last_step = int(metrics["step"].max())
        warm, warm_cpu, read = [], [], []
        for _ in range(repeats):
            new = []
            for run_id in run_ids:
                for step in range(last_step + 1, last_step + 101):
                    new += [(run_id, step, 0, key, 0.1, time.time()) for key in STEP_KEYS]
            last_step += 100
            store.log_batch(new)
            time.sleep(cache.REREAD_S + 0.1)  # ticks are 1.5 s apart: each one reads the new rows
            before = cache.rows_read
            start, start_cpu = time.perf_counter(), time.process_time()
            page_tick(cache, store, run_ids, x_axis, 0.6)
            warm.append(time.perf_counter() - start)
            warm_cpu.append(time.process_time() - start_cpu)
            read.append(cache.rows_read - before)
        print(f"  warm tick (runs + new rows + 5 charts + clipped chart + final table): median "
              f"{1000 * statistics.median(warm):.0f} ms wall, {1000 * statistics.median(warm_cpu):.0f} ms CPU "
              f"(min {1000 * min(warm):.0f}, max {1000 * max(warm):.0f}) over {repeats} ticks; rows read per tick: "
              f"{', '.join(f'{n:,}' for n in read)} ({len(new):,} new rows per tick; more only for the examples "
              "lookups at the steps of extremes read in the background); target <= 200 ms")
        return {"cold": statistics.median(cold), "cold_cpu": statistics.median(cold_cpu),
                "warm": statistics.median(warm), "warm_cpu": statistics.median(warm_cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--store-only", action="store_true", help="only the page ticks against a real store")
    parser.add_argument("--x-axis", default="step", choices=("step", "epoch", "examples", "wall_time"),
                        help="the Compare page's x axis for the page ticks")
    args = parser.parse_args()
    metrics, runs = synthetic_runs(args.runs, args.steps)
    print(f"{args.runs} runs x {args.steps} steps: {len(metrics):,} metric rows; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.store_only:
        store_ticks(metrics, runs, args.repeats, args.x_axis)
        return
    measure(metrics, runs, args.repeats, "run_id/key as str columns (pandas default from SQL):")
    # the store reader can hand the two repeated string columns over as categoricals: filtering
    # by key then compares small integer codes instead of millions of strings
    categorical = metrics.astype({"run_id": "category", "key": "category"})
    measure(categorical, runs, args.repeats, "run_id/key as category columns:")
    # store.get_metrics returns rows by insertion id: runs trained side by side interleave in
    # commit batches (here 100 steps of one run, then the next run's)
    batch = (metrics["step"].to_numpy() - 1) // 100
    interleaved = metrics.iloc[np.lexsort((metrics["step"].to_numpy(), metrics["run_id"].to_numpy(), batch))]
    measure(interleaved.reset_index(drop=True), runs, args.repeats, "str columns, runs interleaved by batch:")
    store_ticks(metrics, runs, args.repeats, args.x_axis)


if __name__ == "__main__":
    main()
