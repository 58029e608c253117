"""GPU throughput of the engine's training loop against a bare PyTorch loop, at our batch size and airbench's.

    python benchmarks/gpu_throughput.py                      # on CUDA; says so and exits 0 when there is none
    python benchmarks/gpu_throughput.py --device cpu --quick  # a CPU smoke test of this script (~30 s)
    options: [--epochs 3] [--repeats 3] [--batch-sizes 64,512,1024,2048] [--train-size 50000]
             [--sink sqlite|memory] [--layer-stats-every 50] [--budget-s 300]

On a GPU the question is different from benchmarks/throughput.py (CPU): the step itself is microseconds, so
what the loop does around it decides the speed. The bare loop never waits for the device; the engine reads
the loss, the gradient norm and the clip flag back every step (`.item()`: a host-device sync each) and
streams them to a sink. Everything runs in this one process on the same data, network (the convnet) and
optimizer (Adam), interleaved over repeats so machine noise hits every variant alike:
- data: the shapes dataset (3x32x32, CIFAR-10's shape) tiled to --train-size images (default 50,000: the
  size of CIFAR-10's training set), held on the device, batched by `iterate_batches` in both loops;
- bare: zero_grad / forward / cross-entropy / backward / step, nothing read back; timed per epoch between
  `torch.cuda.synchronize()` calls;
- engine: `engine.train.train` with metrics going to a real SQLite store (StoreSink, as in a worker) or a
  MemorySink; its own per-epoch `examples_per_s` (validation excluded, as in the bare loop; the last step's
  `.item()` has synchronised the device when the epoch's clock stops);
- batch sizes: 64 (a typical dashboard run) and 512/1024/2048 around airbench's 1024, the batch size its
  CIFAR-10 speed runs train with;
- extras: the engine with per-layer statistics at the smallest batch size, and (CUDA only) the bare loop
  under bf16 autocast at batch 1024, i.e. what mixed precision could buy: RunConfig offers no AMP setting.
The first epoch of every measurement is warm-up (cuDNN/cuBLAS plans, the allocator) and is dropped; the
median of the other epochs is one sample, and the median over repeats is printed with engine/bare ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.data.loading import DatasetSplit, iterate_batches, load_dataset  # noqa: E402
from engine.models import model_from_config  # noqa: E402

AIRBENCH_BATCH = 1024  # airbench's CIFAR-10 training batch size
NO_CUDA = ("no CUDA device: this benchmark is for GPU machines (run benchmarks/gpu_check.sh there); "
           "`--device cpu --quick` smoke-tests it on this machine")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady(rates: list[float]) -> float:
    """One sample from per-epoch rates: the median without the first (warm-up) epoch when there are more."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def tiled_split(train_size: int, val_size: int) -> DatasetSplit:
    """The shapes dataset (3x32x32), its training images repeated up to `train_size`, validation cut to `val_size`."""
    base = load_dataset("shapes")
    reps = math.ceil(train_size / len(base.train_x))
    train_x = base.train_x.repeat(reps, 1, 1, 1)[:train_size].contiguous()
    train_y = base.train_y.repeat(reps)[:train_size].contiguous()
    return DatasetSplit(base.info, train_x, train_y, base.val_x[:val_size].contiguous(),
                        base.val_y[:val_size].contiguous(), base.mean, base.std, None, None)


