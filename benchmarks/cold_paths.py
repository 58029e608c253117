"""Benchmark of the whole chain a class meets first (issue 23), each figure printed against its target.

    python benchmarks/cold_paths.py [--quick] [--only page,start,compare,viewer,loop,stats]

Figures, each with the load average when it was taken (on a shared machine a figure taken under load is inflated:
compare the ratios, or rerun on an idle machine):
  page     first page drawn after `streamlit run` (fresh server, fresh headless Chromium: the Start button of "/")
           target <= 2.5 s                                                      (benchmarks/first_point.py);
           and, hardly moved by the machine's load, the CPU seconds of a fresh server's first script run until
           that button is drawn (a fresh interpreter with streamlit imported, no browser; own goal <= 1 s)
  start    click Start -> first point drawn on the page, with the pool warmed at start (the click comes --think
           seconds after the page, as a user reads it) target <= 1.5 s; with workers started on demand, target
           <= 4 s: after the warmed pool idled out (the worker forks from the template), and with nothing
           pre-started (TRAINLENS_WARM_POOL=0: a fresh interpreter)          (benchmarks/first_point.py)
  compare  the Compare page's server-side tick over 8 runs x 50,000 steps in a real store: cold (a fresh server's
           first) <= 1 s, live (100 new steps per run since the last) <= 200 ms (benchmarks/compare_refresh.py)
  viewer   the server CPU one viewer of 8 live runs costs: one Compare tab, 8 runs logging 20 steps/s each
           target <= 0.1 core                                                   (benchmarks/class_load.py)
  loop     engine loop / bare PyTorch loop, same model and data, metrics every step to SQLite, target >= 0.95
                                                                                (benchmarks/throughput.py)
  stats    the overhead of layer statistics at the default interval, from per-step timings, target <= 5%
                                                                                (benchmarks/layer_stats_overhead.py)
--quick: one trial per browser figure and fewer repeats elsewhere (about 6 minutes on an idle 2-core machine);
without it three trials and more repeats (about 15 minutes). Needs Chromium at /usr/bin/chromium, playwright and
psutil (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

FIGURES = ("page", "start", "compare", "viewer", "loop", "stats")
lines: list[str] = []  # the summary, printed again at the end


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def report(name: str, value: float, target: float, unit: str, *, at_least: bool = False, note: str = "") -> None:
    ok = value >= target if at_least else value <= target
    shown = f"{value:.2f}" if unit == "" else f"{value:.2f} {unit}"
    wanted = f"{'>=' if at_least else '<='} {target:g}{'' if unit == '' else ' ' + unit}"
    line = f"  {name:<52} {shown:>10}  target {wanted:<10} {'ok  ' if ok else 'MISS'}  ({load()}{note})"
    lines.append(line)
    print(line, flush=True)


PAGE_SCRIPT = r"""
import os, sys, tempfile, time
sys.path.insert(0, {root!r})
os.environ.update({{"TRAINLENS_HOME": tempfile.mkdtemp(), "TRAINLENS_WARM_POOL": "0"}})
import streamlit as st
from streamlit.testing.v1 import AppTest
seen = {{}}
button = st.button
def spy(label, *args, **kwargs):
    if kwargs.get("key") == "start":
        seen["start"] = time.process_time()
    return button(label, *args, **kwargs)
st.button = spy
app = AppTest.from_file({main!r}, default_timeout=300)
started = time.process_time()
app.run()
print(seen["start"] - started, time.process_time() - started)
"""


def page_script_cpu(repeats: int) -> None:
    """The CPU the first script run of a fresh server spends before the Train page's Start button is drawn, in a
    fresh interpreter (streamlit itself imported, as a server has it): a figure the machine's load hardly moves."""
    import subprocess

    root = HERE.parent
    code = PAGE_SCRIPT.format(root=str(root), main=str(root / "app" / "main.py"))
    before_start, whole = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
        first, total = (float(v) for v in out.stdout.split()[-2:])
        before_start.append(first)
        whole.append(total)
    report("first script run's CPU until Start is drawn", statistics.median(before_start), 1.0, "s",
           note=f", whole first run {statistics.median(whole):.2f} s CPU, median of {repeats}")


def browser_figures(quick: bool, think: float) -> None:
    """The first page and the first point, warm pool and on-demand workers (fresh server and browser each)."""
    import first_point
    from playwright.sync_api import sync_playwright

    trials = 1 if quick else 3
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=first_point.CHROMIUM, args=first_point.CHROMIUM_ARGS)
    trials_of: dict[str, list[dict[str, float]]] = {mode: [] for mode in first_point.MODES}
    try:
        for _ in range(trials):  # interleaved, so that a busy spell hits every mode
            for mode in first_point.MODES:
                trials_of[mode].append(first_point.browser_trial(browser, mode, think if mode == "warm" else 0.0))
            warm, idle, cold = (trials_of[mode][-1] for mode in first_point.MODES)
            print(f"    warm: page {warm['page']:.2f} s, first point {warm['chart']:.2f} s (claimed "
                  f"{warm['claimed']:+.2f} s, logged {warm['logged']:+.2f} s); idled out: first point "
                  f"{idle['chart']:.2f} s (claimed {idle['claimed']:+.2f} s); nothing pre-started: page "
                  f"{cold['page']:.2f} s, first point {cold['chart']:.2f} s ({load()})", flush=True)
    finally:
        browser.close()
        playwright.stop()
    pages = [t["page"] for mode in first_point.MODES for t in trials_of[mode]]
    report("first page drawn after streamlit run (median)", statistics.median(pages), 2.5, "s",
           note=f", {len(pages)} fresh servers")
    chart = {mode: statistics.median(t["chart"] for t in trials_of[mode]) for mode in first_point.MODES}
    report("click Start -> first point, pool warmed at start", chart["warm"], 1.5, "s",
           note=f", clicked {think:g} s after the page")
    report("click Start -> first point, on demand (pool idled out)", chart["idle"], 4.0, "s",
           note=", the worker forked from the template")
    report("click Start -> first point, nothing pre-started", chart["cold"], 4.0, "s",
           note=", TRAINLENS_WARM_POOL=0: a fresh interpreter imports torch")


