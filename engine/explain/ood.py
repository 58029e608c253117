"""Is this input like the ones the model was trained on? A warning before explaining something it never saw.

A classifier answers every input with a class, and often with high confidence: the digit model calls a photo
of a temple a "4" at 97%. Its attribution map then describes the model's reaction to an alien input, not
the picture. `OodDetector` is calibrated on a run's validation split and scores a new input on two kinds of
evidence, each against the range the validation images span:

- the energy score of the logits, -logsumexp(logits) (Liu et al., 2020, "Energy-based Out-of-distribution
  Detection"): lower on inputs like the training data, higher on others;
- input statistics of the picture as the model sees it (pixels in [0, 1]): mean brightness, contrast,
  the share of pixels that stand out from the background (foreground share), edge density and the share of
  mid-tones (a photo turned grey is mostly mid-tones; a digit is ink or paper);
- how far the picture is from the validation images' own subspace: the reconstruction error of a PCA
  (32 components, pixels averaged down to 16x16) fitted on them. A photo, noise or a blank page all lie
  far from it, even when a simple statistic happens to match.

Each statistic becomes a distance in units of the validation images' spread beyond their own 0.5th-99.5th
percentile range (0 inside it); the input is flagged when the largest distance exceeds `THRESHOLD`, chosen
so that at most 1% of the validation images themselves are flagged (see `calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

FEATURES = ("energy", "brightness", "contrast", "foreground share", "edge density", "mid-tone share",
            "unlike the validation images")
_PCA_SIDE = 16  # pixels are averaged down to at most 16x16 before the PCA: enough to tell a photo from a digit
_PCA_COMPONENTS = 32
LOW, HIGH = 0.5, 99.5  # percentiles of the validation images that bound "in distribution"
THRESHOLD = 1.0  # spreads beyond the validation range before an input is called unfamiliar


def input_statistics(pixels: Tensor) -> np.ndarray:
    """[B, C, H, W] pixels in [0, 1] -> [B, 4]: brightness, contrast, foreground share, edge density."""
    grey = pixels.detach().float().cpu().mean(dim=1)  # [B, H, W]
    flat = grey.flatten(1)
    # the background is the border's typical value; foreground = pixels clearly different from it
    border = torch.cat([grey[:, 0], grey[:, -1], grey[:, :, 0], grey[:, :, -1]], dim=1)
    background = border.median(dim=1).values[:, None]
    foreground = ((flat - background).abs() > 0.25).float().mean(1)
    edges = ((grey[:, 1:] - grey[:, :-1]).abs().mean((1, 2)) + (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2))) / 2
    mid = ((flat > 0.2) & (flat < 0.8)).float().mean(1)
    return torch.stack([flat.mean(1), flat.std(1), foreground, edges, mid], dim=1).numpy().astype(np.float64)


def _small(pixels: Tensor) -> np.ndarray:
    """[B, C, H, W] -> [B, C * h * w] with h, w <= _PCA_SIDE (average pooling)."""
    x = pixels.detach().float().cpu()
    factor = max(1, -(-max(x.shape[-2:]) // _PCA_SIDE))
    if factor > 1:
        x = torch.nn.functional.avg_pool2d(x, factor, ceil_mode=True)
    return x.flatten(1).numpy().astype(np.float64)


@dataclass
class Subspace:
    """The validation images' principal subspace: mean [D] and components [K, D]."""

    mean: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, pixels: Tensor) -> "Subspace":
        x = _small(pixels)
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:min(_PCA_COMPONENTS, len(x) // 4, vt.shape[0])])

    def error(self, pixels: Tensor) -> np.ndarray:
        """Root-mean-square reconstruction error per image [B]."""
        centred = _small(pixels) - self.mean
        residual = centred - (centred @ self.components.T) @ self.components
        return np.sqrt((residual ** 2).mean(1))


def energy(model: nn.Module, inputs: Tensor) -> np.ndarray:
    """-logsumexp of the logits per input [B] (eval mode, no gradients)."""
    from engine.explain.methods import evaluating, _device_of  # noqa: PLC0415 - the one Captum-free helper pair

    with evaluating(model), torch.no_grad():
        logits = torch.cat([model(inputs[i:i + 256].to(_device_of(model))).float().cpu()
                            for i in range(0, len(inputs), 256)])
    return (-torch.logsumexp(logits, dim=1)).numpy().astype(np.float64)


@dataclass
class OodReport:
    """How unfamiliar one input is."""

    distances: dict[str, float]  # per feature: spreads outside the validation range (0 inside)
    unfamiliar: bool  # the largest distance exceeds THRESHOLD

    @property
    def worst(self) -> str:
        return max(self.distances, key=self.distances.get)

    def message(self) -> str:
        """The warning shown above the maps (empty when the input looks familiar)."""
        if not self.unfamiliar:
            return ""
        reasons = ", ".join(f"{name} {d:.1f}" for name, d in sorted(self.distances.items(), key=lambda kv: -kv[1])
                            if d > THRESHOLD)
        return ("This input is unlike anything the model was trained on: it lies outside the range of the "
                f"validation images ({reasons} spreads beyond it). The prediction is not to be trusted, and the maps "
                "below describe how the model reacts to an unfamiliar input, not what is in the picture.")


@dataclass
class OodDetector:
    """Per-feature validation ranges: `low`, `high` (percentiles) and `spread` (interquartile range)."""

    low: np.ndarray
    high: np.ndarray
    spread: np.ndarray
    subspace: Subspace
    false_alarms: float  # share of the calibration images themselves flagged

    def features(self, model: nn.Module, inputs: Tensor, pixels: Tensor) -> np.ndarray:
        return _features(model, inputs, pixels, self.subspace)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """[B, F] features -> [B, F] spreads outside [low, high], 0 inside."""
        below = (self.low - features) / self.spread
        above = (features - self.high) / self.spread
        return np.clip(np.maximum(below, above), 0.0, None)

    def score(self, model: nn.Module, inputs: Tensor, pixels: Tensor) -> OodReport:
        """One input: model inputs [1, C, H, W] (normalised) and its pixels [1 or C, H, W] in [0, 1]."""
        pixels = pixels if pixels.dim() == 4 else pixels[None]
        row = self.distances(self.features(model, inputs[:1], pixels[:1]))[0]
        return OodReport(dict(zip(FEATURES, map(float, row))), bool(row.max() > THRESHOLD))


def _features(model: nn.Module, inputs: Tensor, pixels: Tensor, subspace: Subspace) -> np.ndarray:
    return np.concatenate([energy(model, inputs)[:, None], input_statistics(pixels), subspace.error(pixels)[:, None]],
                          axis=1)


def calibrate(model: nn.Module, inputs: Tensor, pixels: Tensor) -> OodDetector:
    """Fit the ranges on validation images: model inputs [N, C, H, W] and the same images' pixels in [0, 1]."""
    subspace = Subspace.fit(pixels)
    features = _features(model, inputs, pixels, subspace)
    low, high = np.percentile(features, LOW, axis=0), np.percentile(features, HIGH, axis=0)
    q1, q3 = np.percentile(features, 25, axis=0), np.percentile(features, 75, axis=0)
    spread = np.maximum(q3 - q1, 1e-3 * (np.abs(high) + 1))  # a constant feature must not divide by zero
    detector = OodDetector(low, high, spread, subspace, 0.0)
    detector.false_alarms = float((detector.distances(features).max(axis=1) > THRESHOLD).mean())
    return detector


def calibrate_on_split(model: nn.Module, spec, split, limit: int = 1000) -> OodDetector:
    """`calibrate` on (up to `limit` of) a run's validation images, prepared as the run prepares them."""
    pixels = split.val_x[:limit]
    return calibrate(model, spec.normalize(pixels), pixels)
