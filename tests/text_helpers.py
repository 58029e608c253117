"""A bare training loop for the text tests: the few epochs of Adam that make a small text model learn the sentiment
grammar, in-process, with the batch order seeded per epoch so results repeat exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit(model: torch.nn.Module, split, epochs: int, lr: float = 1e-2, batch_size: int = 64) -> torch.nn.Module:
    """Train `model` on `split`'s training reviews; returns it in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        order = torch.randperm(len(split.train_y), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(split.train_x[index]), split.train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
