"""Checkpoints as safetensors files plus the run config: writing and loading never unpickles.

Layout under TRAINLENS_HOME/checkpoints/RUN_ID/: `epoch_N.safetensors` after every epoch,
`best.safetensors` for the best validation epoch so far, and `initial.safetensors` (the weights before training).
A file holds tensor groups by prefix: `model.` (the raw weights), `ema.`/`swa.` (averaged weights), `optim.`
(optimizer state, for resume) and `rng.` (random state); its metadata holds the config, epoch, step and metrics
as JSON. The training loop writes them with `write_initial_checkpoint` and `write_epoch_checkpoints` (staged
first, so no reader ever sees half a file).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.config import RunConfig
from engine.paths import checkpoint_dir, make_private

if TYPE_CHECKING:
    from engine.sinks import Sink

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    config: RunConfig
    epoch: int  # 0-based epoch this checkpoint closes
    step: int  # optimizer steps taken so far
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    swa: dict[str, torch.Tensor] | None = None
    optimizer: dict | None = None  # torch optimizer state_dict, rebuilt from tensors + JSON
    rng: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # loop state for resume: best metric, bad epochs, swa count...


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for prefix, state in (("model.", ckpt.model), ("ema.", ckpt.ema), ("swa.", ckpt.swa)):
        for name, tensor in (state or {}).items():
            tensors[prefix + name] = tensor.detach().to("cpu").contiguous().clone()
    optim_meta = None
    if ckpt.optimizer is not None:
        optim_meta = {"param_groups": ckpt.optimizer["param_groups"], "scalars": {}}
        for index, state in ckpt.optimizer["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{index}.{key}"] = value.detach().to("cpu").contiguous().clone()
                else:  # plain numbers (e.g. 'step' in some optimizers) go to metadata
                    optim_meta["scalars"][f"{index}.{key}"] = value
    if ckpt.rng is not None:
        tensors["rng.torch"] = ckpt.rng.contiguous().clone()
    metadata = {
        "config": ckpt.config.to_json(),
        "epoch": str(ckpt.epoch),
        "step": str(ckpt.step),
        "metrics": json.dumps(ckpt.metrics),
        "extra": json.dumps(ckpt.extra),
        "optimizer": json.dumps(optim_meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    make_private(tmp)  # a run's weights are its owner's (engine.paths)
    tmp.replace(path)  # atomic: a reader never sees a half-written checkpoint


class CheckpointUnreadable(ValueError):
    """A checkpoint file that is not a readable TrainLens checkpoint (damaged, crafted, or from elsewhere)."""


def load_checkpoint(path: Path, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint; CheckpointUnreadable (a ValueError) with the file and the reason for any bad file:
    a truncated or crafted header (safetensors refuses absurd lengths before allocating), missing metadata, a
    config that no longer validates, something that is not a regular file (checked before it is opened)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a link to /dev/zero, a pipe: never opened (it could block)
            raise CheckpointUnreadable(f"checkpoint {path} is not a readable TrainLens checkpoint (not a regular "
                                       "file: a device, a pipe or a folder)")
        return _read_checkpoint(path, device)
    except (FileNotFoundError, CheckpointUnreadable):
        raise
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError type
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointUnreadable(f"checkpoint {path} is not a readable TrainLens checkpoint ({reason})") from None


def _read_checkpoint(path: Path, device: str) -> Checkpoint:
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "swa": {}, "optim": {}, "rng": {}}
    with safe_open(str(path), framework="pt", device=device) as f:
        metadata = f.metadata() or {}
        for key in f.keys():
            prefix, name = key.split(".", 1)
            groups[prefix][name] = f.get_tensor(key)
    optimizer = None
    optim_meta = json.loads(metadata.get("optimizer", "null"))
    if optim_meta is not None:
        state: dict[int, dict] = {}
        for name, tensor in groups["optim"].items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
        for name, value in optim_meta["scalars"].items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = value
        optimizer = {"state": state, "param_groups": optim_meta["param_groups"]}
    return Checkpoint(
        config=RunConfig.from_json(metadata["config"]),
        epoch=int(metadata["epoch"]),
        step=int(metadata["step"]),
        model=groups["model"],
        ema=groups["ema"] or None,
        swa=groups["swa"] or None,
        optimizer=optimizer,
        rng=groups["rng"].get("torch"),
        metrics=json.loads(metadata.get("metrics", "{}")),
        extra=json.loads(metadata.get("extra", "{}")),
    )


def epoch_path(run_id: str, epoch: int) -> Path:
    return checkpoint_dir(run_id) / f"epoch_{epoch}.safetensors"


def best_path(run_id: str) -> Path:
    return checkpoint_dir(run_id) / "best.safetensors"


INITIAL_EPOCH = -1  # the engine's index of the weights before training (users read "before training", epoch 0)


def initial_path(run_id: str) -> Path:
    """The untrained model, saved before the first step, so "across training" starts from a random model."""
    return checkpoint_dir(run_id) / "initial.safetensors"


def history_epochs(run_id: str) -> list[int]:
    """Every checkpoint over training, ascending: INITIAL_EPOCH first when the run saved its initial weights."""
    return ([INITIAL_EPOCH] if initial_path(run_id).exists() else []) + list_epochs(run_id)


def list_epochs(run_id: str) -> list[int]:
    """Epochs that have a checkpoint on disk, ascending."""
    epochs = []
    for path in checkpoint_dir(run_id).iterdir():
        match = _EPOCH_FILE.match(path.name)
        if match:
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def resolve(run_id: str, which: str | int = "best") -> Path:
    """Path of a run's checkpoint: 'best', 'last', or an epoch number (INITIAL_EPOCH: before training). FileNotFoundError with a readable message."""
    epochs = list_epochs(run_id)
    if which == "best" and best_path(run_id).exists():
        return best_path(run_id)
    if which in ("best", "last"):
        if not epochs:
            raise FileNotFoundError(f"run {run_id} has no checkpoint yet (one is written at the end of each epoch)")
        return epoch_path(run_id, epochs[-1])
    epoch = int(which)
    if epoch == INITIAL_EPOCH:
        if not initial_path(run_id).exists():
            raise FileNotFoundError(f"run {run_id} has no checkpoint from before training (runs trained before it "
                                    "was introduced do not)")
        return initial_path(run_id)
    if epoch not in epochs:
        # in epochs as users count them (engine.records.epoch_number), as `explain --checkpoint N` takes them
        available = ", ".join(str(e + 1) for e in epochs) or "none"
        raise FileNotFoundError(f"run {run_id} has no checkpoint after epoch {epoch + 1}; after epochs: {available}"
                                + (" (0: before training)" if initial_path(run_id).exists() else ""))
    return epoch_path(run_id, epoch)


