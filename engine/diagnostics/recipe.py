"""The sanity checks of Karpathy's "A Recipe for Training Neural Networks", run for every training run.

Each check returns one JSON-able dict of the same shape, so the page renders every badge the same way:
    {"name": str, "title": str, "status": "pass" | "warn" | "skip", "value": float | None,
     "numbers": {label: number}, "message": str (what was measured and what to do), "why": str (one line)}
"skip" means the check could not run (no data) or does not apply (the loss at init of a run started from another's
weights); it is never a silent pass.

Public API
    loss_at_init_check(model, x, y, num_classes, rel_tol=0.15) -> dict
    input_independent_check(model, x, y, loss_fn=F.cross_entropy, batch_size=512, min_gain=0.05) -> dict
    overfit_one_batch(model, make_optimizer, x, y, steps=200, target_loss=0.05, ...) -> dict
    clipping_check(grad_norms, clipped, clip_value=None, max_fraction=0.5) -> dict
    layer_health_checks(rows, judged=None) -> list[dict]   dead units, saturation, update ratio from LayerStats rows

`make_optimizer(params) -> torch.optim.Optimizer` builds the run's configured optimizer, e.g.
`lambda params: make_optimizer(params, config)` over engine.optim.
Cost of overfit_one_batch (16 MNIST images, 200-step budget, target 0.05, measured on the shared 2-core
CPU, 1 thread): reaching the target takes 0.05-0.1 s for mlp/convnet with Adam 1e-3 and ~1 s for
resnet/lstm; a configuration that never gets there spends the whole budget: 0.2-0.6 s mlp/convnet, 3 s
lstm, ~12 s resnet with plain SGD 1e-2 (measured without a cap; `max_seconds`, 10 s by default, now stops it
there). Hence: run it on request and in lessons, not on every run (2 s would keep it affordable at the start of
every run if that is ever wanted).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.records import OVERFIT_WHY, UPDATE_RATIO_REFERENCE

MakeOptimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

WHY = {
    "loss_at_init": "A freshly initialised classifier should be unsure of every class, so its loss is -ln(1/C); "
                    "far above that, the first steps are wasted undoing confident wrong guesses (the hockey stick).",
    "input_independent": "If zeroing the inputs costs the model nothing, it is not using them: it has only learned "
                         "the class frequencies, which points to a data or wiring bug.",
    "overfit_one_batch": OVERFIT_WHY,
    "clipping": "When most steps are clipped the threshold, not the learning rate, sets the step size: "
                "the learning rate is probably too high or the threshold too low.",
    "dead_units": "A unit that outputs zero for every example gets no gradient and never recovers: "
                  "capacity wasted, usually from a too-high learning rate or a bad initialisation.",
    "saturation": "A tanh/sigmoid output near +-1 passes almost no gradient, so saturated layers learn slowly "
                  "or not at all; makemore aims for a few percent at most.",
    "update_ratio": "Updates around 1/1000 of the weights per step (log10 ratio -3) learn steadily; far above, "
                    "training is unstable, far below it barely moves.",
}


def _check(name: str, title: str, status: str, value: float | None, numbers: dict[str, Any], message: str) -> dict[str, Any]:
    return {"name": name, "title": title, "status": status, "value": _finite_or_none(value),
            "numbers": {k: _finite_or_none(v) for k, v in numbers.items()}, "message": message, "why": WHY[name]}


def _device(model: nn.Module) -> torch.device:
    """Where the model's weights live: inputs given on the CPU are moved there."""
    return next(model.parameters()).device


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is stored as null."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


