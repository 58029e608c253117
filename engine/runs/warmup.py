"""A worker's warm-up: what every run's first second would otherwise pay, done once before the worker's first claim.

Measured on 2 cores (cProfile of `train` in a fresh worker-like process up to its first `sink.log`): a fresh worker took 3.7 s from the claim to its first logged row, of which 2.8 s were torch.optim's first
optimizer (`Optimizer.__init__` is wrapped by torch's `_disable_dynamo`, which imports torch._dynamo, sympy and
torch.distributed on its first call), 0.5 s reading the default dataset (MNIST-5k's CSV) and 0.3 s importing the
training loop. After this warm-up the same first row takes 0.1 s.

Safe to share across runs: the dataset is cached as read-only numpy arrays (engine.data.loading's per-process
cache; every run indexes its own copies out of them), and nothing here touches the random state a run seeds.
A warm-up that fails is written to the worker's log and skipped: the run then pays the cost itself, as before.
"""

from __future__ import annotations

import time
import traceback
from typing import Callable


def warm_up(log: Callable[[str], None] = lambda text: None) -> float:
    """Import the training loop, run torch.optim's first-use imports and read the default dataset; returns the
    seconds it took. Never raises."""
    started = time.perf_counter()
    try:
        import torch

        import engine.runs.jobs  # noqa: F401 - the training loop and its diagnostics
        from engine.config import RunConfig
        from engine.data.loading import load_run_split

        state = torch.get_rng_state()  # untouched anyway; kept exact in case a future warm-up draws numbers
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first optimizer imports torch._dynamo
        load_run_split(RunConfig(), download=False)  # the default dataset, parsed once per worker
        torch.set_rng_state(state)
    except Exception:  # noqa: BLE001 - a warm-up is an optimisation: never a reason for a worker not to serve
        try:
            log("warm-up skipped:\n" + traceback.format_exc())
        except OSError:
            pass
    return time.perf_counter() - started
