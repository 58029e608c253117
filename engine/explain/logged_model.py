"""A script's model handed to Explain (`run.log_model(model)` in the trainlens client): saved as safetensors in
the run's checkpoint folder (never a pickle), with what Explain needs to rebuild and feed it.

- A TrainLens zoo model (engine.models: mlp, convnet, resnet, rnn/gru/lstm) trained on one of TrainLens's
  datasets: written as an engine checkpoint (`epoch_N.safetensors` and `best.safetensors`, its RunConfig naming
  the model, the dataset and the model's fields), so the Explain page and `trainlens explain RUN_ID IMAGE` treat
  the script's run like an engine run (validation images, the familiarity check, saliency across checkpoints).
- A torchvision classifier (its `models` namespace): `model.safetensors` plus the architecture (matched by the
  weights' names and shapes when not given), input size, normalisation and class names, read back through
  engine.explain.own_model as "your own model".
- Anything else: LogModelError says to save the weights and use `trainlens explain-model`.

The record is the run's LOGGED_MODEL artifact: {"kind": "zoo" | "torchvision", "architecture", "path", ...}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.paths import checkpoint_dir

WEIGHTS_FILE = "model.safetensors"
ZOO_CLASSES = {"MLP": "mlp", "ConvNet": "convnet", "ResNet": "resnet"}


class LogModelError(ValueError):
    """The model cannot be handed to Explain; the message says why and what to do instead."""


def _other_model(model: nn.Module, why: str = "") -> LogModelError:
    return LogModelError(
        f"run.log_model: {type(model).__name__} is neither a TrainLens zoo model (engine.models) nor a torchvision "
        f"classifier{why}; save its weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') "
        "and explain them with `trainlens explain-model IMAGE --arch ARCH --weights model.safetensors`, or export it "
        "with torch.export and use `trainlens explain-model IMAGE --program FILE.pt2`")


def zoo_name(model: nn.Module) -> str | None:
    """The zoo name of one of engine.models' classes (rnn/gru/lstm from its recurrent layer), else None."""
    from engine import models

    kind = type(model)
    if getattr(kind, "__module__", "") != models.__name__:
        return None
    if kind.__name__ == "RowRNN":
        return type(model.rnn).__name__.lower()
    return ZOO_CLASSES.get(kind.__name__)


def torchvision_architecture(model: nn.Module) -> str | None:
    """The torchvision architecture whose weights have exactly this model's names and shapes (built on the meta
    device: nothing allocated), or None when the model is not one of torchvision's classifiers."""
    module = getattr(type(model), "__module__", "")
    if not module.startswith("torchvision.models"):
        return None
    import torchvision.models as tvm

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    head = [v for k, v in shapes.items() if len(v) == 2]
    num_classes = head[-1][0] if head else 1000
    import warnings

    for name in sorted(tvm.list_models(module=tvm)):
        builder = tvm.get_model_builder(name)
        returns = getattr(builder, "__annotations__", {}).get("return")
        if getattr(returns, "__name__", returns) != type(model).__name__:  # builders say what class they build
            continue
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # googlenet/inception announce a future change of their init
                candidate = builder(weights=None, num_classes=num_classes)
        except Exception:  # noqa: BLE001 - a builder that cannot make this class count is not this model
            continue
        if type(candidate) is type(model) and {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
            return name
    return None


def save_logged_model(run_id: str, model: nn.Module, *, dataset: str | None = None, step: int = 0,
                      input_size: int | None = None, mean: Any = None, std: Any = None, classes: Any = None,
                      architecture: str | None = None, **fields: Any) -> dict[str, Any]:
    """Save `model` for Explain under `run_id`'s checkpoint folder; returns the LOGGED_MODEL record.
    Zoo models need `dataset` (and any RunConfig `fields` the model was built with: hidden, depth, width...)."""
    name = zoo_name(model)
    if name is not None:
        return _save_zoo(run_id, model, name, dataset, step, mean, std, fields)
    architecture = architecture or torchvision_architecture(model)
    if architecture is None:
        raise _other_model(model)
    return _save_torchvision(run_id, model, architecture, input_size, mean, std, classes)


def _save_zoo(run_id: str, model: nn.Module, name: str, dataset: str | None, step: int, mean, std,
              fields: dict[str, Any]) -> dict[str, Any]:
    from engine.checkpoints import Checkpoint, best_path, epoch_path, save_checkpoint
    from engine.config import RunConfig
    from engine.datasets import dataset_info
    from engine.models import model_from_config

    if dataset is None:
        raise LogModelError(f"run.log_model: a TrainLens {name} needs the dataset it was trained on, e.g. "
                            "run.log_model(model, dataset='mnist5k')")
    try:
        config = RunConfig.from_dict({**RunConfig().to_dict(), **fields, "model": name, "dataset": dataset})
        info = dataset_info(dataset)
    except (ValueError, KeyError, TypeError) as exc:
        raise LogModelError(f"run.log_model: {exc}") from None
    if info.kind == "text":
        raise LogModelError("run.log_model: text models are explained from runs TrainLens trains (their vocabulary "
                            "comes from its data); train it with `trainlens train` instead")
    reference = model_from_config(config, info.channels, info.size, len(info.classes))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    if expected != {k: tuple(v.shape) for k, v in state.items()}:
        raise LogModelError(f"run.log_model: this {name} does not match a {name} for {dataset} built with "
                            f"{fields or 'the default settings'}; pass the settings it was built with "
                            "(e.g. hidden=256, depth=3) so Explain can rebuild it")
    extra = {}
    if mean is not None and std is not None:
        extra = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    checkpoint = Checkpoint(config=config, epoch=0, step=int(step), model=state, extra=extra)
    save_checkpoint(epoch_path(run_id, 0), checkpoint)
    save_checkpoint(best_path(run_id), checkpoint)
    return {"kind": "zoo", "architecture": name, "dataset": dataset, "path": str(best_path(run_id)), "step": int(step)}


def _save_torchvision(run_id: str, model: nn.Module, architecture: str, input_size, mean, std, classes) -> dict:
    import json

    from safetensors.torch import save_file

    from engine.explain.images import IMAGENET_MEAN, IMAGENET_STD
    from engine.explain.own_model import OwnModelError, Preparation

    preparation = {"input_size": int(input_size or 224), "mean": list(mean or IMAGENET_MEAN),
                   "std": list(std or IMAGENET_STD), "classes": [str(c) for c in (classes or ())]}
    try:
        Preparation.from_json(json.dumps(preparation), "run.log_model's input_size/mean/std")
    except OwnModelError as exc:
        raise LogModelError(str(exc)) from None
    folder = checkpoint_dir(run_id)
    path = folder / WEIGHTS_FILE
    staged = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}, str(staged))
    staged.replace(path)
    return {"kind": "torchvision", "architecture": architecture, "path": str(path), "preparation": preparation}


def load_torchvision(record: dict[str, Any]):
    """The OwnModel (engine.explain.own_model) of a torchvision LOGGED_MODEL record."""
    import json

    from engine.explain import own_model

    preparation = own_model.Preparation.from_json(json.dumps(record.get("preparation") or {}))
    state = own_model.state_from_path(Path(record["path"]))
    return own_model.from_weights(record["architecture"], state, preparation, Path(record["path"]).name)
