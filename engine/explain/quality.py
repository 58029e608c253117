"""How far to trust an attribution map: the scores shown next to every map on the Explain page.

- `infidelity` (Captum): does the map predict how the output changes when random square patches are removed?
  Lower is better; `relative_infidelity` divides it by the output's own mean squared change (0 = perfect,
  about 1 = no better than noise), which makes it readable across models.
- `sensitivity_max` (Captum): how much the map changes under tiny input noise, relative to its size. Lower is steadier.
- `deletion_curve`: the target's probability as the most-attributed pixels are removed (blurred away);
  a faithful map makes it fall fast, so a smaller area is better. A random order is the reference.
- `mask_score` (shapes dataset): the share of the top-attributed pixels that lie on the object, against the
  share a random map would get (the object's area).
- `randomization_check` (Adebayo et al., 2018, "Sanity checks for saliency maps"): re-initialise the layers
  from the top one by one and track the rank correlation with the trained model's map. A method that
  explains the model must lose the correlation; one that stays correlated is an edge detector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.metrics import infidelity, sensitivity_max
from scipy.stats import spearmanr
from torch import Tensor, nn

from engine.explain.methods import Target, copy_model, evaluating, explain, get_method, resolve_params


def channel_map(attributions: Tensor) -> Tensor:
    """[B, C, H, W] (or [C, H, W]) -> [B, H, W] (or [H, W]): the signed total over the channels of a pixel."""
    return attributions.sum(dim=-3)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _span(inputs: Tensor) -> float:
    return float((inputs.max() - inputs.min()).clamp_min(1e-6))


def _patch_perturbation(multiplies_inputs: bool, baseline: float | Tensor):
    """Captum perturb_func: one random square patch (1/8 to 1/3 of the side) per example set to the baseline.

    Removal is the perturbation the paper (Yeh et al., 2019, "square removal") pairs with attributions that
    answer "what if this part were missing". Captum predicts the output change as perturbation · map, so for
    maps already multiplied by (input - baseline) (Integrated Gradients, DeepLIFT, Occlusion...) the
    perturbation is the patch indicator, and for local maps (gradients, Grad-CAM) it is input - perturbed.
    """

    def perturb(x: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = x.shape
        mask = torch.zeros(n, 1, h, w, dtype=torch.bool, device=x.device)
        low, high = max(1, h // 8), max(2, h // 3 + 1)
        for k in range(n):
            side = int(torch.randint(low, high, ()))
            top, left = int(torch.randint(0, h - side + 1, ())), int(torch.randint(0, w - side + 1, ()))
            mask[k, :, top:top + side, left:left + side] = True
        base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
        perturbed = torch.where(mask, base, x)
        return (mask.expand_as(x).to(x.dtype) if multiplies_inputs else x - perturbed), perturbed

    return perturb


def infidelity_score(model: nn.Module, inputs: Tensor, attributions: Tensor, target: Target, *,
                     multiplies_inputs: bool, baseline: float | Tensor = 0.0, samples: int = 32,
                     seed: int = 0, normalize: bool = True) -> Tensor:
    """Captum's infidelity per example [B] under random square removals (see `_patch_perturbation`).

    normalize=True rescales the map optimally first, so methods with different units compare fairly.
    """
    with _seeded(seed), torch.no_grad(), evaluating(model):
        return infidelity(model, _patch_perturbation(multiplies_inputs, baseline), inputs, attributions,
                          target=target, n_perturb_samples=samples, normalize=normalize).detach().cpu()


def relative_infidelity(model: nn.Module, inputs: Tensor, attributions: Tensor, target: Target, *,
                        multiplies_inputs: bool, baseline: float | Tensor = 0.0, samples: int = 32,
                        seed: int = 0) -> Tensor:
    """Infidelity divided by the mean squared output change under the same removals [B].

    Captum's number has the units of the squared logit and cannot be read alone; this ratio can: 0 = the map
    predicts every change, about 1 = it predicts nothing (a map of noise scores 0.9-1 with 32 samples).
    """
    kwargs = dict(multiplies_inputs=multiplies_inputs, baseline=baseline, samples=samples, seed=seed)
    score = infidelity_score(model, inputs, attributions, target, **kwargs)
    # an all-zero map explains nothing: its unnormalised infidelity is the mean squared output change
    change = infidelity_score(model, inputs, torch.zeros_like(attributions), target, normalize=False, **kwargs)
    return score / change.clamp_min(1e-12)


def sensitivity_score(model: nn.Module, inputs: Tensor, target: Target, method: str, *, radius: float = 0.02,
                      samples: int = 8, seed: int = 0, **params: Any) -> Tensor:
    """Captum's sensitivity_max per example [B]: max relative change of the map under uniform noise of
    `radius` x the input's range (Frobenius norm of the change / norm of the map)."""

    def explanation(x: Tensor | tuple[Tensor, ...], target: Target) -> tuple[Tensor, ...]:
        # Captum hands inputs over as a one-element tuple and accepts a tuple back
        x = x[0] if isinstance(x, tuple) else x
        return (explain(model, x, target, method, **params),)

    with _seeded(seed):
        return sensitivity_max(explanation, inputs, perturb_radius=radius * _span(inputs), n_perturb_samples=samples,
                               target=target).detach().cpu()


