"""Class subsets and few-shot training sets: `classes` and `train_per_class` applied to a loaded split.

Applied after the usual split (engine.data.loading), so validation is the same validation set restricted to the
chosen classes, and every run that chooses the same classes sees the same images whatever its seed. Labels are
re-indexed 0..k-1 in the dataset's order and the chosen classes' names kept (`info.classes`), so reports name them
("5", "6"...), not their new indices. K examples per class are drawn by the data seed from each class's training
images: the K = 5 images are among the K = 50 ones, and every run of a lesson gets the same K. The normalisation
statistics stay the whole training split's (a handful of images would give noisy ones, and a run started from
another on the same dataset then normalises its inputs exactly as its source did). A text split keeps its
vocabulary (built from the whole training split) and restricts its sentences, relevance and hard subset alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from engine.datasets import DatasetUnavailable
from engine.transfer_spec import parse_classes


def restrict(split, classes: str, per_class: int, seed: int):
    """`split` (a DatasetSplit) with only the classes `classes` chooses ("" = all) and, with `per_class` > 0, K
    training examples of each; the split itself when neither applies. DatasetUnavailable (one line) when the data
    cannot give them: a class has fewer than K training examples, or a CSV has no such class."""
    if not classes and not per_class:
        return split
    names = split.info.classes
    try:
        chosen = parse_classes(classes, names, dataset=split.info.name) or tuple(range(len(names)))
    except ValueError as exc:  # a CSV's classes are known only now
        raise DatasetUnavailable(str(exc)) from None
    new_label = torch.full((len(names),), -1, dtype=torch.int64)
    new_label[list(chosen)] = torch.arange(len(chosen))
    train_keep = _members(split.train_y, chosen)
    if per_class:
        train_keep = _few_shot(split.train_y, train_keep, chosen, names, per_class, seed)
    val_keep = _members(split.val_y, chosen)
    info = dataclasses.replace(split.info, classes=tuple(names[i] for i in chosen))
    text = split.text
    if text is not None:
        kept = val_keep.tolist()
        text = dataclasses.replace(
            text, val_tokens=[text.val_tokens[i] for i in kept],
            val_relevance=[text.val_relevance[i] for i in kept] if text.val_relevance is not None else None,
            val_hard=text.val_hard[val_keep] if text.val_hard is not None else None)
    return dataclasses.replace(
        split, info=info, train_x=split.train_x[train_keep], train_y=new_label[split.train_y[train_keep]],
        val_x=split.val_x[val_keep], val_y=new_label[split.val_y[val_keep]],
        train_masks=split.train_masks[train_keep] if split.train_masks is not None else None,
        val_masks=split.val_masks[val_keep] if split.val_masks is not None else None, text=text)


def _members(labels: torch.Tensor, chosen: tuple[int, ...]) -> torch.Tensor:
    """Indices (ascending) of the examples whose label is one of `chosen`."""
    return torch.nonzero(torch.isin(labels, torch.tensor(chosen, dtype=labels.dtype)), as_tuple=True)[0]


def _few_shot(labels: torch.Tensor, keep: torch.Tensor, chosen: tuple[int, ...], names, per_class: int,
              seed: int) -> torch.Tensor:
    """K of each chosen class among `keep`, drawn by `seed` (a class's draw is its own: another class's count does not
    change it), in their split order."""
    picked = []
    for label in chosen:
        members = keep[labels[keep] == label].numpy()
        if len(members) < per_class:
            fewest = min(int((labels[keep] == c).sum()) for c in chosen)
            raise DatasetUnavailable(f"train_per_class={per_class}: class {names[label]!r} has only {len(members)} "
                                     f"training examples; choose at most {fewest} (the fewest of the chosen classes)")
        order = np.random.default_rng([seed, label]).permutation(len(members))
        picked.append(members[order[:per_class]])
    return torch.from_numpy(np.sort(np.concatenate(picked)))
