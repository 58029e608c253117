"""Attribution maps from Captum: one registry of methods, one call shape.

`explain(model, inputs, target, method, **params)` returns a tensor shaped like `inputs` saying how much each
input value pushed the model towards `target`. Every method has defaults that work on every model of the zoo
(and on torchvision ImageNet models); a method that cannot apply to a model raises `NotApplicable` with a
sentence a user can read, and `why_not(model, method)` asks the same question without computing anything.

This module, `engine.explain.quality` and `engine.explain.text` are the only ones that import Captum.

Threading: Captum's DeepLift, GuidedBackprop and Deconvolution attach hooks to the model's modules while they
run, so two explanations of the *same model object* at once would see each other's hooks. Calls on one model
are therefore serialised by a per-model lock; callers that want parallelism (the page's background jobs)
explain a copy of the model.
"""

from __future__ import annotations

import copy
import importlib
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    GradientShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from engine.explain.geometry import place, trace_geometry

# Captum announces every hook it sets; the page would show them on each click
warnings.filterwarnings("ignore", message=r"Setting (forward, )?backward hooks", category=UserWarning)

Target = int | list[int] | Tensor
Progress = Callable[[float], None]
SIGNS = ("all", "positive", "negative", "absolute")


class NotApplicable(ValueError):
    """The method cannot explain this model (e.g. Grad-CAM on a model without a convolutional feature map)."""


@dataclass(frozen=True)
class Method:
    """One attribution method: what it is called, what it needs and its default parameters."""

    name: str  # registry key, e.g. "integrated_gradients"
    title: str  # display name
    summary: str  # one sentence: what the map means
    run: Callable[..., Tensor]  # (model, forward, inputs, target, params) -> attributions like inputs
    defaults: dict[str, Any] = field(default_factory=dict)  # every accepted parameter with its default
    stochastic: bool = False  # draws random noise; reproducible through the `seed` parameter
    heavy: bool = False  # many forward passes: the page computes it in the background
    needs_layer: bool = False  # needs a spatial feature map (model.target_layer)
    default_sign: str = "all"  # how the map is best shown: all | positive | negative | absolute
    multiplies_inputs: bool = False  # a "global" map, already times (input - baseline): sums to output changes
    calls: Callable[[Tensor, dict[str, Any]], int] = lambda inputs, params: 1  # forward passes, for progress


# ---------------------------------------------------------------------------------------------------------
# the methods: each gets the model, a forward function that reports progress, the inputs (already on the
# right device), the target and its complete parameter dict


def _baseline(inputs: Tensor, value: float | Tensor) -> Tensor:
    # a baseline is a value in the model's input space (after normalisation): 0 is the dataset mean colour,
    # callers pass the normalised black for "no ink" (see engine.explain.images.InputSpec.black)
    base = torch.as_tensor(value, dtype=inputs.dtype, device=inputs.device)
    return base.expand_as(inputs) if base.dim() == 0 or base.shape != inputs.shape else base


def _saliency(model, forward, inputs, target, p):
    return Saliency(forward).attribute(inputs, target=target, abs=p["abs"])


def _input_x_gradient(model, forward, inputs, target, p):
    return InputXGradient(forward).attribute(inputs, target=target)


_IG_VALUES_PER_PASS = 4_000_000  # input values per forward pass: 50 steps of a 28x28 digit in one, a photo in chunks


