"""What logging from a script costs: the `trainlens` client's sustained rows/s, and its overhead on a training loop.

    python benchmarks/client_logging.py [--rows 1000000] [--keys 10] [--repeats 2] [--threads 1]

Everything runs in this process against a fresh store in a temporary TRAINLENS_HOME.
- throughput: `run.log` of `--keys` scalars per call in a tight loop until `--rows` rows, then `finish()`, which
  returns once every row is committed: rows/s over the whole (the store's write rate, not just the caller's), and
  the caller's own time per row.
- overhead: the same loop as a script trains it: a small MLP (784-128-10, batch 64, SGD, `--threads` torch
  threads) on random data, one `run.log` of `--keys` scalars per step, `--rows / --keys` steps; against the same
  loop without the `run.log` call (the values are computed in both). Interleaved over `--repeats`; the medians
  are printed. Target (issue 24): under 20% for 1,000,000 rows, and at least 50,000 rows/s sustained.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def throughput(rows: int, keys: int) -> tuple[float, float]:
    """(rows/s committed, caller microseconds per row) for `rows` rows logged `keys` at a time."""
    import trainlens

    names = [f"metric_{k}" for k in range(keys)]
    run = trainlens.init(name="throughput", config={"keys": keys})
    start = time.perf_counter()
    for step in range(rows // keys):
        run.log({name: step * 0.001 + k for k, name in enumerate(names)}, step=step)
    logged = time.perf_counter()
    run.finish()
    done = time.perf_counter()
    assert run.store.count_metrics(run.run_id) == rows // keys * keys
    return rows / (done - start), (logged - start) / rows * 1e6


def training_loop(steps: int, keys: int, run=None) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for `steps` SGD steps of a small MLP, logging `keys` scalars per
    step to `run` (None: no logging)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    names = ["loss"] + [f"metric_{k}" for k in range(1, keys)]
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        value = loss.item()
        values = {name: value + k for k, name in enumerate(names)}
        if run is not None:
            run.log(values, step=step)
    if run is not None:
        run.finish()  # the last rows committed: part of the script's wall time
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["TRAINLENS_HOME"] = tempfile.mkdtemp(prefix="trainlens-bench-")
    import torch

    import trainlens

    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores; store {os.environ['TRAINLENS_HOME']}")
    rate, caller_us = throughput(args.rows, args.keys)
    print(f"throughput: {rate:,.0f} rows/s committed ({args.rows:,} rows, {args.keys} per call); "
          f"the caller spends {caller_us:.2f} us per row")
    steps = args.rows // args.keys
    bare, logged = [], []
    for repeat in range(args.repeats):
        bare.append(training_loop(steps, args.keys))
        logged.append(training_loop(steps, args.keys, trainlens.init(name=f"overhead {repeat}")))
        print(f"  repeat {repeat + 1}: without logging {bare[-1][0]:.2f} s ({bare[-1][1]:.2f} s CPU), "
              f"with {logged[-1][0]:.2f} s ({logged[-1][1]:.2f} s CPU)")
    (b, bc), (w, wc) = [tuple(statistics.median(t[i] for t in times) for i in (0, 1)) for times in (bare, logged)]
    print(f"overhead: {steps:,} steps x {args.keys} keys = {steps * args.keys:,} rows: {b:.2f} s -> {w:.2f} s "
          f"(+{(w - b) / b:.1%} wall time; CPU {bc:.2f} s -> {wc:.2f} s, +{(wc - bc) / bc:.1%})")


if __name__ == "__main__":
    main()
