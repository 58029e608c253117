"""What a network learned, measured on its features (the Run report's "What the network learned" section).

- `penultimate_features(model, x)`: the input of the model's head (`head_name`, engine.models) for every example:
  the codes the classifier reads, images and sentences alike.
- `first_layer_filters(model, channels, size)`: the first layer's weights as small images: a convolution's kernels,
  an MLP's first-layer weight rows reshaped to the input image (None for a model whose first layer reads tokens).
- `pca_2d(features)`: the features projected on their first two principal components (centred, by SVD).
- `tsne_2d(features)`: the same examples laid out by t-SNE (scikit-learn), which keeps neighbours together where
  PCA keeps the largest spreads: slower (seconds for the SAMPLE of the Run report), so the page runs it in the
  background.
- `knn_accuracy(features, labels, k)`: leave-one-out k-nearest-neighbour accuracy of the features (cosine
  similarity): how well the layout separates the classes, the number reported next to the plot, before training
  against after.
- `nearest(features, index, k)`: the k examples nearest to one, in a feature space or in pixel space.
- `feature_layout(model, x, y)`: all of it for one set of weights (FeatureLayout).

Pure functions of a model and tensors: loading a run's weights at a checkpoint is the caller's (the page uses
engine.checkpoints.load_run_model), so this module stays on the diagnostics floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KNN_K = 5  # neighbours that vote in knn_accuracy
MAX_FILTERS = 32  # first-layer filters shown: an MLP of 8192 units has as many rows
TSNE_STEPS = 500  # t-SNE iterations: 500 points settle well before the default 1000 (half the wait)


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """[N, D] float32: what the head receives for each example of x (the model in eval mode, its mode restored)."""
    head = model.get_submodule(model.head_name)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).float() if captured else torch.empty(0, 0)


@torch.no_grad()
def first_layer_filters(model: nn.Module, channels: int, size: int) -> np.ndarray | None:
    """[F, H, W] (one channel) or [F, H, W, 3] (colour) float arrays of the first weight layer, at most MAX_FILTERS;
    None when the first layer is neither a convolution on the image nor a linear layer on its pixels."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))), None)
    if isinstance(first, nn.Conv2d) and first.in_channels == channels:
        weights = first.weight[:MAX_FILTERS].float().cpu()  # [F, C, k, k]
    elif isinstance(first, nn.Linear) and first.in_features == channels * size * size:
        weights = first.weight[:MAX_FILTERS].float().cpu().reshape(-1, channels, size, size)
    else:
        return None
    array = weights.permute(0, 2, 3, 1).numpy()  # [F, H, W, C]
    return array[..., 0] if channels == 1 else array


def pca_2d(features: torch.Tensor) -> np.ndarray:
    """[N, 2]: the features on their first two principal components (fewer examples or dimensions: zeros pad)."""
    centred = features.double() - features.double().mean(0, keepdim=True)
    out = np.zeros((len(features), 2))
    if len(features) < 2:
        return out
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    coords = (centred @ v[:2].T).numpy()
    out[:, :coords.shape[1]] = coords
    return out


def tsne_2d(features: torch.Tensor | np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, 2]: t-SNE of the features (PCA initialisation, cosine distances as knn_accuracy reads them; perplexity 30,
    or less for a small sample), reproducible for a seed."""
    from sklearn.manifold import TSNE

    array = np.asarray(features, dtype=np.float64)
    if len(array) < 5:
        return np.zeros((len(array), 2))
    perplexity = min(30.0, (len(array) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed,
                max_iter=TSNE_STEPS).fit_transform(
        array)


def _similarity(features: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(features.double(), dim=1)
    return unit @ unit.T


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = KNN_K) -> float:
    """Leave-one-out k-NN accuracy (cosine similarity, majority vote, ties to the nearest's class): each example
    classified by its k nearest other examples."""
    n = len(features)
    if n < 2:
        return 0.0
    k = min(k, n - 1)
    similarity = _similarity(features)
    similarity.fill_diagonal_(-float("inf"))  # never its own neighbour
    nearest = similarity.topk(k, dim=1).indices  # [N, k], nearest first
    votes = labels[nearest]
    classes = int(labels.max()) + 1
    counts = F.one_hot(votes, classes).sum(1).double()
    counts[torch.arange(n), votes[:, 0]] += 0.5  # a tie goes to the nearest neighbour's class
    return float((counts.argmax(1) == labels).double().mean())


def nearest(features: torch.Tensor, index: int, k: int = 8) -> list[int]:
    """The k examples nearest to example `index` (cosine similarity), nearest first, itself excluded."""
    similarity = _similarity(features)[index]
    similarity[index] = -float("inf")
    return similarity.topk(min(k, len(features) - 1)).indices.tolist()


@dataclass
class FeatureLayout:
    """One set of weights' features of the validation examples shown: their 2-D layout, predictions and k-NN
    accuracy. `features` stays for the nearest-neighbour search."""

    features: torch.Tensor  # [N, D]
    coords: np.ndarray  # [N, 2] PCA
    predicted: np.ndarray  # [N] the model's own predictions
    knn: float


@torch.no_grad()
def feature_layout(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> FeatureLayout:
    """The layout of `x` (model-ready inputs: normalised images or token ids) by `model`'s penultimate features."""
    features = penultimate_features(model, x)
    was_training = model.training
    model.eval()
    try:
        head = model.get_submodule(model.head_name)
        predicted = head(features).argmax(1).numpy()  # the head on the captured codes: one forward pass in all
    finally:
        model.train(was_training)
    return FeatureLayout(features, pca_2d(features), predicted, knn_accuracy(features, y))