def _ig_batch(inputs: Tensor, p: dict[str, Any]) -> int | None:
    """Examples per forward pass; 0 = automatic. All steps at once is fastest for small inputs (measured on
    the convnet: 7.2 ms for 50 steps of a 28x28 digit, 10.2 ms in chunks of 10), but 50 steps of a 224x224
    photo through a ResNet would hold gigabytes of activations, so big inputs go in chunks."""
    if p["internal_batch_size"]:
        return p["internal_batch_size"]
    per_example = inputs[0].numel()
    if inputs.shape[0] * p["n_steps"] * per_example <= _IG_VALUES_PER_PASS:
        return None
    return max(1, _IG_VALUES_PER_PASS // per_example)


def _integrated_gradients(model, forward, inputs, target, p):
    return IntegratedGradients(forward).attribute(
        inputs, baselines=_baseline(inputs, p["baseline"]), target=target, n_steps=p["n_steps"],
        internal_batch_size=_ig_batch(inputs, p))


def _ig_calls(inputs: Tensor, p: dict[str, Any]) -> int:
    batch = _ig_batch(inputs, p)
    return math.ceil(inputs.shape[0] * p["n_steps"] / batch) if batch else 1


def _noise_std(inputs: Tensor, level: float) -> float:
    # noise as a share of the input's range, as in the SmoothGrad paper (10-20% works best there)
    return float(level * (inputs.detach().max() - inputs.detach().min()).clamp_min(1e-6))


def _smoothgrad(model, forward, inputs, target, p):
    return NoiseTunnel(Saliency(forward)).attribute(
        inputs, nt_type="smoothgrad", nt_samples=p["samples"], nt_samples_batch_size=p["batch_size"],
        stdevs=_noise_std(inputs, p["noise"]), target=target, abs=p["abs"])


def _gradient_shap(model, forward, inputs, target, p):
    # the expectation runs over a small distribution of references: the baseline itself and random images
    # spanning the input's range, so no single reference decides the map
    low, high = inputs.detach().min(), inputs.detach().max()
    random_refs = low + (high - low) * torch.rand((p["random_baselines"], *inputs.shape[1:]), device=inputs.device)
    refs = torch.cat([_baseline(inputs[:1], p["baseline"]), random_refs])
    return GradientShap(forward).attribute(
        inputs, baselines=refs, n_samples=p["samples"], stdevs=_noise_std(inputs, p["noise"]), target=target)


def _deeplift(model, forward, inputs, target, p):
    return DeepLift(model).attribute(inputs, baselines=_baseline(inputs, p["baseline"]), target=target)


def _guided_backprop(model, forward, inputs, target, p):
    return GuidedBackprop(model).attribute(inputs, target=target)


def _deconvolution(model, forward, inputs, target, p):
    return Deconvolution(model).attribute(inputs, target=target)


def _window(inputs: Tensor, p: dict[str, Any]) -> tuple[int, int]:
    # about 1/7 of the side: 4 px on 28x28 digits, 32 px on 224x224 photos; stride half a window
    side = min(inputs.shape[-2:])
    window = p["window"] or max(2, round(side / 7))
    stride = p["stride"] or max(1, window // 2)
    return min(window, side), stride


def _occlusion(model, forward, inputs, target, p):
    window, stride = _window(inputs, p)
    channels = inputs.shape[1]
    return Occlusion(forward).attribute(
        inputs, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
        baselines=_baseline(inputs, p["baseline"]), target=target, perturbations_per_eval=p["per_eval"])


def _occlusion_calls(inputs: Tensor, p: dict[str, Any]) -> int:
    window, stride = _window(inputs, p)
    h, w = inputs.shape[-2:]
    windows = ((h - window) // stride + 1) * ((w - window) // stride + 1)
    return 1 + math.ceil(windows / p["per_eval"])


def _layer(model: nn.Module, p: dict[str, Any]) -> nn.Module:
    return model.get_submodule(p["layer"]) if p["layer"] else model.target_layer


def _placed_cam(forward, inputs: Tensor, target, layer: nn.Module, model: nn.Module) -> Tensor:
    """Grad-CAM [B, 1, H, W]: the layer's map placed over the input by its cells' receptive fields
    (engine.explain.geometry), not stretched over the whole image."""
    cam = LayerGradCam(forward, layer).attribute(inputs, target=target, relu_attributions=True)
    return place(cam, trace_geometry(model, inputs, layer), tuple(inputs.shape[-2:]))


def _grad_cam(model, forward, inputs, target, p):
    cam = _placed_cam(forward, inputs, target, p["layer_module"], model)
    # spread the one-channel map over the input channels so that the channel sum is the CAM itself
    return (cam / inputs.shape[1]).expand_as(inputs).contiguous()


def _guided_grad_cam(model, forward, inputs, target, p):
    # Captum's GuidedGradCam stretches the map; the product is the same with the CAM placed correctly
    cam = _placed_cam(forward, inputs, target, p["layer_module"], model)
    return GuidedBackprop(model).attribute(inputs, target=target) * cam


_BASELINE = {"baseline": 0.0}  # reference input in the model's (normalised) input space

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("saliency", "Saliency", "Gradient of the class score: where a small change moves the score most.",
           _saliency, {"abs": True}, default_sign="absolute"),
    Method("input_x_gradient", "Input × Gradient", "Gradient times the input: first-order contribution of each value.",
           _input_x_gradient, multiplies_inputs=True),
    Method("integrated_gradients", "Integrated Gradients",
           "Gradients averaged along a straight path from the baseline; they sum to f(x) - f(baseline).",
           _integrated_gradients, {**_BASELINE, "n_steps": 50, "internal_batch_size": 0}, heavy=True, calls=_ig_calls,
           multiplies_inputs=True),
    Method("smoothgrad", "SmoothGrad", "Saliency averaged over noisy copies of the input: less speckle.",
           _smoothgrad, {"samples": 20, "batch_size": 20, "noise": 0.15, "abs": True, "seed": 0},
           stochastic=True, heavy=True, default_sign="absolute",
           calls=lambda x, p: math.ceil(p["samples"] / (p["batch_size"] or p["samples"]))),
    Method("gradient_shap", "GradientSHAP",
           "Expected gradients × (input − reference) over random references and noise: approximate SHAP values.",
           _gradient_shap, {**_BASELINE, "samples": 20, "noise": 0.05, "random_baselines": 4, "seed": 0},
           stochastic=True, heavy=True, multiplies_inputs=True),
    Method("deeplift", "DeepLIFT", "Differences from the baseline propagated with the rescale rule.",
           _deeplift, dict(_BASELINE), multiplies_inputs=True),
    Method("guided_backprop", "Guided Backprop", "Gradient where ReLUs also block negative gradients: sharp edges.",
           _guided_backprop),
    Method("deconvolution", "Deconvolution", "Gradient where ReLUs pass only positive gradients (Zeiler & Fergus).",
           _deconvolution),
    Method("occlusion", "Occlusion", "Drop in the class score when a window of the input is blanked out.",
           _occlusion, {**_BASELINE, "window": 0, "stride": 0, "per_eval": 64}, heavy=True, calls=_occlusion_calls,
           multiplies_inputs=True),
    Method("grad_cam", "Grad-CAM", "Feature-map channels weighted by their mean gradient, placed over the input where each cell looks.",
           _grad_cam, {"layer": ""}, needs_layer=True, default_sign="positive"),
    Method("guided_grad_cam", "Guided Grad-CAM", "Guided Backprop masked by Grad-CAM: sharp and class-specific.",
           _guided_grad_cam, {"layer": ""}, needs_layer=True),
]}


# ---------------------------------------------------------------------------------------------------------


# Explainers of inputs that are not images, as (accepts(inputs) -> bool, "module:function" of an explain-like
# function). Named, not imported: engine.explain.text imports this module (its guards, the image methods' titles),
# so it is imported on the first input it accepts, and `import engine.explain` pays for neither.
INPUT_EXPLAINERS: list[tuple[Callable[[Tensor], bool], str]] = [
    (lambda inputs: not inputs.is_floating_point(), "engine.explain.text:explain_tokens"),  # integer token ids
]


def _input_explainer(inputs: Tensor) -> Callable[..., Tensor] | None:
    """The explainer INPUT_EXPLAINERS names for `inputs` (imported on first use); None for images."""
    for accepts, name in INPUT_EXPLAINERS:
        if accepts(inputs):
            module, function = name.split(":")
            return getattr(importlib.import_module(module), function)
    return None


def get_method(name: str) -> Method:
    """The registry entry; ValueError listing the known names when there is none."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}: known methods are {', '.join(METHODS)}")
    return METHODS[name]


def resolve_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's defaults updated with `params`; ValueError naming an unknown parameter."""
    spec = get_method(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ValueError(f"{name} has no parameter {', '.join(unknown)}; its parameters: {allowed}")
    return {**spec.defaults, **params}


def why_not(model: nn.Module, name: str, params: dict[str, Any] | None = None) -> str | None:
    """None when `name` can explain `model`, else the reason in one sentence."""
    spec = get_method(name)
    layer = resolve_params(name, params).get("layer")
    if spec.needs_layer and not layer and getattr(model, "target_layer", None) is None:
        kind = type(model).__name__
        return (f"{spec.title} does not apply to this model: it needs a convolutional feature map and the "
                f"{kind} has none (it reads the image as a flat vector or row by row). Try Saliency or "
                f"Integrated Gradients.")
    if layer:
        try:
            model.get_submodule(layer)
        except AttributeError:
            return f"{spec.title}: the model has no layer named {layer!r}"
    if name == "deeplift" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return ("DeepLIFT does not apply to recurrent models: Captum's rescale rules do not cover RNN/GRU/LSTM "
                "cells. Try Integrated Gradients, its closest relative.")
    return None


def explain(model: nn.Module, inputs: Tensor, target: Target, method: str, *, device: str | torch.device | None = None,
            progress: Progress | None = None, **params: Any) -> Tensor:
    """Attributions of `method` for `target`, shaped like `inputs` ([B, C, H, W] or one image [C, H, W]).

    `inputs` are what the model takes (normalised). `device` picks where to compute (default: the model's
    device; a different one explains a copy of the model there). `progress(fraction)` is called as forward
    passes complete. The result is detached, float32, on the device `inputs` came from.
    """
    explainer = _input_explainer(inputs)  # other kinds of input: token ids (engine.explain.text)
    if explainer is not None:
        return explainer(model, inputs, target, method, **params)
    spec = get_method(method)
    p = resolve_params(method, params)
    reason = why_not(model, method, p)
    if reason:
        raise NotApplicable(reason)
    single = inputs.dim() == 3
    batch = inputs.unsqueeze(0) if single else inputs
    if batch.dim() != 4:
        raise ValueError(f"inputs must be [B, C, H, W] or [C, H, W], got shape {tuple(inputs.shape)}")
    model_device = _device_of(model)
    device = torch.device(device) if device is not None else model_device
    if device != model_device:
        model = copy_model(model).to(device)
    batch = batch.detach().to(device, torch.float32)
    target = target.to(device) if isinstance(target, Tensor) else target
    forward = _CountingForward(model, spec.calls(batch, p), progress)
    if progress:
        progress(0.0)
    if spec.needs_layer:
        p["layer_module"] = _layer(model, p)  # resolved before _hooks_once may hide the `target_layer` alias
    batch.requires_grad_()  # Captum would do it too, with a warning per call
    with (_model_lock(model), _eval_mode(model), _hooks_once(model), _rnn_backward_ok(model, device),
          _seeded(p.get("seed"), device)):
        result = spec.run(model, forward, batch, target, p)
    if progress:
        progress(1.0)
    result = result.detach().to(inputs.device, torch.float32)
    return result[0] if single else result


def predict(model: nn.Module, inputs: Tensor) -> Tensor:
    """Class probabilities [B, classes] for model inputs [B, C, H, W], under eval mode and no_grad."""
    with evaluating(model), torch.no_grad():
        return torch.softmax(model(inputs.to(_device_of(model))), dim=1).cpu()


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy taken under the model's lock, so it never catches another thread's explanation half-way
    (with Captum's hooks attached, or an alias hidden by `_hooks_once`)."""
    with _model_lock(model):
        return copy.deepcopy(model)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Hold the model's explain lock with the model in eval mode (its previous modes restored after)."""
    with _model_lock(model), _eval_mode(model):
        yield model


# ---------------------------------------------------------------------------------------------------------


class _CountingForward:
    """The model's forward that reports progress: Captum calls it once per batch of perturbed inputs."""

    def __init__(self, model: nn.Module, expected_calls: int, progress: Progress | None):
        self.model, self.expected, self.progress, self.calls = model, max(1, expected_calls), progress, 0

    def __call__(self, x: Tensor) -> Tensor:
        out = self.model(x)
        self.calls += 1
        if self.progress:
            self.progress(min(self.calls / self.expected, 0.99))
        return out


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _model_lock(model: nn.Module) -> Iterator[None]:
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(model, threading.RLock())
    with lock:
        yield


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    # dropout and batch-norm statistics must not move while we explain; restore whatever mode we found
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


@contextmanager
def _hooks_once(model: nn.Module) -> Iterator[None]:
    """Hide second registrations of a module (e.g. a model that also stores `self.head = self.blocks[-1]`) while we explain.

    Captum's DeepLift and GuidedBackprop hook every activation through `model.apply`, which visits a module
    once per registration; a ReLU registered twice gets two hooks and DeepLift fails ("module used more than
    once"). The alias is not used by forward, so removing it from its parent for the duration is safe.
    """
    seen: set[int] = set()
    aliases: list[tuple[nn.Module, str, nn.Module]] = []
    alias_names: list[str] = []
    # depth-first, in registration order: the first path to a module is its real place in the network
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name.startswith(alias + ".") for alias in alias_names):
            continue  # inside an alias already hidden
        if id(module) in seen:
            parent_name, _, child_name = name.rpartition(".")
            aliases.append((model.get_submodule(parent_name), child_name, module))
            alias_names.append(name)
        seen.add(id(module))
    for parent, child_name, _ in aliases:
        del parent._modules[child_name]
    try:
        yield
    finally:
        for parent, child_name, child in aliases:
            parent._modules[child_name] = child


@contextmanager
def _rnn_backward_ok(model: nn.Module, device: torch.device) -> Iterator[None]:
    # cuDNN's RNN kernels refuse backward in eval mode; the native kernels do not, and are fast enough here
    if device.type == "cuda" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    # stochastic methods draw from a private generator state so the same seed gives the same map,
    # without disturbing the caller's random stream
    if seed is None:
        yield
        return
    # Captum draws from torch (noise) and from numpy's global generator (GradientSHAP's reference choice and
    # path points), so both are seeded and both restored
    devices = [device.index or 0] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            yield
    finally:
        np.random.set_state(numpy_state)
