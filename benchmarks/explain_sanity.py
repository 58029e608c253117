"""Calibration of the sanity check's threshold (engine/sanity_check.py): the mean rank correlation with the
trained map over the cascading-randomisation stages, per method, on models trained here for a few seconds.

    PYTHONPATH=. python benchmarks/explain_sanity.py [--models convnet,resnet] [--images 5] [--steps 400]

Methods the paper finds sensitive to the weights (Saliency, Integrated Gradients) should come out low, Guided
Backprop (insensitive) high; the threshold sits between them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from engine.data.loading import normalize
from engine import sanity_check as sanity
from engine.explain.methods import METHODS
from engine.explain.quality import randomization_check

from explain_on_object import train  # noqa: E402 - a sibling script

METHODS_CHECKED = ("saliency", "integrated_gradients", "guided_backprop")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="convnet,resnet")
    parser.add_argument("--datasets", default="mnist5k,shapes")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"threshold: pass below {sanity.THRESHOLD}")
    for model_name in args.models.split(","):
        for dataset in args.datasets.split(","):
            model, split = train(dataset, model_name, args.steps)
            val_x = normalize(split.val_x, split.mean, split.std)
            black = normalize(torch.zeros(1, *split.val_x.shape[1:]), split.mean, split.std)
            for method in METHODS_CHECKED:
                params = {"baseline": black} if method == "integrated_gradients" else {}
                values = [sanity.survival(randomization_check(model, val_x[i:i + 1], int(split.val_y[i]), method,
                                                              **params), METHODS[method].default_sign)
                          for i in range(args.images)]
                verdict = "passes" if np.mean(values) < sanity.THRESHOLD else "fails"
                print(f"{model_name:8s} {dataset:8s} {method:22s} mean rho {np.mean(values):5.2f} "
                      f"[{min(values):.2f}-{max(values):.2f}] {verdict}")


if __name__ == "__main__":
    main()
