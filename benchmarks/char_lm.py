"""Character-level language models: does attention beat counting on `names`, and how fast does a transformer train?

Part 1 (quality): the models of the "From counting to attention" lesson (its own configs: same data, same budget),
each trained on seeds 0-2 through engine.train.train (the dashboard's loop, in this process); reports the final
validation loss in nats and bits per character (mean ± std over seeds), the share of the last recorded samples that
are new (not a training name) and real (a held-out name), and whether every sample is a string of a-z.

Part 2 (throughput): the transformer's training throughput in characters/s (labelled positions trained per second,
the loop's `chars_per_s`, its last epoch: warm) for the lesson's small transformer on names and a baby GPT (4 layers,
4 heads, 128-d embeddings, 64-character context) on the reviews corpus. `--device cuda` runs part 2 on a GPU.

    python benchmarks/char_lm.py [--seeds 0,1,2] [--threads 1] [--device cpu|cuda] [--skip-quality]
"""

from __future__ import annotations

import argparse
import statistics
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine import lessons  # noqa: E402
from engine.data.loading import load_run_split  # noqa: E402
from engine.train import MemorySink, train  # noqa: E402

LETTERS = set(string.ascii_lowercase)


def last_samples(sink: MemorySink) -> dict:
    steps = [int(k.split("/")[1]) for k in sink.artifacts if k.startswith("samples/")]
    return sink.artifacts[f"samples/{max(steps)}"]


def quality(seeds: list[int]) -> None:
    lesson = lessons.get_lesson("counting_to_attention")
    print(f"{'model':28} {'val loss (nats)':>16} {'bits/char':>12} {'new':>5} {'real':>5} {'a-z':>4} {'s/run':>6}")
    for variant in lesson.variants:
        losses, new, real, alphabet, seconds = [], [], [], True, []
        for seed in seeds:
            config = lesson.base.with_updates(**variant.changes, seed=seed, device="cpu")
            sink = MemorySink()
            started = time.perf_counter()
            train(config, sink, split=load_run_split(config))
            seconds.append(time.perf_counter() - started)
            losses.append(sink.series("val_loss")[-1])
            samples = last_samples(sink)
            new.append(samples["new"])
            real.append(samples["real"])
            alphabet &= all(set(s) <= LETTERS for s in samples["samples"])
        mean, spread = statistics.mean(losses), statistics.pstdev(losses)
        print(f"{variant.label:28} {mean:>9.3f} ± {spread:.3f} {mean / 0.6931471805599453:>7.3f} ± "
              f"{spread / 0.6931471805599453:.3f} {statistics.mean(new):>5.2f} {statistics.mean(real):>5.2f} "
              f"{'yes' if alphabet else 'no':>4} {statistics.mean(seconds):>6.1f}")


THROUGHPUT = {
    "lesson transformer (names)": dict(dataset="names", model="transformer", embed_dim=32, depth=1, heads=4,
                                       block_size=16, batch_size=32, epochs=2),
    "baby GPT (reviews, 4x128, ctx 64)": dict(dataset="reviews", model="transformer", embed_dim=128, depth=4,
                                              heads=4, block_size=64, batch_size=64, epochs=2, train_limit=1500),
}


def throughput(device: str) -> None:
    from engine.config import RunConfig

    print(f"\n{'transformer':36} {'device':>6} {'chars/s':>10} {'params':>9}")
    for label, changes in THROUGHPUT.items():
        config = RunConfig.from_dict({**RunConfig().to_dict(), **changes, "lr": 3e-3, "layer_stats_every": 0,
                                      "device": device})
        sink = MemorySink()
        train(config, sink, device=device, split=load_run_split(config))
        rate = sink.series("chars_per_s")[-1]  # the last epoch: the first one pays for warm-up
        params = sink.artifacts["model_summary"]["parameters"]
        print(f"{label:36} {device:>6} {rate:>10,.0f} {params:>9,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--skip-quality", action="store_true", help="throughput only (e.g. on a lent GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_quality:
        quality([int(s) for s in args.seeds.split(",")])
    throughput(args.device)


if __name__ == "__main__":
    main()
