"""Explain a model TrainLens did not train: a torchvision architecture with your weights, or an exported program.

Two sources, with different trust:

- **weights for a known architecture** (every classification model torchvision ships: resnet18/50, vgg,
  densenet, mobilenet, efficientnet, ...). From a browser, a **safetensors** file only: the format is a JSON
  header plus raw tensor bytes, so reading it runs no code. `check_upload` looks at the first bytes and
  refuses anything else (a pickle, a zip such as a `.pt`/`.pt2` archive) before any deserialiser sees it.
  From a path on the server (CLI or an operator setting), safetensors or a PyTorch state dict read with
  `torch.load(weights_only=True)`.
- **an exported program** (`torch.export.save`, `.pt2`), only from a folder the server's operator names in
  `TRAINLENS_MODEL_DIRS` (paths separated by the OS path separator), never from an upload: in torch 2.14
  `torch.export.load` falls back to `torch.load(..., weights_only=False)` and to `pickle.loads` for some
  constants, so a crafted `.pt2` can run code on the server. Its input size, normalisation and class names
  come from a sidecar JSON next to it (`model.pt2` -> `model.json`).

Both give a `Subject`, explained with the same methods and scores as a run's checkpoint. There is no training
split behind them, so the out-of-distribution check has nothing to calibrate on and the page says so.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from engine.explain.images import IMAGENET_MEAN, IMAGENET_STD, InputSpec

MODEL_DIRS_ENV = "TRAINLENS_MODEL_DIRS"
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


class OwnModelError(ValueError):
    """The model cannot be loaded; the message says why in one sentence a user can act on."""


def architectures() -> list[str]:
    """torchvision's image classification architectures (its `models` namespace only, not detection etc.)."""
    return sorted(tvm.list_models(module=tvm))


@dataclass(frozen=True)
class Preparation:
    """What the model expects: a square input side, channel mean/std in [0, 1] pixel units, class names."""

    size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    classes: tuple[str, ...] = ()

    def spec(self) -> InputSpec:
        channels = len(self.mean)
        return InputSpec("own model", channels, self.size, tuple(self.mean), tuple(self.std), invert_light=False,
                         fit="crop")

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar JSON") -> "Preparation":
        """{"input_size": 224, "mean": [...], "std": [...], "classes": [...]} (all optional)."""
        try:
            data = json.loads(text)
            size = int(data.get("input_size", 224))
            mean = tuple(float(v) for v in data.get("mean", IMAGENET_MEAN))
            std = tuple(float(v) for v in data.get("std", IMAGENET_STD))
            classes = tuple(str(c) for c in data.get("classes", ()))
        except (ValueError, TypeError, AttributeError) as exc:
            raise OwnModelError(f"{source} is not valid: {exc}") from None
        if not 8 <= size <= 1024 or len(mean) not in (1, 3) or len(std) != len(mean) or min(std) <= 0:
            raise OwnModelError(f"{source}: input_size must be 8..1024 and mean/std 1 or 3 positive values each")
        return cls(size, mean, std, classes)


@dataclass
class OwnModel:
    name: str  # what the page shows: architecture and file name
    model: nn.Module  # eval mode, with `target_layer` where a spatial map exists
    spec: InputSpec
    classes: tuple[str, ...]


# ---- uploads: safetensors only -----------------------------------------------------------------------------