@dataclass
class DeletionCurve:
    fractions: np.ndarray  # share of pixels removed, 0..1
    scores: np.ndarray  # probability of the target after removing them
    area: float  # area under `scores`: lower = the map found what the model needed
    random_scores: np.ndarray  # the same with pixels removed in random order
    random_area: float


def deletion_curve(model: nn.Module, inputs: Tensor, attributions: Tensor, target: int, *, steps: int = 20,
                   fill: str | float | Tensor = "blur", seed: int = 0) -> DeletionCurve:
    """Remove the most positively attributed pixels first for one input [1, C, H, W]: `steps` + 1 points from
    nothing removed to everything removed, in one batched forward.

    fill: what a removed pixel becomes. "blur" (default): the pixel of a heavily blurred copy, so the picture
    fades instead of turning into salt-and-pepper noise the model never saw (with a constant fill, removing
    random pixels often hurts the model more than removing the important ones). A number or tensor: that
    value in the model's input space (e.g. the normalised black).
    """
    x = inputs[:1].detach()
    _, c, h, w = x.shape
    base = _blurred(x) if isinstance(fill, str) else torch.as_tensor(fill, dtype=x.dtype, device=x.device).expand_as(x)
    order = torch.argsort(channel_map(attributions[:1].detach().to(x.device)).flatten(), descending=True)
    generator = torch.Generator().manual_seed(seed)
    random_order = torch.randperm(h * w, generator=generator).to(x.device)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = [round(f * h * w) for f in fractions]

    def scores_for(ranking: Tensor) -> np.ndarray:
        removed = torch.zeros(len(counts), h * w, dtype=torch.bool, device=x.device)
        for row, count in enumerate(counts):
            removed[row, ranking[:count]] = True
        removed = removed.view(len(counts), 1, h, w)
        batch = torch.where(removed, base, x.expand(len(counts), c, h, w))
        with torch.no_grad(), evaluating(model):
            probs = torch.softmax(model(batch), dim=1)[:, target]
        return probs.cpu().numpy()

    scores, random_scores = scores_for(order), scores_for(random_order)
    return DeletionCurve(fractions, scores, float(np.trapezoid(scores, fractions)), random_scores,
                         float(np.trapezoid(random_scores, fractions)))


