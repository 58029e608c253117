"""Starting a run from another: its weights (`init_from`), what stays fixed (`freeze`) and low-rank adapters
(`adapter`), applied to a freshly built model in one place (`prepare_model`), for the training loop, the helper
jobs and the pages' parameter counts alike.

The rules, in order:
1. `adapter=lora` gives every linear and convolution layer but the head a low-rank adapter (engine.adapters).
2. `init_from` loads the source run's checkpoint into the model: every weight of the same name and shape; the head
   is kept fresh (this run's seed drew it) when the two runs' classes differ (names, not only their count: a head
   trained on digits 0-4 means nothing for 5-9); a character model keeps it when the vocabulary is the same. Any other weight that is missing or has another shape is refused
   with one line naming it and the two shapes. A source trained with adapters is merged first (W + scale B A).
3. What trains: with an adapter, the adapters and the head (every base weight of an adapted layer, and every other
   layer, is frozen); `freeze` then freezes more, by name: `backbone` (the model's feature layers, its
   `backbone_names`, adapters included), `all_but_head` (everything but the head: a linear probe) or globs over
   parameter names. Batch-norm layers whose weights are all frozen keep their running statistics too (they stay in
   eval mode), so a frozen backbone is frozen whole.
The optimizer is given only the parameters that train (`trainable_parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from engine.adapters import LORA_PARAMS, add_lora, adapter_parameter_names, merge_lora_state
from engine.config import RunConfig
from engine.transfer_spec import (FREEZE_MODES, SHAPE_FIELDS, checkpoint_epoch, class_names, freeze_patterns,
                                  parse_init_from)


class SourceUnusable(ValueError):
    """The run named by `init_from` cannot start this one: no such checkpoint, or weights that do not fit."""


@dataclass
class TransferSummary:
    """What `prepare_model` did, for the model summary artifact (the Run report, `trainlens show`)."""

    trainable: int = 0  # parameters the optimizer updates
    frozen: int = 0  # parameters kept fixed
    adapter: int = 0  # of the trainable ones, the adapters' (lora_a, lora_b)
    source: str = ""  # init_from, resolved (RUN_ID:which); "" = random weights
    new_head: bool = False  # the head was drawn fresh: the source run had other classes
    adapted_layers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"trainable": self.trainable, "frozen": self.frozen, "adapter": self.adapter, "source": self.source,
                "new_head": self.new_head, "adapted_layers": self.adapted_layers}


def prepare_model(model: nn.Module, config: RunConfig, *, load_source: bool = True,
                  device: str = "cpu") -> TransferSummary:
    """Apply the run's adapters, source weights and freezing to `model` in place (see the module docstring).
    load_source: False when the weights come from elsewhere anyway (a resumed run's checkpoint, a count on the meta
    device)."""
    summary = TransferSummary(source=config.init_from)
    check_freeze_matches(model, config)
    if config.adapter == "lora":
        summary.adapted_layers = add_lora(model, config.lora_rank, config.lora_alpha, skip=(model.head_name,))
    if config.init_from and load_source:
        summary.new_head = load_source_weights(model, config, device=device)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not _frozen(model, config, name))
    _freeze_batchnorm(model)
    summary.trainable, summary.frozen, summary.adapter = parameter_counts(model)
    return summary


def parameter_counts(model: nn.Module) -> tuple[int, int, int]:
    """(trainable, frozen, adapter) parameter counts of a prepared model."""
    adapters = set(adapter_parameter_names(model))
    trainable = frozen = adapter = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            trainable += parameter.numel()
            adapter += parameter.numel() if name in adapters else 0
        else:
            frozen += parameter.numel()
    return trainable, frozen, adapter


def parameter_summary(config: RunConfig, channels: int, size: int, num_classes: int) -> dict[str, int]:
    """{"total", "trainable", "frozen", "adapter"}: the parameters of a run's model once its adapters and freezing are
    applied, counted on torch's meta device (nothing allocated; see engine.models.parameter_count)."""
    import torch

    from engine.models import model_from_config

    with torch.device("meta"):
        model = model_from_config(config, channels, size, num_classes)
        summary = prepare_model(model, config, load_source=False, device="meta")
    return {"total": summary.trainable + summary.frozen, "trainable": summary.trainable, "frozen": summary.frozen,
            "adapter": summary.adapter}


def estimate_summary(config: RunConfig) -> dict[str, int]:
    """`parameter_summary` from the config and the dataset registry alone, as engine.models.estimate_parameters
    counts (a text model's vocabulary at its cap): what the Train page shows and a class's parameter limit reads."""
    from engine.models import estimate_arguments

    return parameter_summary(*estimate_arguments(config))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def frozen_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if not p.requires_grad]


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _frozen(model: nn.Module, config: RunConfig, name: str) -> bool:
    head = _under(name, (model.head_name,))
    if config.adapter != "none" and not head and name.rsplit(".", 1)[-1] not in LORA_PARAMS:
        return True  # a base weight under an adapter, or a layer without one: the adapters learn instead
    if config.freeze == "none":
        return False
    if config.freeze == "all_but_head":
        return not head
    if config.freeze == "backbone":
        return _under(name, model.backbone_names)
    return any(fnmatchcase(name, pattern) for pattern in freeze_patterns(config.freeze))


