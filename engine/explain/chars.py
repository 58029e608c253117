"""Seeing inside a character model: a transformer's attention maps, and which earlier characters drove the
prediction of the next one.

- `attention_maps(model, vocab, text)`: the attention weights of every layer and head for the string (the boundary
  token first, as the model reads a name's start): [layers, heads, T, T], row = the position that attends, column =
  the position attended to. Causal: a position never attends to a later one (those weights are exactly 0).
- `context_attributions(model, ids, targets)`: for each context [N, T] (boundary first), how much each character
  pushed the model towards `targets` (the next character) at the last position: Captum's Integrated Gradients on
  the token embedding, from a baseline of the same characters shuffled (a context with the right letters in the
  wrong places), averaged over a few shuffles. The scores say where in the context the model reads: a trained
  model puts most of the weight on the last few characters; the bigram only ever on the last one.
- `next_char_probabilities(model, vocab, text)`: the distribution of the next character after a string.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from engine.chars.data import BOUNDARY_ID, BOUNDARY_LABEL, CharVocab
from engine.explain.methods import evaluating

MAX_TEXT = 64  # characters of a typed string shown as attention maps (a 64 x 64 map is still readable)


def _context_ids(model: nn.Module, vocab: CharVocab, text: str) -> tuple[torch.Tensor, list[str]]:
    ids = [BOUNDARY_ID] + vocab.encode(text[:MAX_TEXT])
    window = getattr(model, "window", None)
    if window is not None and len(ids) > window and hasattr(model, "positions"):
        ids = ids[-window:]  # a transformer reads at most block_size characters
    labels = [BOUNDARY_LABEL if i == BOUNDARY_ID else vocab.chars[i - 1] for i in ids]
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.int64, device=device), labels


@torch.no_grad()
def attention_maps(model: nn.Module, vocab: CharVocab, text: str) -> dict:
    """{"tokens": the characters read, "maps": float32 [layers, heads, T, T]} for a transformer; ValueError for
    any other model (they have no attention)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError("only a transformer has attention maps; this run's model reads characters another way")
    ids, labels = _context_ids(model, vocab, text)
    attentions = [block.attn for block in blocks]
    with evaluating(model):
        for attn in attentions:
            attn.keep_attention = True
        try:
            model(ids)
            maps = torch.stack([attn.attention[0] for attn in attentions])  # [layers, heads, T, T]
        finally:
            for attn in attentions:
                attn.keep_attention, attn.attention = False, None
    return {"tokens": labels, "maps": maps.float().cpu().numpy()}


@torch.no_grad()
def next_char_probabilities(model: nn.Module, vocab: CharVocab, text: str) -> dict:
    """{"tokens": the context read, "probabilities": [V] of the next character (boundary = the name ends)}."""
    ids, labels = _context_ids(model, vocab, text)
    with evaluating(model):
        probs = model(ids)[0, -1].float().softmax(-1).cpu().numpy()
    return {"tokens": labels, "probabilities": probs, "labels": list(vocab.tokens)}


class _LastPosition(nn.Module):
    """The logits of the last position only: what the next character after the context is."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)[:, -1]


def context_attributions(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor | int | None = None,
                         shuffles: int = 4, n_steps: int = 24, seed: int = 0) -> np.ndarray:
    """Integrated Gradients of the next character's logit over each context position, from shuffled contexts;
    float32 [N, T]. `targets`: the next characters (default: the model's prediction)."""
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    device = next(model.parameters()).device
    ids = ids.to(device)
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model), torch.enable_grad():
        head = _LastPosition(model)
        if targets is None:
            with torch.no_grad():
                targets = head(ids).argmax(-1)
        targets = torch.as_tensor(targets, device=device).expand(len(ids))
        explainer = LayerIntegratedGradients(head, model.embedding)
        total = torch.zeros(ids.shape, dtype=torch.float32, device=device)
        for _ in range(shuffles):
            order = torch.stack([torch.randperm(ids.shape[1], generator=generator) for _ in range(len(ids))]).to(device)
            baseline = ids.gather(1, order)
            attributions = explainer.attribute(ids, baselines=baseline, target=targets, n_steps=n_steps)
            total += attributions.sum(-1).float()
    return (total / shuffles).detach().cpu().numpy()


def recency_share(scores: np.ndarray, last: int = 3) -> float:
    """Mean share of the absolute attribution that falls on the last `last` positions of each context."""
    weights = np.abs(scores)
    totals = weights.sum(1)
    keep = totals > 0
    if not keep.any():
        return 0.0
    return float((weights[keep, -last:].sum(1) / totals[keep]).mean())
