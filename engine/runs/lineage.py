"""Lineage: the run a run started from (`init_from`), checked and resolved when it is submitted, and read back for the
pages and the CLI.

`check_transfer(store, config)` runs before a run is queued (Store.create_run), so a refusal queues nothing: it
resolves `init_from` (an id, a unique prefix of one) to the full run id and the weights it names (`RUN_ID:best`), and
refuses in one line a run that does not exist, is no training run of TrainLens's, ended without finishing, is of
the other kind (text against images), of another model, image size or vocabulary; a `freeze` pattern that matches
no weight; more examples per class than the data has. A source still queued or training is accepted: the new run
waits in the queue until it finishes (engine.runs.store.queue), which is how a lesson's fine-tuning runs follow
their pretraining. The resolved `init_from` is kept in the run's config, so the lineage lives with the run.
"""

from __future__ import annotations

from typing import Any

from engine.config import RunConfig
from engine.datasets import DATASETS
from engine.records import ACTIVE, SUCCEEDED, RunKind
from engine.transfer_spec import FREEZE_MODES, parse_init_from


class SourceRefused(ValueError):
    """`init_from` (or another transfer field) cannot start this run; the message says why, in one line."""


def source_id(init_from: Any) -> str:
    """The run id of a resolved `init_from` ("" for none): the pages' and the queue's way to read lineage."""
    if not isinstance(init_from, str) or not init_from:
        return ""
    return init_from.partition(":")[0]


def source_names(runs) -> dict[str, str]:
    """run_id -> the name of the run it started from, for the runs of a listing (Store.list_runs: `cfg.init_from`)
    that started from another; a source missing from the listing (deleted) reads as its short id."""
    if "cfg.init_from" not in runs.columns:
        return {}
    names = dict(zip(runs["run_id"], runs["name"]))
    out = {}
    for run_id, init_from in zip(runs["run_id"], runs["cfg.init_from"]):
        source = source_id(init_from)
        if source:
            out[run_id] = str(names.get(source, f"{source[:8]} (deleted)"))
    return out


def check_transfer(store, config: RunConfig) -> RunConfig:
    """`config` with `init_from` resolved to RUN_ID:which; SourceRefused (one line) when it cannot start this run (see
    the module docstring). Reads only: called before the write transaction that queues the run."""
    _check_freeze(config)
    _check_per_class(config)
    if not config.init_from:
        return config
    ref, which = parse_init_from(config.init_from)
    run_id = store.find_run(ref)
    if run_id is None:
        raise SourceRefused(f"init_from={config.init_from}: no run has the id {ref!r} (`trainlens runs` lists them; a "
                            "short id must be the start of exactly one)")
    source = store.get_run(run_id)
    label = f"{source['name']} ({run_id})"
    if source["kind"] != RunKind.TRAIN:
        what = "was trained by a script" if source["kind"] == RunKind.SCRIPT else f"is a helper job ({source['kind']})"
        raise SourceRefused(f"init_from={config.init_from}: run {label} {what}; a run starts only from a run TrainLens "
                            "trained")
    status = source["status"]
    if status not in SUCCEEDED and status not in ACTIVE:
        raise SourceRefused(f"init_from={config.init_from}: run {label} ended {status.replace('_', ' ')}; start from a "
                            "run that completed (or resume it first)")
    check_compatible(source["config"], config, label)
    resolved = config.with_updates(init_from=f"{run_id}:{which}")
    if status in SUCCEEDED:  # a run still training has its checkpoints to come
        from engine.transfer import SourceUnusable, source_checkpoint_path

        try:
            source_checkpoint_path(resolved.init_from)
        except SourceUnusable as exc:
            raise SourceRefused(str(exc)) from None
    return resolved