def check_freeze_matches(model: nn.Module, config: RunConfig) -> None:
    """ValueError when `freeze` patterns match no parameter of the model (a typo would silently freeze nothing)."""
    if config.freeze in FREEZE_MODES:
        return
    names = [name for name, _ in model.named_parameters()]
    for pattern in freeze_patterns(config.freeze):
        if not any(fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise ValueError(f"freeze={config.freeze!r}: {pattern!r} matches no parameter of this {config.model}; its "
                             f"parameters are {shown}")


class _FrozenBatchNorm:
    """Mixed into a batch-norm layer whose weights are all frozen: it stays in eval mode, so its running statistics
    (buffers, not parameters) stay the source's too."""

    def train(self, mode: bool = True):
        return super().train(False)  # type: ignore[misc]


_FROZEN_BN: dict[type, type] = {}


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or isinstance(module, _FrozenBatchNorm):
            continue
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            base = type(module)
            if base not in _FROZEN_BN:
                _FROZEN_BN[base] = type(f"Frozen{base.__name__}", (_FrozenBatchNorm, base), {"__module__": __name__})
            module.__class__ = _FROZEN_BN[base]
            module.train(False)


# ---- the source run's weights ----------------------------------------------------------------------------------
def source_checkpoint_path(init_from: str):
    """The checkpoint file `init_from` names (a full run id, as the store resolves it at submission); FileNotFoundError
    SourceUnusable with a readable message."""
    from engine.checkpoints import resolve

    run_id, which = parse_init_from(init_from)
    try:
        return resolve(run_id, checkpoint_epoch(which))
    except FileNotFoundError as exc:
        raise SourceUnusable(f"init_from={init_from}: {exc}") from None


def load_source_weights(model: nn.Module, config: RunConfig, *, device: str = "cpu") -> bool:
    """Load the source run's weights into `model` (rule 2 of the module docstring); returns whether the head was kept
    fresh. SourceUnusable (one line) when the source does not fit."""
    from engine.checkpoints import load_checkpoint

    ckpt = load_checkpoint(source_checkpoint_path(config.init_from), device=device)
    source = ckpt.model
    if ckpt.config.adapter == "lora":
        source = merge_lora_state(source, ckpt.config.lora_alpha / ckpt.config.lora_rank)
    keep_head = same_outputs(ckpt.config, config)
    state = model.state_dict()
    fresh_head = False
    for key, tensor in state.items():
        if key.rsplit(".", 1)[-1] in LORA_PARAMS:
            continue  # this run's own adapters: they start at zero update
        head = _under(key, (model.head_name,))
        if key not in source:
            raise SourceUnusable(f"init_from={config.init_from}: the source run's model has no {key} (it trained a "
                             f"{ckpt.config.model}; this run builds a {config.model})")
        if head and (not keep_head or source[key].shape != tensor.shape):
            fresh_head = True
            continue
        if source[key].shape != tensor.shape:
            raise SourceUnusable(f"init_from={config.init_from}: {key} is {list(source[key].shape)} in the source run "
                                 f"and {list(tensor.shape)} here; the architectures differ "
                                 f"({architecture_difference(ckpt.config, config)})")
        state[key] = source[key].to(tensor.dtype)
    extra = sorted(set(source) - set(state))
    if extra:
        raise SourceUnusable(f"init_from={config.init_from}: the source run's model has {extra[0]}, which this "
                         f"{config.model} does not (the architectures differ)")
    model.load_state_dict(state)
    return fresh_head


def same_outputs(source: RunConfig, target: RunConfig) -> bool:
    """Whether a head's outputs mean the same thing in both runs: the same classes by name, or for a character model
    (its classes are the next characters) the same vocabulary, which the same data and options build
    (same_vocabulary; the submission refuses another, engine.runs.lineage)."""
    from engine.data.loading import same_vocabulary
    from engine.datasets import DATASETS

    if DATASETS[target.dataset].kind == "chars":
        return DATASETS[source.dataset].kind == "chars" and same_vocabulary(source, target)
    names = class_names(target)
    return names is not None and class_names(source) == names


def architecture_difference(source: RunConfig, target: RunConfig) -> str:
    """The shape fields two configs differ in, e.g. 'hidden 16 vs 32', for a refusal's message."""
    differing = [f"{name} {getattr(source, name)} vs {getattr(target, name)}" for name in SHAPE_FIELDS
                 if getattr(source, name) != getattr(target, name)]
    return ", ".join(differing) if differing else "the inputs have another size or number of channels"

