"""Helpers shared by the UI tests: decoding Streamlit plotly charts, isolating AppTest, a live server.

- `chart_traces` / `line_points`: the traces of an AppTest `plotly_chart` element with their arrays
  decoded (Plotly 7 sends numpy arrays as {"dtype", "bdata"} base64 blobs, not JSON lists).
- `fresh_app`: an AppTest of app/main.py whose cached Store/Runner/metrics cache point at the current
  TRAINLENS_HOME (they are `st.cache_resource`, so one per test process otherwise).
- `streamlit_server`: `streamlit run app/main.py` on 127.0.0.1 and a free port with its own data home,
  waited for, then stopped together with every worker process it started.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "app" / "main.py"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


# ---- plotly figures as Streamlit sends them ----
def decode_array(value: Any) -> np.ndarray:
    """A trace array as sent to the browser: a plain list, or Plotly's typed-array {"dtype", "bdata"[, "shape"]}."""
    if value is None:
        return np.array([])
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(n) for n in str(shape).split(",")])
        return array
    return np.asarray(value)


def figure_spec(element) -> dict:
    """The figure JSON of an AppTest plotly_chart element (UnknownElement whose proto is PlotlyChart)."""
    return json.loads(element.proto.spec)


def chart_traces(element) -> list[dict]:
    """The traces of a plotly_chart element, with x and y decoded to numpy arrays."""
    traces = []
    for trace in figure_spec(element)["data"]:
        trace = dict(trace)
        trace["x"], trace["y"] = decode_array(trace.get("x")), decode_array(trace.get("y"))
        traces.append(trace)
    return traces


def is_band_edge(trace: dict) -> bool:
    return trace.get("hoverinfo") == "skip" and (trace.get("line") or {}).get("width") == 0


def line_traces(element) -> list[dict]:
    """The visible data lines of a chart: neither the faint raw series behind a smoothed one nor band edges."""
    return [t for t in chart_traces(element)
            if t.get("mode") == "lines" and not is_band_edge(t) and (t.get("opacity") is None or t["opacity"] >= 0.5)]


def line_points(element) -> int:
    """Number of finite points drawn by the chart's visible lines."""
    return int(sum(np.isfinite(t["y"].astype(float)).sum() for t in line_traces(element)))


def chart_by_key(at, key: str):
    """The plotly_chart element with this key in an AppTest tree, or None."""
    return next((e for e in at.get("plotly_chart") if e.key == key), None)


# ---- AppTest with an isolated data home ----
def clear_app_caches() -> None:
    """Forget the cached Store/Runner/MetricsCache (bound to the previous test's TRAINLENS_HOME) and class settings.

    Only these: the dataset cache is keyed by its arguments and stays valid, so it is kept
    (reloading MNIST on every test would only cost time).
    """
    from app.ui import sign_in, state

    for cached in (state.get_store, state.shared_runner, state.get_metrics_cache, state.shared_figures,
                   sign_in.class_mode, sign_in._guesses):
        cached.clear()


def fresh_app(timeout: float = 90.0):
    """An AppTest of app/main.py (not yet run) with the app's resource caches cleared."""
    from streamlit.testing.v1 import AppTest

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    clear_app_caches()
    return AppTest.from_file(str(MAIN), default_timeout=timeout)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; returns it, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---- a live `streamlit run` server ----
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_home_workers(home: Path) -> None:
    """Stop every worker process registered in `home`'s store (none when it has no store)."""
    if not (home / "trainlens.db").exists():
        return
    from engine.runs.runner import Runner
    from engine.runs.store import Store
    from engine.runs.store.errors import StoreUnavailable

    try:
        store = Store(home / "trainlens.db")
    except StoreUnavailable:
        return  # a test damaged the store on purpose: no worker could have registered in it
    try:
        Runner(store).shutdown()
    finally:
        store.close()


@contextlib.contextmanager
def streamlit_server(home: Path, workers: int = 3, startup_timeout: float = 90.0,
                     extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run the dashboard on 127.0.0.1:<free port> with data home `home`; yields its URL.

    On exit the server (its whole process group) is stopped, then every worker it started.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.update({"TRAINLENS_HOME": str(home), "TRAINLENS_WORKERS": str(workers),
                "TRAINLENS_WORKER_IDLE_S": env.get("TRAINLENS_WORKER_IDLE_S", "300"),
                "PYTHONPATH": str(ROOT), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    env.update(extra_env or {})
    log_path = home / "streamlit_server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(MAIN), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{server_log(home)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer within {startup_timeout:.0f} s:\n{server_log(home)}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        stop_home_workers(home)


@contextlib.contextmanager
def server_with_trained_run(home: Path, config, name: str) -> Iterator[str]:
    """A live dashboard (see streamlit_server) whose store holds one finished run of `config`, trained by a real
    worker; yields its URL. TRAINLENS_HOME points at `home` meanwhile (the runner here and the server share it)."""
    previous = os.environ.get("TRAINLENS_HOME")
    os.environ["TRAINLENS_HOME"] = str(home)
    try:
        with streamlit_server(home, workers=1) as url:
            from engine.runs.runner import Runner

            handle = Runner(workers=1).submit(config, name=name)
            assert handle.wait(timeout=180) == "completed", server_log(home)
            yield url
    finally:
        if previous is None:
            os.environ.pop("TRAINLENS_HOME", None)
        else:
            os.environ["TRAINLENS_HOME"] = previous


def server_log(home: Path) -> str:
    path = home / "streamlit_server.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""
