"""Pretrained ImageNet classifiers from torchvision, as an extra source of models to explain.

Weights come from, in order: a local file the user names (safetensors, or a torchvision .pth state dict),
the torch hub cache (~/.cache/torch/hub/checkpoints, where torchvision puts its downloads), or a download
when the machine is online and `download=True`. Offline without the file, `PretrainedUnavailable` says which
file to put where. `.pth` files are read with `torch.load(weights_only=True)` (no arbitrary unpickling; torch
>= 2.10 has the fixes for the known escapes); prefer safetensors where there is a choice.

torchvision's ResNet blocks call one in-place `self.relu` two or three times; Captum's DeepLIFT and Guided
Backprop hook activation modules and need one module per use, so the blocks get their own ReLUs here.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from engine.explain.images import InputSpec, imagenet_spec

# name -> (builder, weights enum member, layer Grad-CAM looks at)
_ZOO = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, "layer4"),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, "layer4"),
}
PRETRAINED = tuple(_ZOO)


class PretrainedUnavailable(RuntimeError):
    """The weights are neither on this machine nor downloadable; the message says where to put the file."""


@dataclass
class PretrainedModel:
    name: str  # e.g. "resnet18"
    model: nn.Module  # in eval mode, with `target_layer` set
    spec: InputSpec  # ImageNet preparation: 224 px centre crop, ImageNet mean/std
    classes: tuple[str, ...]  # the 1,000 ImageNet category names
    source: str  # where the weights came from (a path or URL)


def cache_path(name: str) -> Path:
    """Where torchvision keeps (or would keep) the weights of `name` in the torch hub cache."""
    _, weights, _ = _entry(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def available(name: str) -> bool:
    """True when the weights are in the hub cache, so loading needs no network."""
    return cache_path(name).is_file()


def build(name: str) -> tuple[nn.Module, tuple[str, ...]]:
    """The architecture with random weights (and explainer-friendly ReLUs), plus the class names."""
    builder, weights, layer = _entry(name)
    model = builder(weights=None)
    _unshare_relus(model)
    # a plain attribute, not a registered submodule: no duplicate state_dict keys, no double hooks
    model.__dict__["target_layer"] = model.get_submodule(layer)
    return model, tuple(weights.meta["categories"])


def load_pretrained(name: str = "resnet18", *, weights_file: str | Path | None = None,
                    download: bool = True) -> PretrainedModel:
    """Load a pretrained ImageNet model; PretrainedUnavailable when the weights cannot be found or fetched."""
    model, classes = build(name)
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise PretrainedUnavailable(f"{path}: no such weights file")
        state, source = _read_state(path), str(path)
    elif available(name):
        state, source = _read_state(cache_path(name)), str(cache_path(name))
    elif download:
        url = _entry(name)[1].url
        try:
            state = torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
        except Exception as exc:  # URLError, timeouts, hash mismatch: all mean "not here, not fetchable"
            raise PretrainedUnavailable(_offline_message(name, f"the download from {url} failed ({exc})")) from None
        source = url
    else:
        raise PretrainedUnavailable(_offline_message(name, "downloading is switched off"))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PretrainedUnavailable(f"the weights in {source} do not fit torchvision's {name}: "
                                    f"{str(exc).splitlines()[0]}") from None
    return PretrainedModel(name, model.eval(), imagenet_spec(), classes, source)


def _entry(name: str):
    if name not in _ZOO:
        raise ValueError(f"pretrained model {name!r}: available are {', '.join(_ZOO)}")
    return _ZOO[name]


def _offline_message(name: str, why: str) -> str:
    return (f"The ImageNet weights of {name} are not on this machine and {why}. Copy the file "
            f"{Path(_entry(name)[1].url).name} into {cache_path(name).parent}, or load the weights under 'Your own model' (a safetensors upload) or with `trainlens explain-model --weights FILE`.")


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedUnavailable(refused_load(str(path), exc)) from None


_TORCH_ADVICE = ("weights_only", "trust", "safe_globals", "allowlist", "file an issue", "documentation",
                 "WeightsUnpickler error")


def refused_load(name: str, exc: Exception) -> str:
    """Why `torch.load(weights_only=True)` did not read a file, in one line, without torch's own advice to retry
    with `weights_only=False`: that would run whatever code the file holds, which TrainLens never does and never
    tells anyone to do."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):  # the weights-only reader met something other than tensors
        # what stopped it ("Unsupported operand 110", "Trying to load unsupported GLOBAL posix.system..."), without
        # torch's sentences on how to load it anyway (weights_only=False, allowlisting the global)
        lines = [line.split(" Please ")[0].strip() for line in str(exc).splitlines()]
        detail = next((line for line in lines if line and not any(word in line for word in _TORCH_ADVICE)), "")
        return (f"{name} is not a readable state dict: the weights-only reader stopped"
                + (f" at '{detail[:120]}'" if detail else "") + ". A file holding Python objects besides tensors "
                "could run code when read, so only tensors are read: save the weights alone, as safetensors "
                "(safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')) or as a plain state dict "
                "(torch.save(model.state_dict(), 'weights.pth'))")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "weights_only" not in line]
    return f"{name} is not a state dict torch can read ({(lines[0] if lines else type(exc).__name__)[:200]})"


def _unshare_relus(model: nn.Module) -> None:
    """Give every use of a ResNet block's ReLU its own, not in-place, module."""
    for block in model.modules():
        if isinstance(block, (BasicBlock, Bottleneck)):
            uses = 2 if isinstance(block, BasicBlock) else 3
            block.relu = nn.ReLU()
            for i in range(2, uses + 1):
                block.add_module(f"relu{i}", nn.ReLU())
            block.forward = types.MethodType(_basic_forward if uses == 2 else _bottleneck_forward, block)


def _basic_forward(self: BasicBlock, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu2(out + identity)


def _bottleneck_forward(self: Bottleneck, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu3(out + identity)
