"""Shared test fixtures: an isolated TRAINLENS_HOME for every test, a warm Runner, tiny datasets.

Every test gets its own data home (engine.paths reads TRAINLENS_HOME on every call), so no test sees
another's runs, checkpoints or workers, and nothing is written into the working tree. Any worker process
a test started (through the Runner or the CLI) is stopped at teardown: none may outlive the tests.
Two tiers: `-m "not slow" -n 2` runs the tests that start no process (about a minute); the whole suite adds the worker
pools, CLI subprocesses, Streamlit servers, browsers and Ray (see "the fast tier" below).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

# Every figure the tests build (in process, and in the dashboards they serve) goes through Plotly's property
# checks, which the server skips for speed (app/charts/metrics.py VALIDATE): a misspelt property fails here.
os.environ["TRAINLENS_VALIDATE_FIGURES"] = "1"


def pytest_configure(config):
    # Tiny models run several times faster on one thread than on threads fighting for 2 shared cores.
    import torch

    torch.set_num_threads(1)


# ---- the fast tier -----------------------------------------------------------------------------------------------
# `python -m pytest -m "not slow"` runs the tests that start no process: no worker pool, no CLI in a subprocess, no
# Streamlit server, no browser, no Ray. Tests that use a worker pool (`runner`) or a browser are slow by these
# fixtures; the others that start a process carry `@pytest.mark.slow` (or a module's `pytestmark`). The rule is
# enforced: a test outside the slow tier that starts a process fails and says to mark it (`_no_process_when_fast`).
SLOW_FIXTURES = ("runner", "browser")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_process_when_fast(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_process_when_fast(item):
        yield


@contextlib.contextmanager
def _no_process_when_fast(item):
    """A fast-tier test may not start a process, in its fixtures (module-scoped ones included) or its body: it would
    make the tier slow, and it belongs in the slow one."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    real = subprocess.Popen.__init__

    def refuse(self, args, *more, **options):
        raise RuntimeError(f"{item.nodeid} starts a process ({args!r}); mark it @pytest.mark.slow (tests/conftest.py)")

    subprocess.Popen.__init__ = refuse
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real


RUNNER_WORKERS = 2
WORKER_IDLE_S = "300"  # a worker that escaped teardown still exits on its own after this long without work


def stop_workers(home: Path) -> None:
    """Stop every worker registered in `home`'s store (no-op when the home has no store)."""
    import sqlite3
    from contextlib import closing

    path = home / "trainlens.db"
    if not path.exists():
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:  # plain read: a test may have broken the schema
        try:
            live = conn.execute("SELECT COUNT(*) FROM workers WHERE status IN ('idle', 'busy') AND host=?",
                                (socket.gethostname(),)).fetchone()[0]
        except sqlite3.Error:
            return
    if not live:
        return
    from engine.runs.runner import Runner
    from engine.runs.store import Store

    store = Store(path)
    try:
        if not store.live_workers().empty:
            Runner(store).shutdown()
    finally:
        store.close()


@pytest.fixture(scope="module")
def runner_home(tmp_path_factory) -> Path:
    """The data home shared by the tests of one module that use `runner`."""
    return tmp_path_factory.mktemp("runner_home")


@pytest.fixture(autouse=True)
def trainlens_home(request, tmp_path, monkeypatch) -> Path:
    """An isolated TRAINLENS_HOME for each test (the runner's home for tests that use `runner`)."""
    uses_runner = "runner" in request.fixturenames
    home = request.getfixturevalue("runner_home") if uses_runner else tmp_path / "trainlens_home"
    monkeypatch.setenv("TRAINLENS_HOME", str(home))
    monkeypatch.setenv("TRAINLENS_WORKER_IDLE_S", WORKER_IDLE_S)
    monkeypatch.setenv("TRAINLENS_WARM_POOL", "0")  # an AppTest's app must not start a worker pool per test
    yield home
    if not uses_runner:  # the runner fixture stops its own pool at the end of the module
        stop_workers(home)


@pytest.fixture(scope="module")
def runner(runner_home):
    """A Runner with a pool of RUNNER_WORKERS real worker processes on an isolated home; always shut down."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLENS_HOME", str(runner_home))
        mp.setenv("TRAINLENS_WORKERS", str(RUNNER_WORKERS))
        mp.setenv("TRAINLENS_WORKER_IDLE_S", WORKER_IDLE_S)
        from engine.runs.runner import Runner

        runner = Runner()
        try:
            yield runner
        finally:
            runner.shutdown()
            runner.store.close()


def make_split(n_train: int = 96, n_val: int = 48, channels: int = 1, size: int = 8, classes: int = 3,
               seed: int = 0):
    """A tiny learnable DatasetSplit: random images labelled by a fixed random linear 'teacher'."""
    import torch

    from engine.data.loading import DatasetInfo, DatasetSplit, channel_stats

    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_val, channels, size, size, generator=generator)
    teacher = torch.randn(channels * size * size, classes, generator=generator)
    y = ((x.flatten(1) - 0.5) @ teacher).argmax(1)
    info = DatasetInfo("tiny", "Tiny random", channels, size, tuple(f"c{i}" for i in range(classes)), "synthetic",
                       "random test images", False)
    train_x, val_x = x[:n_train].contiguous(), x[n_train:].contiguous()
    mean, std = channel_stats(train_x)
    return DatasetSplit(info, train_x, y[:n_train].contiguous(), val_x, y[n_train:].contiguous(), mean, std, None, None)


@pytest.fixture
def tiny_split():
    return make_split()


def engine_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a `python -m engine ...` subprocess on `home`."""
    env = dict(os.environ)
    env.update({"TRAINLENS_HOME": str(home), "TRAINLENS_WORKER_IDLE_S": WORKER_IDLE_S,
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, **extra)
    return env


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for every browser test (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    from ui_helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
