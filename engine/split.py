"""The stratified train/validation split of the built-in datasets, without scikit-learn.

`stratified_split(labels, val_fraction, seed)` returns exactly the indices of scikit-learn's
`train_test_split(np.arange(n), test_size=val_fraction, stratify=labels, random_state=seed)` (its
StratifiedShuffleSplit and `_approximate_mode`, 1.x, followed step by step with the same RandomState draws), so every
run keeps the very images it validated on before. Why not call scikit-learn: importing it pulls in scipy.stats, about
2.5 s of CPU on this machine, and the split is the first thing the Train page (the page "/" opens) and a worker's
first run need. tests/test_split.py checks the equality against scikit-learn on many label sets.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["stratified_split"]


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `n_draws` each class gets: floors of the proportional share, the rest to the largest remainders
    (ties broken at random by `rng`, drawing exactly as scikit-learn does)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of a shuffled split keeping each label's share, `val_fraction` of the
    examples (rounded up) held out; a function of (labels, val_fraction, seed) only."""
    labels = np.asarray(labels)
    n_samples = len(labels)
    n_test = math.ceil(val_fraction * n_samples)
    n_train = n_samples - n_test
    classes, y_indices, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    if np.min(class_counts) < 2:
        raise ValueError(f"every class needs at least 2 examples for a stratified split; classes with fewer: "
                         f"{classes[class_counts < 2].tolist()}")
    if n_train < len(classes) or n_test < len(classes):
        raise ValueError(f"a split of {n_train} training and {n_test} validation examples cannot hold each of the "
                         f"{len(classes)} classes")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        shuffled = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)