def _blurred(x: Tensor) -> Tensor:
    kernel = max(3, min(x.shape[-2:]) // 3) | 1  # odd, a third of the side: shapes and strokes dissolve
    pad = kernel // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), kernel, stride=1)


@dataclass
class MaskScore:
    share: float  # share of the top-k attributed pixels inside the object (k = the object's area)
    chance: float  # what a random map scores on average: the object's share of the image


def mask_score(attributions: Tensor, mask: Tensor) -> MaskScore:
    """How well a map [C, H, W] (or [1, C, H, W]) finds the object of a bool mask [H, W].

    Pixels are ranked by |channel total|: evidence for or against the class both point at what mattered.
    """
    importance = channel_map(attributions.detach().reshape(-1, *attributions.shape[-3:])[0]).abs().flatten().cpu()
    inside = mask.flatten().bool().cpu()
    k = int(inside.sum())
    if k == 0:
        raise ValueError("the mask is empty: no object pixels to compare with")
    top = torch.topk(importance, k).indices
    return MaskScore(float(inside[top].float().mean()), k / inside.numel())


@dataclass
class RandomizationStep:
    layer: str  # the layer re-initialised at this step (all layers above it are already random)
    spearman: float  # rank correlation of |map| with the trained model's |map|
    spearman_signed: float  # the same on the signed maps
    pixel_map: np.ndarray | None = None  # the map [H, W] at this step (signed channel total), to show side by side


def randomization_check(model: nn.Module, inputs: Tensor, target: Target, method: str, *, seed: int = 0,
                        **params: Any) -> list[RandomizationStep]:
    """Cascading model-parameter randomization from the output layer down, on a copy of the model."""
    reference = channel_map(explain(model, inputs, target, method, **params)[:1]).flatten().cpu().numpy()
    randomized = copy_model(model)
    steps: list[RandomizationStep] = []
    with _seeded(seed):
        for name, layer in reversed(_parameter_layers(randomized)):
            layer.reset_parameters()
            current_map = channel_map(explain(randomized, inputs, target, method, **params)[0]).cpu().numpy()
            current = current_map.flatten()
            steps.append(RandomizationStep(name, _spearman(np.abs(reference), np.abs(current)),
                                           _spearman(reference, current), current_map.astype(np.float64)))
    return steps


def _parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own weights and can re-initialise them, in forward (registration) order."""
    return [(name, m) for name, m in model.named_modules()
            if name and hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant map carries no ranking: nothing of the trained map survives
    return float(spearmanr(a, b).statistic)


@dataclass
class Quality:
    """All the scores of one map, as shown next to it."""

    infidelity: float
    sensitivity: float | None  # None when not computed (it re-runs the method several times)
    deletion: DeletionCurve
    mask: MaskScore | None  # only when a ground-truth object mask exists (shapes dataset)
    seconds: float  # time taken by the scores themselves
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | None]:
        """Flat numbers for a table."""
        return {"infidelity": self.infidelity, "sensitivity_max": self.sensitivity,
                "deletion_auc": self.deletion.area, "deletion_auc_random": self.deletion.random_area,
                "mask_share": self.mask.share if self.mask else None,
                "mask_chance": self.mask.chance if self.mask else None, **self.extra}


def quality(model: nn.Module, inputs: Tensor, target: int, method: str, attributions: Tensor, *,
            mask: Tensor | None = None, sensitivity: bool = True, **params: Any) -> Quality:
    """Every score for one input [1, C, H, W] and its map; `mask` [H, W] adds the object score. `params` are
    the method's (its `baseline` also fills the patches infidelity removes).
    `sensitivity=False` skips the one score that re-runs the method (8 more runs)."""
    start = time.perf_counter()
    params = resolve_params(method, params)  # ValueError for a typo before any work
    inputs = inputs[:1].detach()
    removal = dict(multiplies_inputs=get_method(method).multiplies_inputs, baseline=params.get("baseline", 0.0))
    infid = float(infidelity_score(model, inputs, attributions[:1], target, **removal)[0])
    relative = float(relative_infidelity(model, inputs, attributions[:1], target, **removal)[0])
    sens = float(sensitivity_score(model, inputs, target, method, **params)[0]) if sensitivity else None
    curve = deletion_curve(model, inputs, attributions[:1], target)
    masked = mask_score(attributions[:1], mask) if mask is not None else None
    return Quality(infid, sens, curve, masked, time.perf_counter() - start, {"infidelity_relative": relative})
