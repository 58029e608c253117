"""`metrics RUN_ID`'s summary: one line per metric key, in a table a terminal can read."""

from __future__ import annotations

import math

from engine.records import EPOCH_KEYS, LAYER_STAT_SEPARATOR, STEP_KEYS, is_epoch_level

SUMMARY_HEADER = ("key", "rows", "first step", "last step", "last value", "min", "max")


def metrics_summary(frame, every_layer: bool = False) -> list[str]:
    """The lines of a table with one row per metric key (SUMMARY_HEADER) of a non-empty get_metrics frame.

    The step keys come first in their logging order, then the epoch keys, their EMA/SWA twins, any other key,
    and the per-layer statistics, which are folded into one line per statistic (`grad_std/*`) unless
    `every_layer`: a convnet logs dozens of them, and a summary must stay readable in a terminal."""
    aggregated = frame.groupby("key", sort=False).agg(rows=("value", "size"), first=("step", "min"),
                                                      last=("step", "max"), low=("value", "min"),
                                                      high=("value", "max"))
    stats = {row.Index: (int(row.rows), int(row.first), int(row.last), float(row.low), float(row.high))
             for row in aggregated.itertuples()}
    # the value of each key's last row (groupby.last would skip a final NaN: a diverged loss must show as nan)
    last_value = dict(zip(frame["key"], frame["value"]))
    lines: dict[str, tuple] = {}
    folded: dict[str, list[str]] = {}
    for key in stats:
        statistic, separator, _ = key.partition(LAYER_STAT_SEPARATOR)
        if separator and not every_layer:
            folded.setdefault(statistic, []).append(key)
        else:
            lines[key] = (*stats[key][:3], last_value[key], *stats[key][3:])
    for statistic, keys in folded.items():
        parts = [stats[k] for k in keys]
        label = f"{statistic}{LAYER_STAT_SEPARATOR}* ({len(keys)} layers)"
        lines[label] = (sum(p[0] for p in parts), min(p[1] for p in parts), max(p[2] for p in parts), None,
                        _nanmin(p[3] for p in parts), _nanmax(p[4] for p in parts))
    ordered = sorted(lines.items(), key=lambda item: _key_rank(item[0]))
    cells = [(key, str(count), str(first), str(last), _number(value), _number(low), _number(high))
             for key, (count, first, last, value, low, high) in ordered]
    return _table(SUMMARY_HEADER, cells)


def _key_rank(key: str) -> tuple:
    if key in STEP_KEYS:
        return (0, STEP_KEYS.index(key), key)
    if key in EPOCH_KEYS:
        return (1, 0, key)
    if is_epoch_level(key):  # ema_/swa_ twins of the validation keys
        return (2, 0, key)
    return (4 if LAYER_STAT_SEPARATOR in key else 3, 0, key)


def _nanmin(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if finite else math.nan


def _nanmax(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Columns two spaces apart: the first left-aligned, numbers right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return [line(header)] + [line(row) for row in rows]
