"""Text models on `sentiment`: training tokens/s, explanation tokens/s, and the lesson's accuracies.

For each text model, trains a full run through engine.train.train (the same loop as the dashboard: 4,800
training reviews, the default negation/contrast shares) and reports the wall time, the validation accuracy
overall and on the negation/contrast subset (val_acc_hard), training throughput in tokens/s (real tokens,
padding not counted), and Integrated Gradients / Occlusion throughput in explained tokens/s on 200
validation sentences. Not a test: run it on an idle machine.

    python benchmarks/text_throughput.py [--epochs 3] [--threads 2] [--models bow,gru]
"""

from __future__ import annotations

import argparse
import time

import torch

from engine.config import RunConfig
from engine.data.loading import load_run_split
from engine.explain.methods import explain
from engine.train import MemorySink, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="bow,textcnn,rnn,gru,lstm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'model':8} {'seconds':>8} {'val_acc':>8} {'hard':>6} {'easy':>6} {'train tok/s':>12} "
          f"{'IG tok/s':>9} {'occl tok/s':>10}")
    for name in args.models.split(","):
        config = RunConfig(dataset="sentiment", model=name, epochs=args.epochs, batch_size=64, hidden=64,
                           embed_dim=32, lr=3e-3, layer_stats_every=0)
        split = load_run_split(config)
        tokens_per_epoch = int((split.train_x != 0).sum())
        sink = MemorySink()
        started = time.perf_counter()
        train(config, sink, split=split)
        seconds = time.perf_counter() - started
        train_tps = tokens_per_epoch * args.epochs / sum(
            len(split.train_y) / v for v in sink.series("examples_per_s"))
        from engine.text.models import build_text_model  # the trained weights are not returned: time a fresh model
        model = build_text_model(name, vocab_size=split.info.size, num_classes=2, embed_dim=32, hidden=64).eval()
        ids, labels = split.val_x[:200], split.val_y[:200]
        n_tokens = int((ids != 0).sum())
        rates = []
        for method in ("integrated_gradients", "occlusion"):
            started = time.perf_counter()
            explain(model, ids, labels, method)
            rates.append(n_tokens / (time.perf_counter() - started))
        print(f"{name:8} {seconds:8.1f} {sink.series('val_acc')[-1]:8.3f} {sink.series('val_acc_hard')[-1]:6.3f} "
              f"{sink.series('val_acc_easy')[-1]:6.3f} {train_tps:12,.0f} {rates[0]:9,.0f} {rates[1]:10,.0f}")


if __name__ == "__main__":
    main()
