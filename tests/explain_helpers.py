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