def check_compatible(source: RunConfig, config: RunConfig, label: str) -> None:
    """SourceRefused unless a model of `config` can take the weights of `source`'s (all but the head)."""
    spec = config.init_from
    kind, source_kind = DATASETS[config.dataset].kind, DATASETS[source.dataset].kind
    if kind != source_kind:
        raise SourceRefused(f"init_from={spec}: run {label} is a {source_kind} run ({source.dataset}); this is an "
                            f"{kind} run ({config.dataset}): a model starts only from a run of the same kind")
    if source.model != config.model:
        raise SourceRefused(f"init_from={spec}: run {label} trained a {source.model}; this run's model is "
                            f"{config.model}: set model={source.model} (and its sizes) to start from it")
    if kind in ("text", "chars"):
        _check_same_vocabulary(source, config, label)
    else:
        theirs, ours = DATASETS[source.dataset], DATASETS[config.dataset]
        if (theirs.channels, theirs.size) != (ours.channels, ours.size):
            raise SourceRefused(f"init_from={spec}: run {label} read {theirs.channels}x{theirs.size}x{theirs.size} "
                                f"images ({source.dataset}); this run reads {ours.channels}x{ours.size}x{ours.size} "
                                f"({config.dataset})")
    _check_shapes(source, config, label)


def _check_same_vocabulary(source: RunConfig, config: RunConfig, label: str) -> None:
    # a text or character model's embedding has a row per word or character of its vocabulary
    from engine.data.loading import same_vocabulary

    fields = ("dataset", "val_fraction", "data_dir", "train_limit", "text_negation", "text_contrast", "text_filler",
              "vocab_size", "vocab_min_count", "text_level", "text_column", "label_column", "names_list", "block_size")
    if not same_vocabulary(source, config):
        differing = next((f for f in fields if getattr(source, f) != getattr(config, f)), "the data")
        kind = "character" if DATASETS[config.dataset].kind == "chars" else "text"
        raise SourceRefused(f"init_from={config.init_from}: a {kind} model starts only from a run with the same "
                            f"vocabulary; {differing} differs ({getattr(source, differing, '?')!r} in run {label}, "
                            f"{getattr(config, differing, '?')!r} here)")


def _check_shapes(source: RunConfig, config: RunConfig, label: str) -> None:
    """Both models built on the meta device (nothing allocated): every weight but the head's must have one shape."""
    import torch

    from engine.models import estimate_arguments, model_from_config

    with torch.device("meta"):
        theirs = model_from_config(*estimate_arguments(source.with_updates(init_from="", adapter="none")))
        ours = model_from_config(*estimate_arguments(config.with_updates(init_from="", adapter="none")))
    from engine.transfer import architecture_difference

    head = ours.head_name + "."
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    differ = f"the architectures differ ({architecture_difference(source, config)})"
    for key, tensor in our_state.items():
        if key.startswith(head):
            continue
        if key not in their_state:
            raise SourceRefused(f"init_from={config.init_from}: run {label}'s model has no {key}; {differ}")
        if their_state[key].shape != tensor.shape:
            raise SourceRefused(f"init_from={config.init_from}: {key} is {list(their_state[key].shape)} in run {label} "
                                f"and {list(tensor.shape)} here; {differ}")
    extra = [k for k in their_state if k not in our_state and not k.startswith(theirs.head_name + ".")]
    if extra:
        raise SourceRefused(f"init_from={config.init_from}: run {label}'s model has {extra[0]}, which this one does "
                            f"not; {differ}")


def _check_freeze(config: RunConfig) -> None:
    if config.freeze in FREEZE_MODES:
        return
    from engine.transfer import estimate_summary

    estimate_summary(config)  # ValueError when a pattern matches no weight


def _check_per_class(config: RunConfig) -> None:
    """Enough training examples of every chosen class, when the data is on this machine (else the run tells)."""
    if not config.train_per_class:
        return
    from engine.data.loading import cached_run_split
    from engine.data.subsets import restrict
    from engine.datasets import DATA_SEED, DatasetUnavailable

    try:
        whole = cached_run_split(config.with_updates(classes="", train_per_class=0), download=False)
    except DatasetUnavailable:
        return
    restrict(whole, config.classes, config.train_per_class, DATA_SEED)  # DatasetUnavailable: one line
