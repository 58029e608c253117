"""Writing with a character model: `sample` draws strings one character at a time, each from the model's softmax
over the next character divided by the temperature, until the boundary token (a name's end) or `max_chars`.

Low temperature sharpens the distribution (the likeliest names, again and again), high flattens it (towards
random letters). The random numbers come from a generator seeded by the caller, never the global one: recording
samples during training must not change the run's own random stream (its batches, its dropout, a resume).
`score_samples` says how many samples are new (not a training document) and how many are real (a held-out one).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.chars.data import BOUNDARY_ID, CharExtras, CharVocab

MAX_TEMPERATURE = 10.0  # beyond it every character is about equally likely: nothing left to see
SAMPLE_COUNT = 20  # samples recorded at every evaluation
SAMPLE_SEED = 1234  # the same random stream at every evaluation: what changes between them is the model


def check_temperature(temperature: float) -> float:
    """`temperature` as a float; ValueError with one line when it is not in (0, MAX_TEMPERATURE]."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature={temperature!r}: give a number such as 0.8") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature={value:g}: must be above 0 (0.2 is nearly greedy, 1 samples the model "
                         "as it is)")
    if value > MAX_TEMPERATURE:
        raise ValueError(f"temperature={value:g}: at most {MAX_TEMPERATURE:g} (above it every character is about "
                         "equally likely)")
    return value


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, n: int = SAMPLE_COUNT, *, temperature: float = 1.0, prefix: str = "",
           max_chars: int = 30, seed: int = SAMPLE_SEED) -> list[str]:
    """`n` strings written by `model`, each starting with `prefix` (ValueError for characters outside the
    vocabulary or a bad temperature)."""
    temperature = check_temperature(temperature)
    if not 1 <= n <= 1000:
        raise ValueError(f"n={n}: give 1 to 1000 samples")
    prefix_ids = vocab.encode(prefix)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[BOUNDARY_ID] + prefix_ids] * n, dtype=torch.int64, device=device)
    ended = torch.zeros(n, dtype=torch.bool, device=device)
    window = getattr(model, "window", None)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max(0, max_chars - len(prefix))):
            context = ids if window is None else ids[:, -window:]
            logits = model(context)[:, -1].float() / temperature
            probs = logits.softmax(-1).cpu()  # drawn on the CPU: the same samples on any device
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)
            nxt[ended] = BOUNDARY_ID
            ids = torch.cat([ids, nxt], 1)
            ended |= nxt[:, 0] == BOUNDARY_ID
            if bool(ended.all()):
                break
    finally:
        model.train(was_training)
    out = []
    for row in ids[:, 1:].tolist():
        end = row.index(BOUNDARY_ID) if BOUNDARY_ID in row else len(row)
        out.append(vocab.decode(row[:end]))
    return out


def score_samples(samples: list[str], extras: CharExtras) -> dict[str, float]:
    """{"distinct": share of samples that are different non-empty strings (low: the model repeats itself), "new":
    share that are not empty and not a training document, "real": share that are a held-out document (a real name
    the model never saw)}; new and real only where the corpus has documents to compare with."""
    if not samples:
        return {}
    scores = {"distinct": len({s for s in samples if s}) / len(samples)}
    if extras.train_docs:
        new = sum(1 for s in samples if s and s not in extras.train_docs)
        real = sum(1 for s in samples if s in extras.val_docs and s not in extras.train_docs)
        scores.update({"new": new / len(samples), "real": real / len(samples)})
    return scores


def record(model: nn.Module, extras: CharExtras, step: int, epoch: int, temperature: float = 1.0) -> dict:
    """The samples recorded at an evaluation (artifact `samples/{step}`), with their scores."""
    samples = sample(model, extras.vocab, SAMPLE_COUNT, temperature=temperature, max_chars=extras.max_chars)
    return {"step": int(step), "epoch": int(epoch), "temperature": float(temperature), "seed": SAMPLE_SEED,
            "samples": samples, **score_samples(samples, extras)}
