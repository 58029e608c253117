"""The executor choice (local or Ray), and the Ray executor on a real two-node cluster.

The cluster cases live in tests/ray_cluster_cases.py and run here in a child pytest inside a private network
namespace (`unshare -n`, loopback up): Ray's processes listen on ports, and in there nothing outside this test can
reach them, nor can they reach anything. They need Ray (requirements-dev.txt installs it) and the right to create a
network namespace (root, or user namespaces); without either they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runs import executor
from engine.runs.placement import cluster_summary, runs_on

ROOT = Path(__file__).resolve().parent.parent


def test_the_executor_is_chosen_by_configuration(monkeypatch):
    monkeypatch.delenv("TRAINLENS_EXECUTOR", raising=False)
    assert executor.executor_name() == "local" and executor.worker_module() == "engine.runs.worker"
    monkeypatch.setenv("TRAINLENS_EXECUTOR", "Ray")
    assert executor.executor_name() == "ray" and executor.worker_module() == "engine.runs.ray_dispatch"
    monkeypatch.setenv("TRAINLENS_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="TRAINLENS_EXECUTOR='slurm': expected local or ray"):
        executor.executor_name()
    monkeypatch.setenv("TRAINLENS_RAY_RETRIES", "-1")
    with pytest.raises(ValueError, match="TRAINLENS_RAY_RETRIES='-1': expected a whole number >= 0"):
        executor.ray_retries()


def test_several_local_workers_share_each_gpu(monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKERS_PER_GPU", "4")
    assert executor.local_pool_size(gpus=2) == 8
    assert executor.local_pool_size(gpus=0) == 2  # no GPU: the CPU pool is unchanged
    monkeypatch.setenv("TRAINLENS_WORKERS_PER_GPU", "0")
    with pytest.raises(ValueError, match="TRAINLENS_WORKERS_PER_GPU='0'"):
        executor.local_pool_size(gpus=1)


def test_the_ray_executor_says_what_to_do_when_ray_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(executor.RayUnavailable, match="pip install"):
        executor.require_ray()


def test_where_a_run_executes_in_one_line():
    ray_gpu = {"executor": "ray", "node_ip": "10.0.0.7", "node_id": "3f2a91c0ffee", "device": "cuda", "gpu_ids": ["1"]}
    assert runs_on(ray_gpu, "cuda") == "ray 10.0.0.7 (3f2a91c0) cuda (GPU 1)"
    assert runs_on(None, "cpu") == "local cpu"
    snapshot = {"time": 100.0, "address": "ray://head:10001", "total": {"CPU": 8.0, "GPU": 2.0},
                "available": {"CPU": 5.0, "GPU": 0.5}, "nodes": [{"alive": True}, {"alive": True}, {"alive": False}],
                "running": 3, "waiting": 1}
    assert cluster_summary(snapshot, now=101.0) == ("Ray cluster at ray://head:10001: 2 node(s), 5 of 8 CPUs free, "
                                                    "0.5 of 2 GPUs free; 3 run(s) training, 1 waiting for resources")


def _private_network_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "the `unshare` and `ip` commands are needed to give Ray a private network namespace"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"creating a private network namespace is not permitted here ({probe.stderr.strip()[:200]})"
    return None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_executor_on_a_two_node_cluster():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-dev.txt installs it)")
    reason = _private_network_available()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               RAY_USAGE_STATS_ENABLED="0")
    command = (f"ip link set lo up && exec {sys.executable} -m pytest -q -x -p no:cacheprovider "
               f"{ROOT / 'tests' / 'ray_cluster_cases.py'}")
    result = subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=840)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