@torch.no_grad()
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over (x, y) in batches, weighting each batch by its size."""
    total, correct = 0.0, 0
    device = _device(model)
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(device))
        target = y[i:i + batch_size].to(device)
        total += float(loss_fn(logits, target)) * len(target)
        correct += int((logits.argmax(1) == target).sum())
    return total / len(x), correct / len(x)


def loss_at_init_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                       rel_tol: float = 0.15, started_from: str | None = None) -> dict[str, Any]:
    """Cross-entropy of the untrained model on one batch against -ln(1/C).

    `started_from`: the run the weights come from (a fine-tuning run): its loss at the start is measured and shown,
    but skipped as a check, since trained weights are not expected to be unsure of every class.

    Measured as the first training step sees it (batch-norm on batch statistics) but with dropout off, on a
    copy so running statistics are not touched. Warns outside expected x (1 +- rel_tol): 15% passes every
    default zoo model on MNIST (the worst, a depth-4 ResNet with skips, starts ~12% high) and catches a last
    layer scaled x10 on the MLP/ResNet (x30 on the convnet, whose penultimate activations are tiny).
    """
    expected = math.log(num_classes)
    probe = copy.deepcopy(model).train()
    for module in probe.modules():
        if isinstance(module, _DROPOUT):
            module.eval()
    with torch.no_grad():
        logits = probe(x.to(_device(model))).float()
        loss = float(F.cross_entropy(logits, y.to(logits.device)))
    logit_std = float(logits.std()) if logits.numel() > 1 else 0.0
    ratio = loss / expected
    numbers = {"loss": loss, "expected": expected, "ratio": ratio, "logit_std": logit_std, "classes": num_classes}
    if not math.isfinite(loss):
        return _check("loss_at_init", "Loss at initialisation", "warn", loss, numbers,
                      f"The loss at initialisation is {loss}: the forward pass already overflows. Check the input "
                      "scale and the initialisation of every layer.")
    if started_from:
        return _check("loss_at_init", "Loss at initialisation", "skip", loss, numbers,
                      f"Loss at the start {loss:.3f} vs {expected:.3f} = -ln(1/{num_classes}): not checked, since the "
                      f"weights come from run {started_from}, and a trained network is not expected to be unsure of "
                      "every class.")
    if ratio > 1 + rel_tol:
        message = (f"Loss at init {loss:.3f} is {ratio:.2f}x the {expected:.3f} of a uniform guess over {num_classes} "
                   f"classes (logit std {logit_std:.2f}): the network starts confidently wrong. Scale the final layer's "
                   "weights down (e.g. x0.1) and set its bias to zero.")
        status = "warn"
    elif ratio < 1 - rel_tol:
        message = (f"Loss at init {loss:.3f} is below the {expected:.3f} of a uniform guess: the model is not freshly "
                   "initialised, its final bias already encodes the class frequencies, or labels leak into the inputs.")
        status = "warn"
    else:
        message = f"Loss at init {loss:.3f} vs {expected:.3f} = -ln(1/{num_classes}) ({ratio:.2f}x): a sane start."
        status = "pass"
    return _check("loss_at_init", "Loss at initialisation", status, loss, numbers, message)


def input_independent_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = F.cross_entropy,
                            batch_size: int = 512, min_gain: float = 0.05) -> dict[str, Any]:
    """Loss on the real inputs vs the same inputs zeroed, for a model trained a little (e.g. one epoch).

    Karpathy's input-independent baseline trains a model on zeroed inputs; evaluating the trained model on
    zeroed inputs is the cheap stand-in: if the real inputs do not lower the loss by at least `min_gain`
    (relative), the model has not learned to use them. Evaluated in eval mode; the mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        loss_real, acc_real = _mean_loss(model, x, y, loss_fn, batch_size)
        loss_zero, acc_zero = _mean_loss(model, torch.zeros_like(x), y, loss_fn, batch_size)
    finally:
        model.train(was_training)
    gain = 1 - loss_real / loss_zero if loss_zero > 0 else 0.0
    numbers = {"loss_real": loss_real, "loss_zeroed": loss_zero, "gain": gain, "accuracy_real": acc_real,
               "accuracy_zeroed": acc_zero}
    if math.isfinite(gain) and gain >= min_gain:
        status = "pass"
        message = (f"Real inputs: loss {loss_real:.3f}, accuracy {acc_real:.1%}; zeroed inputs: loss {loss_zero:.3f}, "
                   f"accuracy {acc_zero:.1%}. The model uses its inputs.")
    else:
        status = "warn"
        message = (f"Real inputs give loss {loss_real:.3f}, no better than {loss_zero:.3f} with the inputs zeroed: the "
                   "model ignores its inputs. Check that images and labels are paired, the inputs are not all constant, "
                   "and the learning rate is not so low that nothing has been learned yet.")
    return _check("input_independent", "Input-independent baseline", status, loss_real, numbers, message)


def overfit_one_batch(model: nn.Module, make_optimizer: MakeOptimizer, x: torch.Tensor, y: torch.Tensor,
                      steps: int = 200, target_loss: float = 0.05, loss_fn: LossFn = F.cross_entropy,
                      disable_dropout: bool = True, max_seconds: float = 10.0) -> dict[str, Any]:
    """Train a deep copy of `model` on the single batch (x, y) until its loss is below `target_loss`.

    The original model is never touched. Dropout is switched off by default: the question is whether the
    model *can* memorise, and the recipe adds regularisation only after that. Stops at the target, after
    `steps` steps, after `max_seconds`, or on a non-finite loss. numbers["curve"] holds the loss per step.
    """
    scratch = copy.deepcopy(model).train()
    if disable_dropout:
        for module in scratch.modules():
            if isinstance(module, _DROPOUT):
                module.p = 0.0
    optimizer = make_optimizer(scratch.parameters())
    x, y = x.to(_device(model)), y.to(_device(model))
    curve: list[float] = []
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(scratch(x), y)
        curve.append(float(loss.detach()))
        if not math.isfinite(curve[-1]) or curve[-1] <= target_loss or time.perf_counter() - start > max_seconds:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    final = curve[-1] if curve else float("nan")
    reached = math.isfinite(final) and final <= target_loss
    numbers = {"final_loss": final, "target_loss": target_loss, "steps_used": len(curve), "step_budget": steps,
               "batch_size": len(x), "seconds": seconds, "curve": [v if math.isfinite(v) else None for v in curve]}
    if reached:
        message = f"Loss of one batch of {len(x)} fell to {final:.4f} in {len(curve) - 1} steps ({seconds:.1f} s)."
    elif not math.isfinite(final):
        message = (f"Training one batch of {len(x)} diverged (loss {final}) after {len(curve)} steps: the learning "
                   "rate is far too high for this model.")
    else:
        message = (f"After {len(curve)} steps ({seconds:.1f} s) the loss of one batch of {len(x)} is {final:.3f}, not "
                   f"below {target_loss}: raise the learning rate, check labels and loss, or add capacity.")
    return _check("overfit_one_batch", "Overfit one batch", "pass" if reached else "warn", final, numbers, message)


