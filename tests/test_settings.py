"""TRAINLENS_* settings fail fast and loudly (engine.settings), and a worker pool that cannot start backs off and
says why (engine.runs.pool_health): in one line naming the variable or the address, on the Runs page, in `show`,
`workers` and `train`, with no restart storm. The real processes (the CLI, a Ray dispatcher) are in
tests/test_pool_start.py."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from engine import settings
from engine.config import RunConfig
from engine.runs import pool_health
from engine.runs.store import Store

ROOT = Path(__file__).resolve().parent.parent
TINY = RunConfig(model="mlp", hidden=8, depth=1, epochs=1, train_limit=32, layer_stats_every=0)


def test_every_setting_the_code_reads_is_registered():
    names = {name for package in ("engine", "app") for path in (ROOT / package).rglob("*.py")
             for name in re.findall(r"TRAINLENS_[A-Z][A-Z_]*[A-Z]", path.read_text())}
    names -= {"TRAINLENS_MAX"}  # the README's family name "TRAINLENS_MAX_*"
    assert len(names) > 15  # the scan reads real code
    assert not sorted(names - set(settings.SETTINGS)), "read but not in engine/settings.py (add it there)"


@pytest.mark.parametrize("name, value, says", [
    ("TRAINLENS_WORKER_IDLE_S", "abc",
     "TRAINLENS_WORKER_IDLE_S='abc': expected a number of seconds > 0 (default 1800)"),
    ("TRAINLENS_RAY_RETRIES", "-1", "TRAINLENS_RAY_RETRIES='-1': expected a whole number >= 0 (default 1)"),
    ("TRAINLENS_EXECUTOR", "slurm", "TRAINLENS_EXECUTOR='slurm': expected local or ray (default local)"),
    ("TRAINLENS_RAY_ADDRESS", "head:port", "expected auto, HOST:PORT or ray://HOST:PORT (default auto)"),
    ("TRAINLENS_RAY_ADDRESS", "ray://head:99999", "ray://HOST:PORT"),
    ("TRAINLENS_WORKERS", "-1", "TRAINLENS_WORKERS='-1': expected a whole number of worker processes (0: start none "
                                "on this machine) (or unset)"),
    ("TRAINLENS_REFRESH_CORES", "nan", "TRAINLENS_REFRESH_CORES='nan'"),
    ("TRAINLENS_SHARED_FIGURES", "maybe", "1 or 0"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError) as info:
        settings.check()
    assert says in str(info.value) and "\n" not in str(info.value)


def test_good_values_and_defaults(monkeypatch):
    for name, value in {"TRAINLENS_RAY_ADDRESS": "ray://10.0.0.7:10001", "TRAINLENS_EXECUTOR": " Ray ",
                        "TRAINLENS_WORKER_IDLE_S": "0.5", "TRAINLENS_SHARED_FIGURES": "off"}.items():
        monkeypatch.setenv(name, value)
    settings.check()
    assert settings.value("TRAINLENS_EXECUTOR") == "ray" and settings.value("TRAINLENS_SHARED_FIGURES") is False
    assert settings.split_ray_address("ray://10.0.0.7:10001") == ("ray://", "10.0.0.7", 10001)
    assert settings.split_ray_address("[::1]:6379") == ("", "::1", 6379)
    monkeypatch.setenv("TRAINLENS_RAY_RETRIES", "")  # empty is unset
    assert settings.value("TRAINLENS_RAY_RETRIES") == 1


def test_a_bad_setting_queues_nothing_and_starts_nothing(monkeypatch):
    from engine.runs.runner import Runner

    started = []
    monkeypatch.setattr(Runner, "_start_worker", lambda self, index: started.append(index))
    runner = Runner()
    monkeypatch.setenv("TRAINLENS_WORKER_IDLE_S", "abc")
    with pytest.raises(settings.SettingError, match="TRAINLENS_WORKER_IDLE_S"):
        runner.submit(TINY)
    with pytest.raises(settings.SettingError, match="TRAINLENS_WORKER_IDLE_S"):
        runner.ensure_workers()
    assert runner.store.list_runs().empty and started == []


def test_the_cli_refuses_a_bad_setting_in_one_line_before_anything(monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setenv("TRAINLENS_RAY_RETRIES", "-1")
    assert main(["train", "--set", "epochs=1", "--wait"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: TRAINLENS_RAY_RETRIES='-1': expected a whole number >= 0 (default 1)"]
    assert main(["workers"]) == 2
    assert Store().list_runs().empty


def test_failed_starts_back_off_then_stop_restarting(monkeypatch):
    first = pool_health.record_failure("cannot reach the Ray cluster at auto (ConnectionError: no head)",
                                       "Ray dispatcher")
    assert first.tries == 1
    now = first.last_at
    assert pool_health.may_start(explicit=False, now=now + 1) == first  # backing off
    assert pool_health.may_start(explicit=False, now=now + pool_health.BACKOFF_S + 0.1) is None
    for _ in range(pool_health.MAX_TRIES - 1):
        failure = pool_health.record_failure("cannot reach the Ray cluster at auto (ConnectionError: no head)")
    assert failure.tries == pool_health.MAX_TRIES
    later = failure.last_at + 3600
    assert pool_health.may_start(explicit=False, now=later) is not None  # automatic restarts have stopped
    assert pool_health.may_start(explicit=True, now=failure.last_at + 1) is not None
    assert pool_health.may_start(explicit=True, now=failure.last_at + pool_health.GIVE_UP_RETRY_S + 1) is None
    text = failure.describe(now=later)
    assert "3 times in a row" in text and "cannot reach the Ray cluster at auto" in text
    assert "automatic restarts have stopped" in text and "trainlens workers --start" in text
    monkeypatch.setenv("TRAINLENS_RAY_ADDRESS", "10.0.0.9:6379")  # new settings: a fresh start
    assert pool_health.may_start(explicit=False, now=later) is None
    pool_health.clear()
    assert pool_health.current() is None


def test_a_pool_that_failed_is_not_restarted_by_watchers_and_queued_runs_say_why(monkeypatch):
    from engine.runs.runner import Runner

    started = []
    monkeypatch.setattr(Runner, "_start_worker", lambda self, index: started.append(index))
    runner = Runner(workers=1)
    run_id = runner.store.create_run(TINY)
    for _ in range(pool_health.MAX_TRIES):
        pool_health.record_failure("the store at /x could not be opened")
    for _ in range(20):  # a page refreshing, `train --wait` watching: no storm
        runner.recover()
    assert started == []
    assert runner.pool_problem() is not None
    reason = runner.store.waiting_reason(runner.store.get_run(run_id))
    assert reason.startswith("No worker can take it: the worker could not start (3 times in a row")
    assert "the store at /x could not be opened" in reason
    assert runner.start_now() == 1 and started == [0]  # `trainlens workers --start`: at once, after the fix


def test_show_and_workers_say_why_a_queued_run_waits(capsys):
    from engine.cli import main

    run_id = Store().create_run(TINY)
    pool_health.record_failure("cannot reach the Ray cluster at 10.0.0.9:6379: nothing answers", "Ray dispatcher")
    assert main(["show", run_id]) == 0
    out = capsys.readouterr().out
    assert "waiting: No worker can take it: the Ray dispatcher could not start (once" in out
    assert "cannot reach the Ray cluster at 10.0.0.9:6379" in out
    assert main(["workers"]) == 1
    assert "workers cannot start: the Ray dispatcher could not start" in capsys.readouterr().out


def test_an_address_where_nothing_answers_is_named_at_once():
    from engine.runs.ray_dispatch import check_reachable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}: nothing answers"):
        check_reachable(f"127.0.0.1:{port}")
    check_reachable("auto")  # left to Ray: it says at once when there is no head here


def test_a_ray_client_address_without_ray_client_says_what_to_install(monkeypatch):
    import sys

    from engine.runs.ray_dispatch import check_reachable

    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError
    with pytest.raises(ConnectionError, match=r"ray://127.0.0.1:10001: a ray:// address needs Ray Client.*ray\[client"):
        check_reachable("ray://127.0.0.1:10001")


def test_the_dashboard_names_a_bad_setting_on_every_page(monkeypatch):
    from ui_helpers import fresh_app

    monkeypatch.setenv("TRAINLENS_REFRESH_CORES", "lots")
    at = fresh_app().run()
    assert not at.exception
    shown = at.error[0].value.replace("\\", "")  # markdown-escaped: it reads as typed
    assert "TRAINLENS_REFRESH_CORES='lots': expected a number of CPU cores > 0" in shown


def test_the_runs_page_says_queued_runs_cannot_start_and_offers_to_try_again():
    from ui_helpers import fresh_app

    Store().create_run(TINY, name="waiting run")
    pool_health.record_failure("cannot reach the Ray cluster at auto (ConnectionError: no head)", "Ray dispatcher")
    at = fresh_app()
    at.switch_page("views/runs.py")
    at.run()
    assert not at.exception
    banner = [e.value for e in at.error if e.value.startswith("Runs wait in the queue: the Ray dispatcher could not")]
    assert banner and "cannot reach the Ray cluster at auto" in banner[0]
    assert any(b.label == "Try again now" for b in at.button)