def load_run_model(run_id: str, which: str | int = "best", weights: str = "model", device: str = "cpu"):
    """Rebuild a run's model from a checkpoint, in eval mode. weights: 'model', 'ema' or 'swa'.

    Returns (model, config, dataset_info, checkpoint).
    """
    from engine.datasets import dataset_info
    from engine.models import model_from_config

    ckpt = load_checkpoint(resolve(run_id, which), device=device)
    info = dataset_info(ckpt.config.dataset)
    if info.kind in ("text", "chars"):  # the vocabulary size and classes come from the data (a deterministic split)
        from engine.data.loading import cached_run_split

        info = cached_run_split(ckpt.config, download=False).info
    elif ckpt.config.classes:  # a class subset: its classes, re-indexed 0..k-1 as the run learned them
        from dataclasses import replace

        from engine.transfer_spec import class_names

        info = replace(info, classes=class_names(ckpt.config))
    model = model_from_config(ckpt.config, info.channels, info.size, len(info.classes))
    if ckpt.config.adapter == "lora":  # the adapted layers its weights were saved from (lora_a, lora_b)
        from engine.adapters import add_lora

        add_lora(model, ckpt.config.lora_rank, ckpt.config.lora_alpha, skip=(model.head_name,))
    state = {"model": ckpt.model, "ema": ckpt.ema, "swa": ckpt.swa}[weights]
    if state is None:
        raise ValueError(f"run {run_id} has no {weights.upper()} weights (the run did not use {weights})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing keys or tensor shapes that do not fit: a checkpoint altered by hand
        first = str(exc).splitlines()[0][:200]
        raise CheckpointUnreadable(f"checkpoint of run {run_id} does not fit the model its config describes ({first})") from None
    return model.to(device).eval(), ckpt.config, info, ckpt


def write_initial_checkpoint(run_id: str, config: RunConfig, model: torch.nn.Module, mean, std) -> None:
    """The untrained weights (engine epoch -1, "before training"), so explanations can be compared before and
    after learning. Only the file: it is not a checkpoint to resume from, so the store's checkpoint list (which
    resuming and the runner read) does not name it. Any worker writing it for this run writes the same weights
    (same config, same seed), so it needs no fencing; staged, so a reader never sees half a file."""
    path = initial_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_checkpoint(staged, Checkpoint(config=config, epoch=INITIAL_EPOCH, step=0, model=model.state_dict(),
                                       extra={"mean": list(mean), "std": list(std)}))
    os.replace(staged, path)


def write_epoch_checkpoints(run_id: str, ckpt: Checkpoint, improved: bool, sink: Sink) -> None:
    """An epoch's checkpoint, and `best` too when the epoch improved on the best so far, each recorded with `sink`
    (which moves the staged file into place only while this worker still owns the run)."""
    targets = [("epoch", epoch_path(run_id, ckpt.epoch))] + ([("best", best_path(run_id))] if improved else [])
    for kind, path in targets:
        staged = path.with_name(f".{path.name}.{os.getpid()}.partial")  # never a half-written file at `path`
        save_checkpoint(staged, ckpt)
        sink.checkpoint(ckpt.epoch, kind, str(path), ckpt.metrics, staged=str(staged))
