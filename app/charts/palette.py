"""The run colours: a colour-blind-safe palette with strong contrast on white, and shades of one hue per setting.

Okabe and Ito's palette (distinguishable with the common colour-vision deficiencies) without its yellow, which
vanishes on a white projector screen, plus darker hues to reach ten. Every colour has a contrast of at least 2.2:1
against white (lines are thick enough for that; Tableau's pale yellow and pink measure 1.6:1 and 2.0:1).

Runs that differ only by seed share their setting's hue and get shades of it (`shade`), so two Adam seeds read as
one optimizer, not two unrelated lines.
"""

from __future__ import annotations

import colorsys

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
