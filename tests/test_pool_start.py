"""A worker pool that cannot start, for real: `train --wait` through the command line with a Ray executor pointed at
a cluster that is not there, and with settings no process could start with.

Each used to leave the run `queued` behind a restart storm (33-66 dispatchers in 100 s) with `train --wait`
hanging. Now `train --wait` exits 1 within 60 s with one line naming the address, the run says why it waits
(`show`), and fewer than 5 processes were started; a bad setting is refused before anything is queued or started.
The Ray cases run in a private network namespace (as tests/test_ray_executor.py does), with Ray's temporary folder
empty, so `auto` cannot find another test's cluster and nothing outside is reached.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import engine_env

pytestmark = pytest.mark.slow  # CLI processes, a Ray dispatcher

PROJECT = str(Path(__file__).resolve().parent.parent)
TRAIN = ["train", "--set", "epochs=1", "--set", "train_limit=32", "--set", "model=mlp", "--wait"]


def _netns_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "the `unshare` and `ip` commands are needed for a private network namespace"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"no private network namespace here ({probe.stderr.strip()[:200]})"


def cli(home: Path, args: list[str], private_network: bool = False, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "engine", *args]
    if private_network:
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=150,
                          env=engine_env(home, RAY_USAGE_STATS_ENABLED="0", **env))


def processes_started(home: Path) -> int:
    """Worker or dispatcher processes the runner started (each is registered in the store as it starts)."""
    path = home / "trainlens.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]


@pytest.fixture
def ray_env(tmp_path) -> dict[str, str]:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-dev.txt installs it)")
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    ray_tmp = tmp_path / "ray_tmp"  # no cluster address file in there: `auto` finds no head
    ray_tmp.mkdir()
    return {"TRAINLENS_EXECUTOR": "ray", "RAY_TMPDIR": str(ray_tmp), "TRAINLENS_RAY_CONNECT_TIMEOUT_S": "20"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["auto with no head", "nothing at the address", "ray:// without Ray Client"])
def test_a_ray_cluster_that_is_not_there_ends_train_wait_with_the_reason(trainlens_home, tmp_path, ray_env, case):
    env = dict(ray_env)
    if case == "auto with no head":
        address = "auto"
    elif case == "nothing at the address":
        address = f"127.0.0.1:{_free_port()}"
    else:
        address = "ray://127.0.0.1:10001"
        fake = tmp_path / "no_grpc" / "grpc"  # Ray Client's dependency, missing
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('No module named grpc')\n")
        env["PYTHONPATH"] = f"{PROJECT}:{fake.parent}"
    env["TRAINLENS_RAY_ADDRESS"] = address

    started = time.monotonic()
    result = cli(trainlens_home, TRAIN, private_network=True, **env)
    took = time.monotonic() - started
    errors = error_lines(result)
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert f"cannot reach the Ray cluster at {address}" in errors[0] and "It stays queued" in errors[0], errors[0]
    if case == "ray:// without Ray Client":
        assert 'pip install "ray[client]"' in errors[0]
    assert took < 60, f"train --wait took {took:.0f} s"
    assert processes_started(trainlens_home) < 5

    run_id = result.stdout.split()[0]
    shown = cli(trainlens_home, ["show", run_id], **env)
    assert shown.returncode == 0 and "queued" in shown.stdout
    assert "waiting: No worker can take it: the Ray dispatcher could not start" in shown.stdout
    assert f"cannot reach the Ray cluster at {address}" in shown.stdout
    workers = cli(trainlens_home, ["workers"], **env)
    assert workers.returncode == 1 and "workers cannot start" in workers.stdout
    assert processes_started(trainlens_home) < 5  # `show` and `workers` started none


@pytest.mark.parametrize("name, value", [("TRAINLENS_RAY_RETRIES", "-1"), ("TRAINLENS_WORKER_IDLE_S", "abc"),
                                         ("TRAINLENS_RAY_ADDRESS", "head:port")])
def test_a_setting_no_process_could_start_with_is_refused_before_anything(trainlens_home, name, value):
    result = cli(trainlens_home, TRAIN, TRAINLENS_EXECUTOR="ray", **{name: value})
    errors = error_lines(result)
    assert result.returncode == 2 and errors == [result.stderr.strip()], result.stderr
    assert errors[0].startswith(f"error: {name}={value!r}: expected "), errors[0]
    assert processes_started(trainlens_home) == 0 and not result.stdout.strip()  # nothing queued, nothing started
    workers = cli(trainlens_home, ["workers"], **{name: value})
    assert workers.returncode == 2 and name in workers.stderr
