"""Benchmark: time per attribution method for one 28x28 digit on the convnet, on this CPU.

    python benchmarks/explain_methods.py [--repeats 15] [--threads N] [--quality]

Times `engine.explain.methods.explain` (defaults as the Explain page uses them, black baseline) for every method in
the registry on one 1x28x28 input of an untrained MNIST-shaped convnet (the cost does not depend on the
weights), plus Integrated Gradients with several `internal_batch_size` values. Prints the best and median
milliseconds; the methods take turns so that load from other processes hits them alike, and the best is the
figure to compare against the targets (Saliency <= 50 ms, Integrated Gradients with 50 steps <= 1 s).
With --quality it also times the quality scores (infidelity, sensitivity, deletion curve) per method.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo
from engine.explain.methods import METHODS, explain
from engine.explain.quality import quality
from engine.explain.images import input_spec
from engine.models import build_model

TARGETS_MS = {"saliency": 50.0, "integrated_gradients": 1000.0}


def milliseconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--quality", action="store_true", help="also time the quality scores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("convnet", channels=1, size=28, num_classes=10).eval()
    spec = input_spec("mnist5k", 1, 28, (0.1307,), (0.3081,), light_background=False)
    x = spec.prepare_pixels(torch.rand(1, 28, 28))
    black = spec.black()

    cases: dict[str, Callable[[], torch.Tensor]] = {}
    for name, method in METHODS.items():
        params = {"baseline": black} if "baseline" in method.defaults else {}
        cases[name] = lambda name=name, params=params: explain(model, x, 3, name, **params)
    for batch in (10, 25):
        cases[f"integrated_gradients (internal_batch_size={batch})"] = (
            lambda batch=batch: explain(model, x, 3, "integrated_gradients", baseline=black, internal_batch_size=batch))

    results: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()  # warm-up: first calls pay for lazy initialisation
    for _ in range(args.repeats):  # round-robin: background load is shared fairly between methods
        for name, fn in cases.items():
            results[name].append(milliseconds(fn))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 1x1x28x28 on the convnet, "
          f"{args.repeats} repeats")
    print(f"{'method':58s} {'best ms':>9s} {'median ms':>10s}  target")
    for name, times in results.items():
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else f"<= {target:.0f} ms {'OK' if min(times) <= target else 'MISSED'}"
        print(f"{name:58s} {min(times):9.1f} {statistics.median(times):10.1f}  {verdict}")

    if args.quality:
        print(f"\n{'quality scores of':58s} {'seconds':>9s}")
        for name, method in METHODS.items():
            params = {"baseline": black} if "baseline" in method.defaults else {}
            attributions = explain(model, x, 3, name, **params)
            start = time.perf_counter()
            quality(model, x, 3, name, attributions, **params)
            print(f"{name:58s} {time.perf_counter() - start:9.2f}")


if __name__ == "__main__":
    main()