def bare(config: RunConfig, split: DatasetSplit, device: torch.device,
         amp_dtype: torch.dtype | None = None) -> list[float]:
    """Examples/s of each epoch of the bare loop (optionally under autocast)."""
    torch.manual_seed(config.seed)
    info = split.info
    model = model_from_config(config, info.channels, info.size, len(info.classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = split.train_x.to(device), split.train_y.to(device)
    model.train()
    rates = []
    for epoch in range(config.epochs):
        sync(device)
        start, seen = time.perf_counter(), 0
        for xb, yb in iterate_batches(x, y, config.batch_size, seed=config.seed, epoch=epoch,
                                      mean=split.mean, std=split.std):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            seen += len(yb)
        sync(device)
        rates.append(seen / (time.perf_counter() - start))
    return rates


class EpochRates:
    """A sink that passes everything on and keeps the `examples_per_s` the loop logs once per epoch."""

    def __init__(self, inner):
        self.inner, self.rates = inner, []

    def log(self, step, epoch, values):
        if "examples_per_s" in values:
            self.rates.append(float(values["examples_per_s"]))
        self.inner.log(step, epoch, values)

    def progress(self, step, total_steps, epoch):
        self.inner.progress(step, total_steps, epoch)

    def checkpoint(self, epoch, kind, path, metrics, staged=None):
        self.inner.checkpoint(epoch, kind, path, metrics, staged=staged)

    def artifact(self, name, value):
        self.inner.artifact(name, value)


def engine(config: RunConfig, split: DatasetSplit, device: torch.device, sink_kind: str, home: Path) -> list[float]:
    """Examples/s of each epoch as the engine's loop logs them."""
    from engine.train import MemorySink, train

    if sink_kind == "memory":
        sink = EpochRates(MemorySink())
        train(config, sink, split=split, device=device.type)
        return sink.rates
    from engine.runs.store import Store
    from engine.runs.worker import StoreSink

    store = Store(home / "bench.db")
    try:
        inner = StoreSink(store, store.create_run(config))
        sink = EpochRates(inner)
        try:
            train(config, sink, split=split, device=device.type)
        finally:
            inner.close()
    finally:
        store.close()
    return sink.rates


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke test: 2,048 images, 2 epochs, 1 repeat")
    parser.add_argument("--epochs", type=int, help="epochs per measurement, the first one dropped (default 3; quick 2)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3; quick 1)")
    parser.add_argument("--batch-sizes", default=f"64,512,{AIRBENCH_BATCH},2048")
    parser.add_argument("--train-size", type=int, help="training images per epoch (default 50,000; quick 2,048)")
    parser.add_argument("--sink", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--layer-stats-every", type=int, default=RunConfig().layer_stats_every,
                        help="K of the 'engine + layer stats' variant at the smallest batch size; 0 = skip it")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="stop starting repeats once another would end past this many seconds")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    epochs = args.epochs or (2 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 3)
    train_size = args.train_size or (2048 if args.quick else 50_000)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or epochs < 1 or repeats < 1 or train_size < 1:
        parser.error("batch sizes, --epochs, --repeats and --train-size must be positive")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()

    split = tiled_split(train_size, 256 if args.quick else 1200)
    # layer statistics off in the base runs: the "+ layer stats" variant measures them on their own
    base = RunConfig(dataset="shapes", model="convnet", optimizer="adam", epochs=epochs, layer_stats_every=0,
                     device=device.type)
    variants: dict[tuple[str, int], Callable[[], list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRAINLENS_HOME"] = tmp  # the store and anything else the engine writes stay in here
        home = Path(tmp)
        for size in sizes:
            config = base.with_updates(batch_size=size)
            variants[("bare", size)] = lambda c=config: bare(c, split, device)
            variants[("engine", size)] = lambda c=config: engine(c, split, device, args.sink, home)
        if args.layer_stats_every:
            config = base.with_updates(batch_size=min(sizes), layer_stats_every=args.layer_stats_every)
            variants[("engine+stats", min(sizes))] = lambda c=config: engine(c, split, device, args.sink, home)
        if device.type == "cuda" and AIRBENCH_BATCH in sizes:
            config = base.with_updates(batch_size=AIRBENCH_BATCH)
            variants[("bare bf16", AIRBENCH_BATCH)] = lambda c=config: bare(c, split, device, torch.bfloat16)

        # warm-up: CUDA context, cuDNN/cuBLAS plans, allocator, the sink's first writes
        warm = base.with_updates(batch_size=sizes[0], epochs=1)
        bare(warm, split, device)
        engine(warm, split, device, args.sink, home)

        results: dict[tuple[str, int], list[float]] = {}
        done, last_repeat_s = 0, 0.0
        for repeat in range(repeats):
            elapsed = time.perf_counter() - started
            if repeat and elapsed + last_repeat_s > args.budget_s:
                print(f"  budget of {args.budget_s:.0f} s reached: stopping after {done} of {repeats} repeats",
                      file=sys.stderr)
                break
            repeat_start = time.perf_counter()
            for key, run in variants.items():
                results.setdefault(key, []).append(steady(run()))
                print(f"  repeat {repeat + 1}/{repeats}: {key[0]} @ batch {key[1]}: "
                      f"{results[key][-1]:,.0f} examples/s", file=sys.stderr)
            last_repeat_s = time.perf_counter() - repeat_start
            done += 1

    median = {key: statistics.median(values) for key, values in results.items()}
    print(f"\n{describe(device)}")
    print(f"convnet on shapes tiled to {train_size:,} 3x32x32 images, Adam, {epochs} epochs (first dropped) "
          f"x {done} repeats, engine sink: {args.sink}; median examples/s")
    print(f"  {'batch':>6}  {'bare loop':>12}  {'engine loop':>12}  {'engine/bare':>11}")
    for size in sizes:
        ratio = median[("engine", size)] / median[("bare", size)]
        note = "  (airbench's batch size)" if size == AIRBENCH_BATCH else ""
        print(f"  {size:>6}  {median[('bare', size)]:>12,.0f}  {median[('engine', size)]:>12,.0f}  "
              f"{ratio:>11.3f}{note}")
    extras = []
    key = ("engine+stats", min(sizes))
    if key in median:
        extras.append((f"engine + layer stats every {args.layer_stats_every} @ batch {key[1]}", median[key],
                       median[key] / median[("engine", key[1])], "of engine"))
    key = ("bare bf16", AIRBENCH_BATCH)
    if key in median:
        extras.append((f"bare loop, bf16 autocast @ batch {key[1]}", median[key],
                       median[key] / median[("bare", key[1])], "of fp32 bare"))
    for name, value, ratio, of in extras:
        print(f"  {name:<44} {value:>12,.0f}  {ratio:.3f}x {of}")
    if args.quick:
        print("  (--quick: a smoke test of this script; too few steps for the figures to mean anything)")

    print("\nsummary")
    for size in sizes:
        tag = " (airbench)" if size == AIRBENCH_BATCH else ""
        print(f"summary: engine/bare @ batch {size}{tag}: {median[('engine', size)] / median[('bare', size)]:.3f}")
    for name, _, ratio, of in extras:
        print(f"summary: {name}: {ratio:.3f}x {of}")
    print(f"summary: total {time.perf_counter() - started:.0f} s on {device.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
