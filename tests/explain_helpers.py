"""A convnet trained in-process for a few seconds, for the explanation tests that need a model that has learned
something (attributions of random weights say nothing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.loading import normalize
from engine.models import build_model


def quick_convnet(split, steps: int, batch_size: int) -> torch.nn.Module:
    """The classic convnet trained on `split` for `steps` Adam steps of random batches (seeded); in eval mode."""
    x, y = normalize(split.train_x, split.mean, split.std), split.train_y
    torch.manual_seed(0)
    model = build_model("convnet", channels=split.info.channels, size=split.info.size,
                        num_classes=len(split.info.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net on a shared 2-core machine: one thread is faster than two fighting
    try:
        for _ in range(steps):
            index = torch.randint(0, len(x), (batch_size,), generator=generator)
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def trained_on(dataset: str, steps: int, batch_size: int, n_val: int, at_least: float):
    """(model, split, normalised first `n_val` validation images, a bool per image: predicted right) for a convnet
    trained on `dataset`; fails the fixture unless its accuracy on them exceeds `at_least`."""
    from engine.data.loading import load_dataset

    split = load_dataset(dataset, seed=0)
    model = quick_convnet(split, steps=steps, batch_size=batch_size)
    val_x = normalize(split.val_x[:n_val], split.mean, split.std)
    with torch.no_grad():
        correct = model(val_x).argmax(1) == split.val_y[:n_val]
    assert correct.float().mean() > at_least, "the fixture must be a model that learned something"
    return model, split, val_x, correct
