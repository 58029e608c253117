"""Benchmark: the first Start on a freshly started dashboard, from the click to the run's first point.

Each trial starts a fresh `streamlit run app/main.py` on 127.0.0.1 (a free port, its own temporary TRAINLENS_HOME,
the default worker pool), opens it in headless Chromium like a user (the Train page, the default), clicks
"Start run" on the default run as soon as the button shows (or --think seconds later), then times:
  - page: server start -> the Start button shown (the first page, while the pool warms or not);
  - store: click -> the run's first metric row committed to the store (polled every 50 ms);
  - chart: click -> the first point drawn in the page's live loss chart (the browser's plotly data).
Modes: warm (the dashboard's default: the worker template and the pool warmed at start), idle (the pool warmed,
then its workers idled out, as after a pause in a class: the click forks a worker from the template) and cold
(TRAINLENS_WARM_POOL=0: no template, the first Start starts fresh interpreters). The run is cancelled once its first
point is in; the server, the browser and every worker started are stopped at the end of each trial. Prints every
trial and the medians.

    python benchmarks/first_point.py [--repeats 3] [--think 0] [--modes warm,idle,cold]

--no-browser measures without a browser, as the dashboard does it: the runner's warm-up started (or not) at
"server start", --think seconds later a run queued, then the time to its first metric row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.runs import template  # noqa: E402 - the project is on sys.path now

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WAIT_S = 180.0

# points drawn by the live loss chart of the Train page (null until drawn)
POINTS_JS = """() => {
  const graph = document.querySelector('.st-key-train_live_loss .js-plotly-plot');
  if (!graph || !graph._fullData) return 0;
  return graph._fullData.reduce((n, t) => n + Array.from(t.y || []).filter(Number.isFinite).length, 0);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_row_time(db: Path) -> float | None:
    """When the store first holds a metric row (None while it holds none)."""
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as conn:
            return time.time() if conn.execute("SELECT 1 FROM metrics LIMIT 1").fetchone() else None
    except sqlite3.Error:  # not created yet, or busy
        return None


def wait_first_row(db: Path, timeout: float = WAIT_S) -> tuple[float, float | None]:
    """(when the first metric row was seen in the store, when a worker first had torch imported) by polling."""
    deadline = time.time() + timeout
    ready = None
    while time.time() < deadline:
        seen = first_row_time(db)
        ready = ready or worker_ready_time(db)
        if seen is not None:
            return seen, ready
        time.sleep(0.05)
    raise TimeoutError(f"no metric row in {db} after {timeout:.0f} s")


def worker_ready_time(db: Path) -> float | None:
    """Now, if a worker has registered itself (torch imported: its device is no longer 'starting')."""
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as conn:
            row = conn.execute("SELECT 1 FROM workers WHERE device != 'starting' LIMIT 1").fetchone()
            return time.time() if row else None
    except sqlite3.Error:
        return None


def timeline(db: Path) -> dict[str, float]:
    """When the run was claimed by a worker and when its first row was logged (wall clock)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)) as conn:
        claimed = conn.execute("SELECT MIN(started_at) FROM runs").fetchone()[0]
        logged = conn.execute("SELECT MIN(wall_time) FROM metrics").fetchone()[0]
    return {"claimed": claimed, "logged": logged}


def stop_everything(home: Path) -> None:
    """Cancel the runs, then stop every worker registered in the home's store."""
    db = home / "trainlens.db"
    if not db.exists():
        return
    from engine.runs.runner import Runner
    from engine.runs.store import Store

    store = Store(db)
    try:
        for run_id in store.list_runs(status=["queued", "running"])["run_id"]:
            store.request_cancel(run_id)
        Runner(store).shutdown()
    finally:
        store.close()


MODES = ("warm", "idle", "cold")
IDLE_EXIT_S = 2.0  # mode idle: the warmed workers leave after this long without a run


def idle_pool(db: Path, home: Path, timeout: float = WAIT_S) -> None:
    """Mode idle: wait until the worker template answers and every warmed worker has left (idled out)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (home / "workers" / template.SOCKET_NAME).exists() and db.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as conn:
                    started = conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0]
                    left = conn.execute("SELECT COUNT(*) FROM workers WHERE status IN ('stopped', 'dead')").fetchone()[0]
                if started and started == left:
                    return
            except sqlite3.Error:
                pass
        time.sleep(0.1)
    raise TimeoutError("the warmed pool did not idle out")


@contextlib.contextmanager
def dashboard(home: Path, mode: str):
    """A fresh `streamlit run app/main.py`; yields (url, start time); stops it and its workers."""
    port = free_port()
    env = dict(os.environ)
    env.pop("TRAINLENS_WORKERS", None)  # the default pool, as a user gets it
    env.update({"TRAINLENS_HOME": str(home), "TRAINLENS_WARM_POOL": "0" if mode == "cold" else "1",
                "TRAINLENS_WORKER_IDLE_S": str(IDLE_EXIT_S) if mode == "idle" else "120", "PYTHONPATH": str(ROOT),
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    log = open(home / "server.log", "wb")
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {(home / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.time() > deadline:
                raise RuntimeError("streamlit did not answer within 90 s")
            time.sleep(0.1)
        yield url, started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        stop_everything(home)


def browser_trial(browser, mode: str, think: float) -> dict[str, float]:
    # a short folder: the worker template's socket path must fit in 100 bytes
    with tempfile.TemporaryDirectory(prefix="tl_fp_", dir="/tmp") as tmp:
        home = Path(tmp)
        with dashboard(home, mode) as (url, started):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                page = context.new_page()
                page.goto(url)
                button = page.get_by_role("button", name="Start run")
                button.wait_for(timeout=WAIT_S * 1000)
                shown = time.time()
                time.sleep(think)
                if mode == "idle":
                    idle_pool(home / "trainlens.db", home)
                ready = worker_ready_time(home / "trainlens.db") if mode != "idle" else None
                clicked = time.time()
                button.click()
                stored, ready_later = wait_first_row(home / "trainlens.db")
                page.wait_for_function(f"({POINTS_JS})() > 0", timeout=WAIT_S * 1000, polling=100)
                drawn = time.time()
                marks = timeline(home / "trainlens.db")
            finally:
                context.close()
    return {"page": shown - started, "store": stored - clicked, "chart": drawn - clicked,
            "ready": (ready or ready_later or float("nan")) - clicked, "claimed": marks["claimed"] - clicked,
            "logged": marks["logged"] - clicked}


def headless_trial(warm: bool, think: float) -> dict[str, float]:
    """The dashboard's path without a browser: PoolWarmup at 'server start' (or not), a run queued `think` s later."""
    from app.ui.state import PoolWarmup
    from engine.config import RunConfig
    from engine.runs.runner import Runner
    from engine.runs.store import Store

    with tempfile.TemporaryDirectory(prefix="trainlens_first_point_") as tmp:
        home = Path(tmp)
        old = {name: os.environ.get(name) for name in ("TRAINLENS_HOME", "TRAINLENS_WORKER_IDLE_S", "TRAINLENS_WORKERS")}
        os.environ.update({"TRAINLENS_HOME": str(home), "TRAINLENS_WORKER_IDLE_S": "120"})
        os.environ.pop("TRAINLENS_WORKERS", None)
        try:
            runner = Runner(Store(home / "trainlens.db"))
            if warm:
                PoolWarmup(runner).start()
            time.sleep(think)
            ready = worker_ready_time(home / "trainlens.db")
            clicked = time.time()
            runner.submit(RunConfig())
            stored, ready_later = wait_first_row(home / "trainlens.db")
            marks = timeline(home / "trainlens.db")
            return {"page": float("nan"), "store": stored - clicked, "chart": float("nan"),
                    "ready": (ready or ready_later or float("nan")) - clicked, "claimed": marks["claimed"] - clicked,
                    "logged": marks["logged"] - clicked}
        finally:
            stop_everything(home)
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per mode")
    parser.add_argument("--think", type=float, default=0.0, help="seconds between the Start button showing and the click")
    parser.add_argument("--modes", default="warm,idle,cold",
                        help="warm (pool warmed at start), idle (warmed, then idled out), cold (TRAINLENS_WARM_POOL=0)")
    parser.add_argument("--no-browser", action="store_true", help="no streamlit server nor browser (see the docstring)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if set(modes) - set(MODES) or (args.no_browser and "idle" in modes):
        parser.error(f"modes are {', '.join(MODES)} (idle needs the browser)")
    print(f"first Start on a fresh dashboard, default run (mnist5k, convnet, adam); think {args.think:g} s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    playwright = browser = None
    if not args.no_browser:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        for repeat in range(args.repeats):
            for mode in modes:  # interleaved, so that a busy spell on the machine hits both modes
                trial = (headless_trial(mode == "warm", args.think) if args.no_browser
                         else browser_trial(browser, mode, args.think))
                results[mode].append(trial)
                page = "" if args.no_browser else f"page ready {trial['page']:5.1f} s after server start; "
                drawn = "" if args.no_browser else f", -> first point drawn {trial['chart']:5.1f} s"
                print(f"  {mode:4} #{repeat + 1}: {page}click -> first row in the store {trial['store']:5.1f} s{drawn} "
                      f"(from the click: a worker ready {trial['ready']:+5.1f} s, the run claimed "
                      f"{trial['claimed']:+5.1f} s, its first row logged {trial['logged']:+5.1f} s)", flush=True)
    finally:
        if browser is not None:
            browser.close()
            playwright.stop()
    for mode, trials in results.items():
        label = {"warm": "pool warmed at start", "idle": "pool idled out, template up",
                 "cold": "pool started on Start (TRAINLENS_WARM_POOL=0)"}[mode]
        median = {key: statistics.median(t[key] for t in trials) for key in ("page", "store", "chart")}
        browser_part = "" if args.no_browser else (f", -> first point drawn {median['chart']:.1f} s; page ready "
                                                   f"{median['page']:.1f} s after server start")
        print(f"{label}: median click -> first row {median['store']:.1f} s{browser_part} ({len(trials)} trials)")


if __name__ == "__main__":
    main()