def compare_figures(quick: bool) -> None:
    import compare_refresh

    metrics, runs = compare_refresh.synthetic_runs(8, 50_000)
    result = compare_refresh.store_ticks(metrics, runs, 3 if quick else 7)
    report("Compare cold tick, 8 runs x 50k steps (wall)", result["cold"], 1.0, "s",
           note=f", CPU {result['cold_cpu']:.2f} s")
    report("Compare live tick, 8 runs x 50k steps (wall)", 1000 * result["warm"], 200, "ms",
           note=f", CPU {1000 * result['warm_cpu']:.0f} ms")


def viewer_figure(quick: bool) -> None:
    import class_load

    result, latencies, ticks, errors = class_load.simulate(1, 8, 20.0 if quick else 60.0, 15.0 if quick else 30.0,
                                                           1.0, compare_only=True)
    per_tick = ", ".join(f"{key} {statistics.median(v):.0f} ms" for key, v in sorted(ticks.items()))
    refreshes = latencies.get("compare", [])
    report("one viewer of 8 live runs: server CPU", result["cores"], 0.1, "cores",
           note=f", {len(refreshes) / result['window_s']:.2f} refreshes/s, per tick {per_tick or 'n/a'}"
                f"{', ' + str(len(errors)) + ' page errors' if errors else ''}")


def loop_figure(quick: bool) -> None:
    import torch

    import throughput
    from engine.config import RunConfig
    from engine.data.loading import load_dataset

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    split = load_dataset("mnist5k")
    base = RunConfig(batch_size=64, epochs=2, layer_stats_every=0)
    bare, engine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRAINLENS_HOME"] = tmp
        throughput.bare(base, split, 1, augment=False)  # first-call costs out of the figures
        throughput.engine_loop(base, split, Path(tmp))
        for _ in range(3 if quick else 7):  # interleaved
            bare.append(throughput.bare(base, split, base.epochs, augment=False))
            engine.append(throughput.engine_loop(base, split, Path(tmp)))
    ratios = [e / b for e, b in zip(engine, bare)]
    report("engine loop / bare loop (metrics every step)", statistics.median(ratios), 0.95, "", at_least=True,
           note=f", {threads} threads, median of {len(ratios)} pairs, bare {statistics.median(bare):,.0f} ex/s")


def stats_figure(quick: bool) -> None:
    """As benchmarks/layer_stats_overhead.py predicts it: the extra time of a sampled step (and of a histogram step,
    every 10 x K) over a plain one, per K plain steps; timed step by step, so a busy spell on the machine moves it
    far less than a throughput ratio of whole runs."""
    import torch

    import layer_stats_overhead
    from engine.config import RunConfig

    every = RunConfig().layer_stats_every
    torch.set_num_threads(1)  # as the benchmark's default: one thread per job on a shared box
    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(4096, 1, 28, 28, generator=generator), torch.randint(0, 10, (4096,), generator=generator))
    layer_stats_overhead.run(0, 20, 64, data)
    plain, sampled, with_histograms = [], [], []
    for _ in range(3 if quick else 7):  # interleaved
        plain += layer_stats_overhead.run(0, 300, 64, data)[1][1:]
        _, times, was_sampled = layer_stats_overhead.run(10, 300, 64, data)
        for step, (seconds, flag) in enumerate(zip(times[1:], was_sampled[1:]), start=1):
            if flag:
                (with_histograms if step % 100 == 0 else sampled).append(seconds)
    step = statistics.median(plain)
    extra = statistics.median(sampled) - step
    extra_histograms = statistics.median(with_histograms) - step
    overhead = (extra + (extra_histograms - extra) / 10) / (every * step)
    report(f"layer stats overhead at every {every}", 100 * overhead, 5.0, "%",
           note=f", 1 thread: plain step {1e3 * step:.2f} ms, a sampled step +{1e3 * extra:.2f} ms, with "
                f"histograms +{1e3 * extra_histograms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and repeats (about 6 minutes idle)")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--think", type=float, default=20.0,
                        help="seconds between the page and the click with the pool warmed at start (time for it to warm)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    started = time.perf_counter()
    print(f"cold paths, {'quick' if args.quick else 'full'} run on {os.cpu_count()} cores, {load()} at start "
          f"(figures taken under load are inflated; compare ratios in one run)", flush=True)
    steps = {"page": None, "start": None, "compare": compare_figures, "viewer": viewer_figure, "loop": loop_figure,
             "stats": stats_figure}
    if "page" in chosen:
        page_script_cpu(1 if args.quick else 3)
    if "page" in chosen or "start" in chosen:
        browser_figures(args.quick, args.think)
    for name in chosen:
        if steps[name] is not None:
            steps[name](args.quick)
    print(f"\nsummary ({time.perf_counter() - started:.0f} s in all)")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