def clipping_check(grad_norms: Sequence[float], clipped: Sequence[bool], clip_value: float | None = None,
                   max_fraction: float = 0.5) -> dict[str, Any]:
    """Fraction of steps whose gradient norm was clipped, from the per-step norms the spine logs."""
    if not len(grad_norms):
        return _check("clipping", "Gradient clipping", "skip", None, {}, "No gradient norms were logged.")
    norms = np.asarray(grad_norms, dtype=np.float64)
    flags = np.asarray(clipped, dtype=bool)
    fraction = float(flags.mean()) if len(flags) else 0.0
    numbers: dict[str, Any] = {"fraction_clipped": fraction, "steps": len(norms),
                               "median_norm": float(np.median(norms)), "p90_norm": float(np.percentile(norms, 90))}
    if clip_value is not None:
        numbers["clip_value"] = clip_value
        numbers["median_norm_after"] = float(np.median(np.minimum(norms, clip_value)))
    if fraction > max_fraction:
        message = (f"{fraction:.0%} of {len(norms)} steps were clipped (median norm {numbers['median_norm']:.3g}"
                   + (f" vs threshold {clip_value:g})" if clip_value is not None else ")")
                   + ": lower the learning rate or raise the clip threshold.")
        status = "warn"
    else:
        message = f"{fraction:.0%} of {len(norms)} steps were clipped (median norm {numbers['median_norm']:.3g})."
        status = "pass"
    return _check("clipping", "Gradient clipping", status, fraction, numbers, message)


def layer_health_checks(rows: Mapping[str, float], judged: Iterable[str] | None = None, max_dead: float = 0.5,
                        max_saturated: float = 0.1, ratio_band: tuple[float, float] = (-4.5, -1.5)) -> list[dict[str, Any]]:
    """Badges from one sampled step of LayerStats rows (or rows averaged over the last sampled steps).

    judged: the parameters whose update ratio is judged, normally `LayerStats.matrix_params` (weights of 2+
    dims, as in makemore: biases and batch-norm scales move at their own pace); default: names ending
    in "weight". The band is wide on purpose: Adam typically runs at -2.5..-2, plain SGD at -3.5 early on.
    """
    def layers(prefix: str) -> dict[str, float]:
        return {k.split("/", 1)[1]: v for k, v in rows.items() if k.startswith(prefix + "/")}

    checks = []
    dead = layers("dead_frac")
    if dead:
        worst = max(dead, key=dead.get)
        bad = dead[worst] > max_dead
        checks.append(_check("dead_units", "Dead ReLU units", "warn" if bad else "pass", dead[worst], dead,
                             f"Worst layer {worst}: {dead[worst]:.0%} of its units are dead for the whole batch"
                             + (": lower the learning rate or check the initialisation." if bad else ".")))
    saturated = layers("sat_frac")
    if saturated:
        worst = max(saturated, key=saturated.get)
        bad = saturated[worst] > max_saturated
        checks.append(_check("saturation", "Saturated tanh/sigmoid", "warn" if bad else "pass", saturated[worst],
                             saturated, f"Worst layer {worst}: {saturated[worst]:.0%} of its outputs are saturated"
                             + (": scale down that layer's input weights (or add normalisation)." if bad else ".")))
    chosen = set(judged) if judged is not None else None
    ratios = {name: v for name, v in layers("update_ratio").items()
              if (name in chosen if chosen is not None else name.endswith("weight"))}
    if ratios:
        low, high = ratio_band
        outside = {n: v for n, v in ratios.items() if not low <= v <= high}
        median = float(np.median(list(ratios.values())))
        message = f"Median log10 update/data ratio over weight tensors {median:.2f} (reference {UPDATE_RATIO_REFERENCE:g})"
        if outside:
            message += (f"; outside [{low:g}, {high:g}]: {', '.join(sorted(outside))}. "
                        "Too high: lower the learning rate; too low: raise it.")
        checks.append(_check("update_ratio", "Update-to-data ratio", "warn" if outside else "pass", median, ratios,
                             message if outside else message + "."))
    return checks
