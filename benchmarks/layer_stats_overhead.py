"""Throughput cost of LayerStats: a plain Adam loop on the convnet with statistics off, every 100 and every 10 steps.

    python benchmarks/layer_stats_overhead.py [--steps 300] [--repeats 5] [--threads 1] [--batch-size 64]

MNIST-sized random tensors (1x28x28, 10 classes) held in memory, so the loop measures compute, not data
loading. The variants run interleaved over repeats so machine noise hits each alike; examples/s is the
median over repeats. Because a few percent is within the noise of a shared machine, the script also
times every step and reports the extra cost of one sampled step (median sampled minus median plain step),
from which the overhead at any K follows: extra / (K x plain step time). Target: <= 5 % at the default K.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.diagnostics.layer_stats import LayerStats  # noqa: E402
from engine.models import build_model  # noqa: E402


def run(every: int, steps: int, batch_size: int,
        data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, list[float], list[bool]]:
    """Train `steps` steps; returns examples/s and each step's seconds and whether it was sampled."""
    torch.manual_seed(0)
    model = build_model("convnet", channels=1, size=28, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = LayerStats(model, every=every)
    x, y = data
    times, sampled = [], []
    start = time.perf_counter()
    for step in range(steps):
        t0 = time.perf_counter()
        i = (step * batch_size) % (len(x) - batch_size)
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        sampled.append(stats.begin_step(step))
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats.after_backward()
        optimizer.step()
        stats.end_step()
        stats.histograms()
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    stats.close()
    return steps * batch_size / elapsed, times, sampled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (one per job on a shared box)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(4096, 1, 28, 28, generator=generator), torch.randint(0, 10, (4096,), generator=generator))

    variants = {"off": 0, "every=100": 100, "every=10": 10, "every=1": 1}
    throughput: dict[str, list[float]] = {name: [] for name in variants}
    plain_steps: list[float] = []
    sampled_steps: list[float] = []
    hist_steps: list[float] = []
    run(0, 20, args.batch_size, data)  # warm-up: first-call allocations and kernel selection
    for _ in range(args.repeats):
        for name, every in variants.items():
            rate, times, sampled = run(every, args.steps, args.batch_size, data)
            throughput[name].append(rate)
            for step, (seconds, was_sampled) in enumerate(zip(times[1:], sampled[1:]), start=1):
                if every == 0:
                    plain_steps.append(seconds)
                elif every == 10 and was_sampled:
                    (hist_steps if step % 100 == 0 else sampled_steps).append(seconds)

    base = statistics.median(throughput["off"])
    print(f"convnet, Adam, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, "
          f"{args.threads} thread(s); median examples/s")
    for name, rates in throughput.items():
        median = statistics.median(rates)
        print(f"  {name:<10} {median:8.0f} ex/s   overhead {100 * (1 - median / base):+5.1f} %   "
              f"(range {min(rates):.0f}..{max(rates):.0f})")
    plain = statistics.median(plain_steps)
    extra = statistics.median(sampled_steps) - plain
    extra_hist = statistics.median(hist_steps) - plain if hist_steps else float("nan")
    print(f"  plain step {1e3 * plain:.2f} ms; a sampled step costs +{1e3 * extra:.2f} ms, "
          f"+{1e3 * extra_hist:.2f} ms with histograms")
    for k in (10, 50, 100, 500):
        predicted = (extra + (extra_hist - extra) / 10) / (k * plain)  # histograms every 10 x K steps
        print(f"  predicted overhead at every={k:<4} {100 * predicted:5.2f} %")


if __name__ == "__main__":
    main()
