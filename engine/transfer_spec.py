"""The syntax of the fields that start a run from another one and pick what it learns: `init_from`, `freeze`,
`adapter` and `classes` (RunConfig's transfer and few-shot fields), read the same way by the config's validation, the
data loader, the training loop and the pages.

Torch-free, on the engine's ground floor with `config` and `datasets`: a page or the CLI checks a typed value without
paying for torch. What needs the store (does the run exist, has it finished, does its architecture fit) is checked at
submission (engine.runs.lineage); what needs the data (are there K examples of every class) when the split is loaded.
"""

from __future__ import annotations

import re
from typing import Sequence

FREEZE_MODES = ("none", "backbone", "all_but_head")  # or glob(s) over parameter names, comma-separated
ADAPTERS = ("none", "lora")
CHECKPOINT_CHOICES = ("best", "last")  # or epochN: the weights after epoch N (epoch0: before training)
MAX_SPEC = 200  # characters of an init_from, freeze or classes value: a few names, never a page

_RUN_REF = re.compile(r"^[0-9A-Za-z]{1,64}$")
_EPOCH = re.compile(r"^epoch(\d{1,6})$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]+$")


def parse_init_from(text: str) -> tuple[str, str]:
    """`RUN_ID[:best|last|epochN]` -> (run id or prefix, which weights); ValueError naming the field otherwise."""
    _length("init_from", text)
    ref, _, which = text.strip().partition(":")
    which = which.strip() or "best"
    if not _RUN_REF.match(ref.strip()):
        raise ValueError(f"init_from={text!r}: give a run id (or the first characters of one), optionally followed by "
                         ":best, :last or :epochN")
    if which not in CHECKPOINT_CHOICES and not _EPOCH.match(which):
        raise ValueError(f"init_from={text!r}: after the run id, :best, :last or :epochN (N counts from 1; epoch0 is "
                         "the weights before training)")
    return ref.strip(), which


def checkpoint_epoch(which: str) -> int | str:
    """What engine.checkpoints.resolve takes for `which`: 'best', 'last', or the engine's 0-based epoch index
    (epochN, counted from 1 as users read epochs, is index N-1; epoch0, before training, is -1)."""
    match = _EPOCH.match(which)
    return int(match.group(1)) - 1 if match else which


def check_freeze(text: str) -> str:
    """`none`, `backbone`, `all_but_head` or comma-separated globs over parameter names (`conv1.*,fc1.*`)."""
    _length("freeze", text)
    if text in FREEZE_MODES:
        return text
    patterns = freeze_patterns(text)
    if not patterns or not all(_GLOB.match(p) for p in patterns):
        raise ValueError(f"freeze={text!r}: allowed values are {', '.join(FREEZE_MODES)}, or patterns over parameter "
                         "names separated by commas (e.g. conv1.*,fc1.*)")
    return text


def freeze_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_classes(text: str, names: Sequence[str], *, dataset: str = "the dataset") -> tuple[int, ...]:
    """The class indices `text` chooses among `names` (a dataset's classes, index = label), ascending: "" = all
    (an empty tuple); "5-9" a range of indices; "0,2,4" indices; "cat,dog" names (any case). ValueError with one line
    for an empty range, an unknown class, a class named twice, or fewer than 2 classes."""
    _length("classes", text)
    if not text.strip():
        return ()
    lowered = {name.strip().lower(): index for index, name in enumerate(names)}
    chosen: list[int] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise ValueError(f"classes={text!r}: an empty entry between commas")
        if token.lower() in lowered:  # a name first: "T-shirt/top" is a class, not a range
            found = [lowered[token.lower()]]
        elif re.fullmatch(r"\d{1,6}", token):
            found = [int(token)]
        elif re.fullmatch(r"\d{1,6}\s*-\s*\d{1,6}", token):
            low, high = (int(part) for part in token.split("-"))
            if high < low:
                raise ValueError(f"classes={text!r}: the range {token} is empty (write the lower index first)")
            found = list(range(low, high + 1))
        else:
            raise ValueError(f"classes={text!r}: {token!r} is not a class of {dataset}; its classes are "
                             f"{_listed(names)}")
        for index in found:
            if not 0 <= index < len(names):
                raise ValueError(f"classes={text!r}: class {index} does not exist; {dataset} has classes 0-"
                                 f"{len(names) - 1} ({_listed(names)})")
            if index in chosen:
                raise ValueError(f"classes={text!r}: class {names[index]!r} is chosen twice")
            chosen.append(index)
    if len(chosen) < 2:
        raise ValueError(f"classes={text!r}: choose at least 2 classes (a classifier of one class has nothing to "
                         "learn)")
    return tuple(sorted(chosen))


def chosen_class_names(text: str, names: Sequence[str], *, dataset: str = "the dataset") -> tuple[str, ...]:
    """The names of the classes `text` chooses (all of `names` for "")."""
    indices = parse_classes(text, names, dataset=dataset)
    return tuple(names[i] for i in indices) if indices else tuple(names)


def class_names(config) -> tuple[str, ...] | None:
    """The classes a run of `config` learns, by name (None when known only once the data is read: a CSV)."""
    from engine.datasets import DATASETS

    info = DATASETS[config.dataset]
    return chosen_class_names(config.classes, info.classes, dataset=config.dataset) if info.classes else None


def check_config(config) -> None:
    """The transfer and few-shot fields of a RunConfig, as far as they can be checked without the store or the data
    (RunConfig.validate calls it)."""
    from engine.datasets import DATASETS

    if config.init_from:
        parse_init_from(config.init_from)
    check_freeze(config.freeze)
    info = DATASETS[config.dataset]
    if info.classes:  # a CSV's classes are known only once it is read: checked when the split is loaded
        parse_classes(config.classes, info.classes, dataset=config.dataset)
    else:
        _length("classes", config.classes)
    if config.adapter == "lora" and config.model in RECURRENT_MODELS:
        raise ValueError(f"adapter=lora: a {config.model} has no linear or convolution layer before its head to adapt; "
                         "freeze=all_but_head trains its head alone")


RECURRENT_MODELS = ("rnn", "gru", "lstm")  # their layers are recurrent cells, which adapters do not wrap
# The config fields that decide the shapes of a model's weights (with the dataset's image size and channels, or its
# vocabulary): a run starts from another only when they agree, but for the head.
SHAPE_FIELDS = ("model", "hidden", "depth", "width", "skip", "embed_dim", "bidirectional")


def _length(field: str, text: str) -> None:
    if len(text) > MAX_SPEC:
        raise ValueError(f"{field}={text[:40]!r}...: {len(text):,} characters; at most {MAX_SPEC}")


def _listed(names: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" ... ({len(names)} in all)" if len(names) > most else "")
