"""A lesson's answer as a class reads it: the winner named in words before any number, every number formatted alike.

`answer` ranks the variants on the lesson's answer statistic (higher is better, lower for a loss), leads with one
sentence that names the best and the last ("Adam @ 0.002 reached the highest final validation accuracy, 0.901; SGD
@ 0.001 came last at 0.461."), says which runs diverged, and keeps every variant's number as a `Standing` for a
table. The numbers of one answer share their decimals (1.000 next to 0.442, never 1 next to 0.442), and so do the
two sides of a claim's comparison (`format_alike`). Torch-free and page-free: `engine/lessons.py` hands it plain
rows, the CLI prints it, the Lessons page shows it above the charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

METRIC_WORDS = {"val_acc": "validation accuracy", "val_loss": "validation loss", "train_loss": "training loss",
                "loss": "training loss", "ema_val_acc": "EMA validation accuracy",
                "swa_val_acc": "SWA validation accuracy",
                "ema_val_loss": "EMA validation loss", "swa_val_loss": "SWA validation loss",
                "train_acc": "training accuracy", "parameters": "parameters",
                "val_acc_hard": "accuracy on the hard reviews", "val_acc_easy": "accuracy on the easy reviews",
                "val_bpc": "bits per character", "val_new": "share of new samples",
                "val_distinct": "share of distinct samples", "val_real": "share of real held-out samples"}
STAT_WORDS = {"last": "final", "max": "best", "min": "lowest", "first": "first"}


def lower_is_better(metric: str) -> bool:
    """A loss is better low, and so are bits per character (a loss in other units); accuracies, F1, shares of new
    samples and the like are better high."""
    return "loss" in metric or metric.endswith("_bpc")


def format_alike(values: Sequence[float | None]) -> list[str]:
    """The values with the same number of decimals, chosen by the largest: 3 below 10 (0.442 and 1.000), 2 below 100,
    1 below 1,000, none above (with thousands separators: 44,426 parameters). A value that would show fewer than two
    digits in them (a learning rate of 2.68e-05 beside 0.001, a loss of 0.000825) keeps three significant digits of
    its own; a missing one reads "-"."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    biggest = max(finite, default=0.0)
    decimals = 3 if biggest < 10 else 2 if biggest < 100 else 1 if biggest < 1000 else 0
    if finite and all(float(v).is_integer() for v in finite) and biggest >= 100:
        decimals = 0
    texts = []
    for value in values:
        if value is None or not math.isfinite(value):
            texts.append("-" if value is None else f"{value}")
        elif value != 0 and abs(value) < 10.0 ** (1 - decimals):  # fewer than two digits would show
            texts.append(f"{value:.3g}")
        else:
            texts.append(f"{value:,.{decimals}f}")
    return texts


@dataclass(frozen=True)
class Standing:
    """One variant's place in the answer: its number (None when it has none: it diverged, failed, or is still
    waiting), that number formatted alike with the others or what happened instead, and the epoch it was read at."""

    label: str
    value: float | None
    text: str
    when: str = ""


@dataclass(frozen=True)
class Answer:
    sentence: str  # the winner first, in words
    standings: tuple[Standing, ...]  # best first; the variants without a number last, in the lesson's order


def answer(rows: Sequence[tuple[str, float | None, str, str]], metric: str, stat: str, seeds: int = 1) -> Answer:
    """The answer over `rows` (label, value or None, what happened instead of a value, when the value was read), in
    the lesson's variant order: ranked on `stat` of `metric`, best first."""
    lower = lower_is_better(metric)
    texts = format_alike([value for _, value, _, _ in rows])
    standings = [Standing(label, value, text if value is not None else instead, when)
                 for (label, value, instead, when), text in zip(rows, texts)]
    ranked = sorted((s for s in standings if s.value is not None), key=lambda s: s.value, reverse=not lower)
    others = [s for s in standings if s.value is None]
    words = f"{STAT_WORDS[stat]} {METRIC_WORDS.get(metric, metric)}" + (f" (mean of {seeds} seeds)" if seeds > 1
                                                                          else "")
    return Answer(_sentence(ranked, others, words, lower), tuple(ranked + others))


def _names(labels: Sequence[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _sentence(ranked: list[Standing], others: list[Standing], words: str, lower: bool) -> str:
    # the epoch once when the numbers quoted (the best and the last) were read at the same one, else with each number
    same_epoch = len({s.when for s in ranked if s.text in (ranked[0].text, ranked[-1].text)}) == 1

    def number(standing: Standing) -> str:
        return standing.text if same_epoch or not standing.when else f"{standing.text} ({standing.when})"

    lead = ""
    if ranked:
        best = [s for s in ranked if s.text == ranked[0].text]
        when = f" {ranked[0].when}" if same_epoch and ranked[0].when else ""
        extreme = "lowest" if lower else "highest"
        if len(ranked) == 1:
            lead = f"{ranked[0].label}: {words}{when}, {number(ranked[0])}."
        elif len(best) == len(ranked):
            lead = f"{_names([s.label for s in best])} tie on {words}{when}: {number(best[0])}."
        else:
            verb = "tie for" if len(best) > 1 else "reached"
            lead = (f"{_names([s.label for s in best])} {verb} the {extreme} {words}{when}, {number(best[0])}; "
                    f"{ranked[-1].label} came last at {number(ranked[-1])}.")
    sentences = [lead] + [f"{s.label} {s.text}." for s in others]
    # a sentence starts with a capital, even when a label does not ("right (lr 0.02)", "plain SGD")
    return " ".join(part[:1].upper() + part[1:] for part in sentences if part) or "No results yet."
