"""Low-rank adapters (LoRA, Hu et al. 2021): a frozen weight W plus a trainable update scale * B A of rank r.

`add_lora(model, rank, alpha, skip=...)` turns each nn.Linear and each nn.Conv1d/nn.Conv2d of a model (but the
layers in `skip`, the head) into its LoRA twin in place: the same class underneath (a LoRALinear is an nn.Linear,
so layer statistics, Captum and Grad-CAM see the layers they know), the same `weight` and `bias` under the same
names (a checkpoint of the base model loads into it), plus two parameters `lora_a` (r x inputs) and `lora_b`
(outputs x r). B starts at zero, so the adapted model computes exactly what the base model does until it trains; A
starts as Kaiming-uniform noise, as in the paper, so B's first gradient is not zero. A convolution's A is a
convolution with the layer's own kernel, stride and padding into r channels, and B a 1x1 convolution back out.

`add_lora` freezes nothing: which parameters train is engine.transfer's rule (the base weights of adapted layers
are frozen, the head trains). `merge_lora_state` folds a LoRA run's adapters into plain weights, so another run can
start from it without adapters.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

LORA_PARAMS = ("lora_a", "lora_b")


class _LoRA:
    """What LoRALinear and LoRAConv share: the two low-rank factors and their scale."""

    lora_a: nn.Parameter
    lora_b: nn.Parameter
    lora_scale: float

    def _init_lora(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], rank: int, alpha: float) -> None:
        weight = self.weight  # type: ignore[attr-defined]
        self.lora_a = nn.Parameter(torch.empty(a_shape, device=weight.device, dtype=weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(b_shape, device=weight.device, dtype=weight.dtype))
        if weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.lora_scale = alpha / rank

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lora_rank={self.lora_a.shape[0]}, lora_scale={self.lora_scale:g}"  # type: ignore[misc]


class LoRALinear(_LoRA, nn.Linear):
    """y = x W^T + b + scale * (x A^T) B^T."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.lora_scale


class LoRAConv1d(_LoRA, nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self._conv_forward(x, self.lora_a, None)  # the layer's own kernel, stride and padding, into r channels
        return self._conv_forward(x, self.weight, self.bias) + F.conv1d(low, self.lora_b) * self.lora_scale


class LoRAConv2d(_LoRA, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self._conv_forward(x, self.lora_a, None)
        return self._conv_forward(x, self.weight, self.bias) + F.conv2d(low, self.lora_b) * self.lora_scale


_TWINS: dict[type, type] = {nn.Linear: LoRALinear, nn.Conv1d: LoRAConv1d, nn.Conv2d: LoRAConv2d}


def add_lora(model: nn.Module, rank: int, alpha: float, skip: Iterable[str] = ()) -> list[str]:
    """Give every linear and convolution layer of `model` (except those named in `skip` and their sub-layers) a
    low-rank adapter, in place; returns the names of the adapted layers. ValueError when none can be adapted."""
    skipped = tuple(skip)
    adapted = []
    for name, module in list(model.named_modules()):
        if type(module) not in _TWINS or any(name == s or name.startswith(s + ".") for s in skipped):
            continue
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups != 1:
            continue  # a grouped convolution's low-rank update is not one matrix; the zoo has none
        _adapt(module, rank, alpha)
        adapted.append(name)
    if not adapted:
        raise ValueError("adapter=lora: this model has no linear or convolution layer besides its head to adapt")
    return adapted


def _adapt(module: nn.Module, rank: int, alpha: float) -> None:
    # Swapping the class keeps the module object, its parameters, its hooks and its place in the parent: only the
    # forward changes, and two parameters join.
    module.__class__ = _TWINS[type(module)]
    if isinstance(module, nn.Linear):
        module._init_lora((rank, module.in_features), (module.out_features, rank), rank, alpha)
    else:
        kernel = tuple(module.kernel_size)
        ones = (1,) * len(kernel)
        module._init_lora((rank, module.in_channels, *kernel), (module.out_channels, rank, *ones), rank, alpha)


def adapter_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] in LORA_PARAMS]


def merge_lora_state(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A state dict with every layer's adapter folded into its weight (W + scale * B A) and the adapters dropped:
    the plain weights the adapted model computes with."""
    merged = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in LORA_PARAMS}
    for key, a in state.items():
        if not key.endswith(".lora_a"):
            continue
        layer = key[: -len(".lora_a")]
        b, weight = state[f"{layer}.lora_b"], state[f"{layer}.weight"]
        if a.dim() == 2:  # linear: B [out, r] @ A [r, in]
            delta = b @ a
        else:  # convolution: B [out, r, 1...] composed with A [r, in, k...]
            delta = torch.einsum("or,ri...->oi...", b.flatten(1), a)
        merged[f"{layer}.weight"] = weight + scale * delta.to(weight.dtype)
    return merged
