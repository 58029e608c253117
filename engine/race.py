"""Races: expand one base config into a grid of runs (optimizers x values of one field x seeds).

Every run of a race with the same seed sees identical data order and augmentation (the data stream
depends only on seed and epoch), so differences between curves come from what was varied.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from engine.config import RunConfig, parse_value
from engine.records import fit_name

# Learning rates that train the zoo's models well with each optimizer on the built-in datasets.
# A race with one shared lr is unfair to SGD (too small) or to Adam (too large), so races use these
# unless the user turns it off. Picked from a small sweep on mnist5k + convnet, 3 epochs, batch 32, seed 0
# (validation accuracy at the chosen lr: sgd .944, momentum .937, nesterov .952, adagrad .962, rmsprop .949,
# adam .954, adamw .954; each the best of 2-3 values around it).
RECOMMENDED_LR = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.03, "adagrad": 0.02, "rmsprop": 0.001,
                  "adam": 0.002, "adamw": 0.002}


def expand_race(base: RunConfig, *, optimizers: Sequence[str] = (), field: str | None = None,
                values: Sequence[Any] = (), seeds: int = 1, recommended_lr: bool = True,
                group: str = "") -> list[RunConfig]:
    """One config per (optimizer, value, seed); names say what differs; all share `group`."""
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: must be >= 1")
    if field is not None and field not in base.to_dict():
        raise ValueError(f"race field {field!r}: not a config field")
    if field in ("seed", "optimizer"):
        raise ValueError(f"race field {field!r}: use the seeds count / the optimizer list instead")
    if field is not None and not values:
        raise ValueError(f"race over {field}: give at least one value")
    opt_list = list(optimizers) or [base.optimizer]
    value_list = list(values) if field is not None else [None]
    configs = []
    for optimizer, value, offset in itertools.product(opt_list, value_list, range(seeds)):
        changes: dict[str, Any] = {"optimizer": optimizer, "seed": base.seed + offset, "group": group}
        if recommended_lr and len(opt_list) > 1 and field != "lr":
            changes["lr"] = RECOMMENDED_LR[optimizer]
        parts = [optimizer] if len(opt_list) > 1 or field is None else []
        if field is not None:
            changes[field] = value
            parts.append(f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}")
        if seeds > 1:
            parts.append(f"seed {base.seed + offset}")
        changes["name"] = fit_name(" ".join(parts) or base.display_name())
        configs.append(base.with_updates(**changes))
    return configs


def parse_values(field: str, text: str) -> list[Any]:
    """'0.1, 0.01' -> [0.1, 0.01] typed as the field; ValueError names the bad item."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return [parse_value(field, item) for item in items]
