"""The verdict of the model-randomisation sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

Torch-free (the pure figure builders of the Explain page read it), so it lives outside engine.explain.

`engine.explain.quality.randomization_check` re-initialises the layers from the top down and records, at each
stage, the rank correlation between the map of the (partly) random model and the trained model's map. Here
that becomes one number and a verdict:

- the correlation is read on the map as the page shows it by default: the absolute map for methods shown as
  magnitudes (Saliency, SmoothGrad), the signed map for the others. (The absolute map of Integrated
  Gradients stays correlated on MNIST whatever the weights, because it is multiplied by the input and is
  zero wherever the digit has no ink: its ranking is the input's.)
- `survival` is the mean correlation over all the cascade's stages: a method that explains the model loses
  the resemblance as soon as the top layers are random; one that reconstructs the image (Guided Backprop)
  keeps it until the lowest layers go.
- the method passes when `survival` < `THRESHOLD`. Calibrated on models trained here (benchmarks/
  explain_sanity.py, 5 validation digits each): resnet on mnist5k Saliency 0.10, Integrated Gradients -0.09,
  Guided Backprop 0.76; convnet on mnist5k 0.60, 0.06 and 0.71. 0.65 separates the methods the paper finds
  sensitive from Guided Backprop, which it finds insensitive, on both. On the two-convolution convnet
  trained on `shapes` the separation does not hold (Saliency 0.74, Guided Backprop 0.61): with so few
  layers, Guided Backprop's map has little depth in which to ignore the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD = 0.65


def uses_magnitude(default_sign: str) -> bool:
    """Whether a method's map is read as magnitudes (its default view is the absolute value)."""
    return default_sign == "absolute"


def stage_correlations(steps: Sequence[Any], default_sign: str) -> np.ndarray:
    """Per stage, the rank correlation with the trained map on the map as it is shown by default."""
    return np.array([s.spearman if uses_magnitude(default_sign) else s.spearman_signed for s in steps], dtype=float)


def survival(steps: Sequence[Any], default_sign: str) -> float:
    """Mean rank correlation with the trained model's map over the cascade's stages (1 = nothing changed)."""
    values = stage_correlations(steps, default_sign)
    return float(values.mean()) if len(values) else 1.0


def verdict(steps: Sequence[Any], default_sign: str, title: str) -> str:
    """One honest sentence: the number, the threshold and what it means."""
    value = survival(steps, default_sign)
    kind = "|map|" if uses_magnitude(default_sign) else "signed map"
    if value < THRESHOLD:
        return (f"{title} passes: its {kind} keeps a mean rank correlation of {value:.2f} with the trained model's "
                f"map as the layers are randomised (pass below {THRESHOLD:.2f}). It depends on what the model learned.")
    return (f"{title} fails: its {kind} keeps a mean rank correlation of {value:.2f} with the trained model's map "
            f"even as the layers are randomised (pass below {THRESHOLD:.2f}). Much of what it shows comes from the "
            f"image, not from what the model learned: read it as an edge picture, not as an explanation.")
