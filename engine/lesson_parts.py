"""The parts of a lesson file besides its runs: its charts (`[[chart]]`) and its claims (`[[claim]]`), and the
small readers of TOML values that engine.lessons's parser shares, each ValueError naming the wrong entry.
Torch-free and streamlit-free, like engine.lessons, which re-exports Chart, Claim and the vocabularies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

from engine.records import LAYER_STAT_SEPARATOR, RunStatus

STATS = ("last", "max", "min", "first")
OPS = (">", "<", ">=", "<=")
PSEUDO_METRICS = ("parameters", "steps")
X_AXES = ("step", "epoch", "examples", "wall_time")


@dataclass(frozen=True)
class Chart:
    """One chart of the lesson view: metric keys, x axis, smoothing, log y, and which variants it shows."""

    title: str
    keys: tuple[str, ...]
    x: str = "step"
    smoothing: float = 0.0
    log_y: bool = False
    only: tuple[str, ...] = ()  # variant labels shown; empty = all
    note: str = ""
    per_layer: str = ""  # a per-layer statistic (e.g. "grad_std"): one line per variant across the layers instead
    layers: str = ""  # with per_layer: a regular expression the layers shown must match (e.g. conv/linear weights)


@dataclass(frozen=True)
class Claim:
    """`left`'s statistic of `metric` compared with `right`'s (or `value`), or `left`'s status."""

    text: str
    left: str
    metric: str = ""
    stat: str = "last"
    op: str = ">"
    right: str = ""  # another variant (or the same one, comparing two metrics or statistics of it)
    right_metric: str = ""  # default: metric
    right_stat: str = ""  # default: stat
    value: float | None = None
    margin: float = 0.0
    status: str = ""


def table(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table")
    return value


def array(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{key} must be an array of tables ([[{key}]])")
    return value


def required_text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} is required (text)")
    return value.strip()


def choice(value: Any, allowed: Iterable[str], what: str) -> str:
    if value not in tuple(allowed):
        raise ValueError(f"{what}={value!r}: allowed values are {', '.join(allowed)}")
    return value


def labels_known(names: Iterable[str], labels: list[str], what: str) -> None:
    for name in names:
        if name not in labels:
            raise ValueError(f"{what} names variant {name!r}; the variants are {', '.join(labels)}")


def parse_chart(data: dict, labels: list[str]) -> Chart:
    per_layer = data.get("per_layer", "")
    if not isinstance(per_layer, str) or (per_layer and LAYER_STAT_SEPARATOR in per_layer):
        raise ValueError("chart.per_layer: give one per-layer statistic such as \"grad_std\"")
    keys = data.get("keys", [f"{per_layer}{LAYER_STAT_SEPARATOR}*"] if per_layer else None)
    if isinstance(keys, str):
        keys = [keys]
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError("chart.keys: give one metric key or a list of them")
    only = tuple(data.get("only", ()))
    labels_known(only, labels, "chart.only")
    smoothing = float(data.get("smoothing", 0.0))
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"chart.smoothing={smoothing}: must be in [0, 1)")
    return Chart(title=required_text(data, "title"), keys=tuple(keys), x=choice(data.get("x", "step"), X_AXES, "chart.x"),
                 smoothing=smoothing, log_y=bool(data.get("log_y", False)), only=only, note=str(data.get("note", "")),
                 per_layer=per_layer, layers=pattern(data.get("layers", "")))


def pattern(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError("chart.layers: give a regular expression as text")
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"chart.layers: {exc}") from None
    return text


def parse_claim(data: dict, labels: list[str]) -> Claim:
    claim = Claim(text=required_text(data, "text"), left=required_text(data, "left"), metric=str(data.get("metric", "")),
                  stat=choice(data.get("stat", "last"), STATS, "claim.stat"),
                  op=choice(data.get("op", ">"), OPS, "claim.op"), right=str(data.get("right", "")),
                  right_metric=str(data.get("right_metric", "")),
                  right_stat=choice(data.get("right_stat", data.get("stat", "last")), STATS, "claim.right_stat"),
                  value=float(data["value"]) if "value" in data else None, margin=float(data.get("margin", 0.0)),
                  status=str(data.get("status", "")))
    labels_known([claim.left] + ([claim.right] if claim.right else []), labels, "claim")
    if claim.status:
        choice(claim.status, [s.value for s in RunStatus], "claim.status")
    elif not claim.metric or (not claim.right and claim.value is None):
        raise ValueError(f"claim {claim.text!r}: give metric and right (a variant) or value, or a status")
    return claim
