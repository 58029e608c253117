"""The run colours: a colour-blind-safe palette with strong contrast on white, and shades of one hue per setting.

Okabe and Ito's palette (distinguishable with the common colour-vision deficiencies) without its yellow, which
vanishes on a white projector screen, plus darker hues to reach ten. Every colour has a contrast of at least 2.2:1
against white (lines are thick enough for that; Tableau's pale yellow and pink measure 1.6:1 and 2.0:1).

Each run keeps one colour on every chart and every re-render (`run_colors`: a stable hash of its id picks the slot).
Runs that differ only by seed share their setting's hue and get shades of it (`seed_shaded_colors`), so two Adam
seeds read as one optimizer, not two unrelated lines.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the colours need no pandas
    import pandas as pd

PALETTE = (  # ordered so that the first hues, used first, are the most distinct
    "#0072b2",  # blue
    "#d55e00",  # vermilion
    "#009e73",  # bluish green
    "#7b3294",  # purple
    "#333333",  # near black
    "#e69f00",  # orange
    "#56b4e9",  # sky blue
    "#cc79a7",  # reddish purple
    "#8c564b",  # brown
    "#1b7837",  # dark green
)


def contrast_on_white(color: str) -> float:
    """WCAG contrast ratio of a #rrggbb colour against white (1 = invisible, 21 = black)."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(color[i:i + 2], 16)) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 1.05 / (luminance + 0.05)


def shade(color: str, index: int, count: int) -> str:
    """The index-th of `count` shades of `color`: from the colour itself to darker, never paler."""
    if count <= 1:
        return color
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    # from the colour itself down to a dark shade of it: never paler than the palette's own colour
    low, high = max(0.15, lightness * 0.45), lightness
    new = high - (high - low) * index / (count - 1)
    r, g, b = colorsys.hls_to_rgb(hue, new, saturation)
    return "#" + "".join(f"{round(v * 255):02x}" for v in (r, g, b))


def family_colors(run_ids: list[str], families: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """A colour per run where runs of one family (the same settings but for the seed) share one hue in shades.

    `families`: run_id -> family key (runs missing from it are their own family); `base`: a colour per family key
    (e.g. run_colors over the keys). Members are shaded in run-id order, so a re-render keeps each run's shade."""
    members: dict[str, list[str]] = {}
    for run_id in sorted(run_ids):
        members.setdefault(families.get(run_id, run_id), []).append(run_id)
    colors = {}
    for family, ids in members.items():
        for index, run_id in enumerate(ids):
            colors[run_id] = shade(base[family], index, len(ids))
    return colors


def run_colors(ids: Iterable[str]) -> dict[str, str]:
    """A hex colour per id, the same in every chart and on every re-render.

    Each id prefers the palette slot given by a stable hash of the id (not Python's salted
    hash()). Within one call, ids are placed in sorted order, so the result does not depend on the
    order of the list; an id whose slot is taken moves to the next free slot, so up to
    len(PALETTE) ids are always distinct (beyond that, colours repeat).
    """
    colors: dict[str, str] = {}
    taken: set[int] = set()
    pending = []
    for run_id in sorted(set(map(str, ids))):
        slot = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=4).digest(), "big") % len(PALETTE)
        if slot in taken:
            pending.append((run_id, slot))
        else:
            taken.add(slot)
            colors[run_id] = PALETTE[slot]
    for run_id, slot in pending:
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
            taken.add(slot)
        colors[run_id] = PALETTE[slot]
    return colors


_NOT_A_SETTING = ("cfg.seed", "cfg.name", "cfg.group")


def seed_shaded_colors(runs_df: pd.DataFrame, run_ids: list[str]) -> dict[str, str]:
    """run_colors, except that runs with the same config but for the seed share one hue in shades (a race's seeds)."""
    settings = [c for c in runs_df.columns if c.startswith("cfg.") and c not in _NOT_A_SETTING]
    if not settings or "cfg.seed" not in runs_df.columns:
        return run_colors(run_ids)
    families = {str(r): "|".join(map(str, values))
                for r, *values in zip(runs_df["run_id"], *(runs_df[c] for c in settings))}
    keys = sorted({families.get(r, r) for r in run_ids})
    if len(keys) == len(set(run_ids)):  # no seeds to shade: each run keeps its own stable colour
        return run_colors(run_ids)
    # families take the palette in order (its first hues are the most distinct), the same on every chart of a page
    return family_colors(run_ids, families, {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)})