def check_upload(filename: str, data: bytes) -> None:
    """Refuse, without deserialising anything, an upload that is not a safetensors file.

    A safetensors file starts with an 8-byte little-endian header length and a JSON object; a pickle starts
    with 0x80, a zip archive (`.pt`, `.pt2`) with "PK". Only the name and these first bytes are looked at."""
    name = Path(filename).name
    if name.endswith((".pt2", ".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")):
        raise OwnModelError(f"{name}: only safetensors files can be uploaded. Files read with pickle (.pt, .pth, "
                            ".pkl, .pt2 exported programs) can run code when opened; ask the server's operator to "
                            f"place an exported program in a folder listed in {MODEL_DIRS_ENV}.")
    if len(data) < 10:
        raise OwnModelError(f"{name}: too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if not 2 <= header_len <= min(MAX_HEADER, len(data) - 8) or data[8:9] != b"{":
        raise OwnModelError(f"{name} is not a safetensors file (it does not start with a safetensors header)")


def state_from_upload(filename: str, data: bytes) -> dict[str, Tensor]:
    """The tensors of an uploaded safetensors file (checked first by `check_upload`)."""
    check_upload(filename, data)
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise OwnModelError(f"{Path(filename).name} is not a readable safetensors file ({exc})") from None


def state_from_path(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a server path: safetensors, or a torch file read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise OwnModelError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return state_from_upload(path.name, path.read_bytes())
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from engine.explain.pretrained import refused_load

        raise OwnModelError(refused_load(path.name, exc)) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a common training-checkpoint wrapper
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OwnModelError(f"{path.name} does not hold a state dict (a mapping of names to tensors)")
    return state


def from_weights(architecture: str, state: dict[str, Tensor], preparation: Preparation, label: str = "") -> OwnModel:
    """A torchvision architecture with these weights; the class count is read from the weights' last layer."""
    if architecture not in architectures():
        raise OwnModelError(f"architecture {architecture!r} is not one of torchvision's classification models")
    num_classes = _classes_in(architecture, state)  # class names, when given, must match it (checked in _finish)
    try:
        model = tvm.get_model(architecture, weights=None, num_classes=num_classes)
    except Exception as exc:
        raise OwnModelError(f"{architecture} cannot be built with {num_classes} classes ({exc})") from None
    _load(model, state, architecture)
    from engine.explain.pretrained import _unshare_relus

    _unshare_relus(model)
    return _finish(f"{architecture} · {label}".strip(" ·"), model, preparation, num_classes)


def _classes_in(architecture: str, state: dict[str, Tensor]) -> int:
    """The class count of these weights: the first dimension of the architecture's classifier weight, the last
    layer weight in its own registration order (a file's key order is not kept: safetensors sorts the keys)."""
    with torch.device("meta"):  # the architecture's key order without allocating its weights
        probe = tvm.get_model(architecture, weights=None)
    layers = [k for k, v in probe.state_dict().items() if k.endswith("weight") and v.dim() >= 2]
    if not layers or layers[-1] not in state:
        raise OwnModelError(f"these weights have no {layers[-1] if layers else 'classifier'} for torchvision's "
                            f"{architecture}: are they for another architecture?")
    return int(state[layers[-1]].shape[0])


def _load(model: nn.Module, state: dict[str, Tensor], architecture: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with the wrong shape (first: {k} is {tuple(state[k].shape)}, "
                        f"{architecture} needs {tuple(expected[k].shape)})")
    if problems:
        raise OwnModelError(f"these weights do not fit torchvision's {architecture}: keys " + "; ".join(problems))
    model.load_state_dict(state)


# ---- exported programs: operator folders only ------------------------------------------------------------------


def model_dirs() -> list[Path]:
    """The folders the operator allows exported programs from (TRAINLENS_MODEL_DIRS), resolved."""
    raw = os.environ.get(MODEL_DIRS_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def exported_programs() -> list[Path]:
    """Every `.pt2` file directly inside an allowed folder."""
    return sorted(p for folder in model_dirs() if folder.is_dir() for p in folder.glob("*.pt2") if p.is_file())


def from_exported(path: str | Path) -> OwnModel:
    """An exported program from an allowed folder, with its sidecar JSON (same name, `.json`)."""
    path = Path(path).expanduser().resolve()
    allowed = model_dirs()
    if not any(path.parent == folder for folder in allowed):
        raise OwnModelError(f"{path.name}: exported programs are loaded only from the folders listed in "
                            f"{MODEL_DIRS_ENV} (they can run code when opened)" +
                            ("" if allowed else f"; {MODEL_DIRS_ENV} is not set on this server"))
    if path.suffix != ".pt2" or not path.is_file():
        raise OwnModelError(f"{path.name}: no such exported program (.pt2)")
    sidecar = path.with_suffix(".json")
    preparation = Preparation.from_json(sidecar.read_text(), sidecar.name) if sidecar.is_file() else Preparation()
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise OwnModelError(f"{path.name} is not a loadable exported program ({str(exc).splitlines()[0]})") from None
    model = _Program(program.module())
    with torch.no_grad():
        probe = torch.zeros(1, len(preparation.mean), preparation.size, preparation.size)
        try:
            num_classes = int(model(probe).shape[-1])
        except Exception as exc:
            raise OwnModelError(f"{path.name} does not take a [1, {probe.shape[1]}, {preparation.size}, "
                                f"{preparation.size}] image: fix input_size/mean in {sidecar.name} ({exc})") from None
        try:
            model(probe.expand(3, -1, -1, -1))
        except Exception:
            raise OwnModelError(f"{path.name} takes one image at a time; export it with a dynamic batch dimension "
                                "(dynamic_shapes={0: torch.export.Dim.AUTO} on the input): the explainers send "
                                "many copies of an image at once") from None
    return _finish(path.name, model, preparation, num_classes)


class _Program(nn.Module):
    """An exported program's module behind a plain nn.Module: it refuses `.train()`/`.eval()` (its mode was fixed
    when it was exported), which the explainers call on every model. Kept out of the registered children for
    that reason; it has no hookable layers, so Grad-CAM does not apply and Guided Backprop/Deconvolution see no
    ReLU modules to guide (they equal the plain gradient there)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.__dict__["program"] = module

    def forward(self, x: Tensor) -> Tensor:
        return self.program(x)


# ---- shared -------------------------------------------------------------------------------------------------


def _finish(name: str, model: nn.Module, preparation: Preparation, num_classes: int) -> OwnModel:
    classes = preparation.classes or tuple(f"class {i}" for i in range(num_classes))
    if len(classes) != num_classes:
        raise OwnModelError(f"{len(classes)} class names given, the model has {num_classes} outputs")
    model.eval()
    layer = _last_spatial_layer(model, preparation)
    if layer is not None:
        model.__dict__["target_layer"] = layer  # a plain attribute: no duplicate registration (see models.py)
    else:
        model.__dict__["target_layer"] = None
    return OwnModel(name, model, preparation.spec(), classes)


def _last_spatial_layer(model: nn.Module, preparation: Preparation) -> nn.Module | None:
    """The last top-level child whose output is a spatial map (more than 1x1): Grad-CAM's layer."""
    outputs: list[tuple[nn.Module, tuple[int, ...]]] = []
    children = [c for c in model.children()]
    handles = [c.register_forward_hook(lambda m, a, out: outputs.append((m, tuple(out.shape)))
                                       if isinstance(out, Tensor) else None) for c in children]
    try:
        with torch.no_grad():
            model(torch.zeros(1, len(preparation.mean), preparation.size, preparation.size))
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
    spatial = [m for m, shape in outputs if len(shape) == 4 and shape[-1] * shape[-2] > 1]
    return spatial[-1] if spatial else None


def explain_own_to_png(image_path: str | Path, method: str, *, architecture: str | None = None,
                       weights: str | Path | None = None, program: str | Path | None = None,
                       config: str | Path | None = None, target: int | None = None,
                       out: str | Path = "explain.png") -> dict:
    """The CLI's `explain-model`: weights for an architecture (safetensors or a weights_only state dict), or an
    exported program from an allowed folder; `config` a JSON file like the sidecar (size, mean, std, classes)."""
    from engine.explain.render import Subject, subject_to_png

    if (weights is None) == (program is None):
        raise OwnModelError("give either --weights FILE (with --arch) or --program FILE.pt2")
    if program is not None:
        loaded = from_exported(program)
    else:
        if not architecture:
            raise OwnModelError("--weights needs --arch (a torchvision architecture, e.g. resnet18)")
        preparation = Preparation.from_json(Path(config).read_text(), Path(config).name) if config else Preparation()
        loaded = from_weights(architecture, state_from_path(weights), preparation, Path(weights).name)
    subject = Subject(f"own:{loaded.name}", loaded.model, None, loaded.spec, loaded.classes, -1, "cpu")
    return subject_to_png(subject, image_path, method, target, out)
