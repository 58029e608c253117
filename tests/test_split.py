"""The stratified split without scikit-learn (engine/split.py) returns exactly scikit-learn's split, so every
run validates on the same images as before, and loading a built-in dataset no longer imports scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from engine.split import stratified_split


def sklearn_split(labels, val_fraction, seed):
    return train_test_split(np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed)


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.25, 0.33, 0.5, 0.9])
def test_same_indices_as_scikit_learn(seed, val_fraction):
    rng = np.random.default_rng(seed)
    # unequal classes, so the proportional shares have remainders and ties broken at random
    labels = rng.choice(10, size=997, p=np.array([5, 9, 1, 3, 3, 7, 2, 2, 4, 6]) / 42)
    train, val = stratified_split(labels, val_fraction, seed)
    want_train, want_val = sklearn_split(labels, val_fraction, seed)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(val, want_val)


@pytest.mark.parametrize("labels", [np.array([0, 1] * 5), np.array(["b", "a", "c", "a", "b", "c", "c", "a", "b"]),
                                    np.repeat([3, 1, 2], [2, 5, 40])])
def test_same_indices_on_small_and_text_labels(labels):
    for seed in range(5):
        for got, want in zip(stratified_split(labels, 0.34, seed), sklearn_split(labels, 0.34, seed)):
            np.testing.assert_array_equal(got, want)


def test_mnist5k_split_unchanged():
    from engine.data.loading import _mnist5k_arrays
    from engine.datasets import DATA_SEED

    _, labels = _mnist5k_arrays()
    for got, want in zip(stratified_split(labels, 0.2, DATA_SEED), sklearn_split(labels, 0.2, DATA_SEED)):
        np.testing.assert_array_equal(got, want)


def test_a_class_of_one_example_is_refused_in_a_sentence():
    with pytest.raises(ValueError, match="at least 2 examples"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, 0)


@pytest.mark.slow
def test_loading_the_default_dataset_imports_no_scikit_learn():
    code = ("import sys; from engine.config import RunConfig; from engine.data.loading import load_run_split; "
            "load_run_split(RunConfig()); print('sklearn' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]
