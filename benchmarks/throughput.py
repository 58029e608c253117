"""Throughput of the engine's training loop against a bare PyTorch loop and the seed-style DataLoader loop.

    python benchmarks/throughput.py [--epochs 2] [--batch-size 64] [--repeats 3] [--layer-stats-every 50]

Everything runs in this one process on the same data (mnist5k), model (convnet), optimizer (Adam) and
batch size, interleaved over repeats so machine noise hits every variant alike; the median is printed.
- bare: the six-line step over in-memory tensors, nothing logged.
- engine: `engine.train.train` with metrics streaming to a real SQLite store (StoreSink) — the
  per-epoch training throughput it logs (validation and checkpoints excluded, as in the bare loop).
- engine+stats: the same with per-layer statistics every K steps (issue: overhead <= 5 %).
- dataloader: torch DataLoader over PIL images with torchvision transforms (ToTensor, Normalize), the
  pytorch/examples style; and the same with RandomAffine augmentation vs our batched augmentation.
Targets: engine >= 0.95x bare; our data path >= 2x the DataLoader loop, augmentation included.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.data.augment import AugmentSpec  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.data.loading import iterate_batches, load_dataset  # noqa: E402
from engine.models import model_from_config  # noqa: E402

AUGMENT = dict(augment_rotate=15.0, augment_scale=0.1, augment_translate=0.1)


def step_loop(model, optimizer, batches) -> int:
    """The bare six-line step; returns examples seen."""
    seen = 0
    for xb, yb in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        seen += len(yb)
    return seen


def fresh(config: RunConfig, split):
    torch.manual_seed(config.seed)
    model = model_from_config(config, split.info.channels, split.info.size, len(split.info.classes))
    return model, torch.optim.Adam(model.parameters(), lr=config.lr)


def bare(config: RunConfig, split, epochs: int, augment: bool) -> float:
    model, optimizer = fresh(config, split)
    spec = AugmentSpec(config.augment_rotate, config.augment_scale, config.augment_translate) if augment else None
    start, seen = time.perf_counter(), 0
    for epoch in range(epochs):
        seen += step_loop(model, optimizer, iterate_batches(split.train_x, split.train_y, config.batch_size,
                                                            seed=0, epoch=epoch, augment=spec, mean=split.mean,
                                                            std=split.std))
    return seen / (time.perf_counter() - start)


def engine_loop(config: RunConfig, split, home: Path) -> float:
    """Median per-epoch training throughput the engine logs while streaming metrics to SQLite."""
    from engine.runs.store import Store
    from engine.train import train
    from engine.runs.worker import StoreSink

    store = Store(home / "bench.db")
    run_id = store.create_run(config)
    sink = StoreSink(store, run_id)
    train(config, sink, split=split)
    sink.close()
    values = store.metric_history(run_id, "examples_per_s")["value"]
    return float(values.median())


def dataloader(config: RunConfig, split, epochs: int, augment: bool) -> float:
    """pytorch/examples style: a Dataset of PIL images, torchvision transforms, DataLoader(shuffle=True)."""
    from PIL import Image
    from torchvision import transforms

    images = (split.train_x[:, 0] * 255).round().to(torch.uint8).numpy()
    pil = [Image.fromarray(image, mode="L") for image in images]
    steps = [transforms.RandomAffine(degrees=config.augment_rotate, translate=(config.augment_translate,) * 2,
                                     scale=(1 - config.augment_scale, 1 + config.augment_scale))] if augment else []
    transform = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(split.mean, split.std)])

    class Digits(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, index):
            return transform(pil[index]), split.train_y[index]

    loader = torch.utils.data.DataLoader(Digits(), batch_size=config.batch_size, shuffle=True, num_workers=0)
    model, optimizer = fresh(config, split)
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        seen += step_loop(model, optimizer, loader)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer-stats-every", type=int, default=RunConfig().layer_stats_every)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = load_dataset("mnist5k")
    # layer statistics off in the base run: the "+ layer stats" variant measures their cost on their own
    base = RunConfig(batch_size=args.batch_size, epochs=args.epochs, layer_stats_every=0)
    augmented = base.with_updates(**AUGMENT)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRAINLENS_HOME"] = tmp
        variants = {
            "bare loop": lambda: bare(base, split, args.epochs, augment=False),
            "engine loop (metrics to SQLite)": lambda: engine_loop(base, split, Path(tmp)),
            f"engine loop + layer stats every {args.layer_stats_every}":
                lambda: engine_loop(base.with_updates(layer_stats_every=args.layer_stats_every), split, Path(tmp)),
            "DataLoader + PIL transforms": lambda: dataloader(base, split, args.epochs, augment=False),
            "bare loop, batched augmentation": lambda: bare(augmented, split, args.epochs, augment=True),
            "engine loop, batched augmentation": lambda: engine_loop(augmented, split, Path(tmp)),
            "DataLoader + PIL RandomAffine": lambda: dataloader(augmented, split, args.epochs, augment=True),
        }
        for name, run in variants.items():  # warm-up: first-call costs (allocator, kernels) out of the figures
            if "DataLoader" not in name:
                run()
                break
        for repeat in range(args.repeats):
            for name, run in variants.items():
                results.setdefault(name, []).append(run())
                print(f"  repeat {repeat + 1}/{args.repeats}: {name}: {results[name][-1]:,.0f} examples/s", file=sys.stderr)
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"\nmnist5k, convnet, Adam, batch {args.batch_size}, {args.epochs} epochs x {args.repeats} repeats, "
          f"{args.threads} threads (median examples/s)")
    for name, value in median.items():
        print(f"  {name:<45} {value:>9,.0f}")
    stats_name = next(n for n in median if "layer stats" in n)
    print("\nratios")
    print(f"  engine / bare                                {median['engine loop (metrics to SQLite)'] / median['bare loop']:.3f}  (target >= 0.95)")
    print(f"  engine+layer stats / engine                  {median[stats_name] / median['engine loop (metrics to SQLite)']:.3f}  (target >= 0.95)")
    print(f"  bare in-memory / DataLoader (no augment)     {median['bare loop'] / median['DataLoader + PIL transforms']:.2f}")
    print(f"  engine / DataLoader (no augment)             {median['engine loop (metrics to SQLite)'] / median['DataLoader + PIL transforms']:.2f}  (target >= 2)")
    print(f"  engine / DataLoader (augmented)              {median['engine loop, batched augmentation'] / median['DataLoader + PIL RandomAffine']:.2f}  (target >= 2)")


if __name__ == "__main__":
    main()
