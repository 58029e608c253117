"""Benchmark: the same runs through the local executor (warm worker processes) and the Ray executor, one process.

For each executor, on its own temporary TRAINLENS_HOME: one warm-up run per slot (workers start and import torch;
Ray's worker processes too), then `--runs` runs queued at once through the Runner, as the dashboard queues them. Times:
  - one run alone: enqueue -> its first metric row, on the idle warm pool (the latency a click sees);
  - first metric: enqueue -> the run's first metric row committed to the store (median over the runs);
  - throughput: optimizer steps of all runs / (first enqueue -> last run finished), steps per second.
The local pool is `--cpus` workers x 1 thread (default: the machine's cores, as the default pool on 2 cores); the
Ray cluster is one node of `--cpus` CPUs and each run reserves 1 CPU, so both train as many runs at a time.
Prints both and the ratios Ray / local.

Ray listens on ports: like the tests, the benchmark runs itself inside a private network namespace
(`unshare -n`, loopback only) unless it already is in one (needs root or user namespaces).

    python benchmarks/ray_vs_local.py [--runs 6] [--epochs 2] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
INSIDE = "TRAINLENS_BENCH_NETNS"


def measure(executor: str, args, address: str | None = None) -> dict:
    from engine.config import RunConfig
    from engine.runs.runner import Runner
    from engine.runs.store import Store

    os.environ["TRAINLENS_HOME"] = tempfile.mkdtemp(prefix=f"bench-{executor}-")
    os.environ["TRAINLENS_EXECUTOR"] = executor
    os.environ["TRAINLENS_WORKERS"] = str(args.cpus)
    if address:
        os.environ["TRAINLENS_RAY_ADDRESS"] = address
    config = RunConfig(model="mlp", hidden=128, train_limit=1000, batch_size=32, epochs=args.epochs,
                       layer_stats_every=0)
    runner = Runner(Store())
    try:
        # one warm-up run per slot: every worker process (local, or Ray's) has imported torch before the clock starts
        for handle in [runner.submit(config, name="warm-up") for _ in range(args.cpus)]:
            handle.wait(timeout=600)
        alone = runner.submit(config.with_updates(epochs=1), name="alone")  # an idle, warm pool: pure latency
        queued = time.time()
        while not runner.store.count_metrics(alone.run_id):
            time.sleep(0.02)
        alone_first = time.time() - queued
        alone.wait(timeout=600)
        start = time.time()
        handles = [(runner.submit(config.with_updates(seed=seed)), time.time()) for seed in range(args.runs)]
        first: dict[str, float] = {}
        while len(first) < len(handles) or any(h.status() in ("queued", "running") for h, _ in handles):
            for handle, queued in handles:
                if handle.run_id not in first and runner.store.count_metrics(handle.run_id):
                    first[handle.run_id] = time.time() - queued
            time.sleep(0.05)
        wall = time.time() - start
        steps = sum(runner.store.get_run(h.run_id)["step"] for h, _ in handles)
        statuses = {h.status() for h, _ in handles}
        return {"alone_first_s": alone_first, "first_metric_s": statistics.median(first.values()), "steps_per_s": steps / wall, "wall_s": wall,
                "statuses": sorted(statuses)}
    finally:
        runner.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1":
        command = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} {' '.join(sys.argv[1:])}"
        env = dict(os.environ, **{INSIDE: "1", "RAY_USAGE_STATS_ENABLED": "0"})
        return subprocess.run(["unshare", "-n", "sh", "-c", command], env=env).returncode

    local = measure("local", args)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus})
    try:
        on_ray = measure("ray", args, address=cluster.address)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    print(f"{args.runs} runs of {args.epochs} epochs (MLP, 1000 examples), after {args.cpus} warm-up runs each")
    for name, result in (("local", local), ("ray", on_ray)):
        print(f"{name:>6}: one run alone: first metric {result['alone_first_s']:.2f} s; {args.runs} runs at once: "
              f"first metric {result['first_metric_s']:.2f} s (median), throughput "
              f"{result['steps_per_s']:.0f} steps/s, {result['wall_s']:.1f} s, statuses {result['statuses']}")
    print(f"ratios ray/local: first metric alone x{on_ray['alone_first_s'] / local['alone_first_s']:.2f}, "
          f"first metric x{on_ray['first_metric_s'] / local['first_metric_s']:.2f}, "
          f"throughput x{on_ray['steps_per_s'] / local['steps_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
