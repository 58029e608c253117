"""The run colours: a palette whose colours stay clearly apart on one chart, with strong contrast on white, and
shades of one hue for the seeds of one arm.

How far apart two colours look is measured with CIEDE2000 (`color_distance`, implemented here from Sharma, Wu and
Dalal's notes, 2005, and checked against their published test pairs in tests/test_palette.py). A class could not
tell Okabe and Ito's blue from their sky blue (22 apart), nor a dark green from a bluish one (16): the first
`DISTINCT` colours of the palette are at least `MIN_DISTANCE` apart from one another (the closest pair measures 27),
so a chart of up to seven arms never puts two look-alikes side by side; the eighth to tenth colours, for larger
views, are at least 20 from every other. The palette keeps Okabe and Ito's colour-blind-safe hues where they are far
enough apart, without their yellow (it vanishes on a white projector screen) and without pale colours: every colour
has a contrast of at least 2.2:1 against white (lines are thick enough for that; Tableau's pale yellow and pink
measure 1.6:1 and 2.0:1).

Which run gets which colour is decided per view, by arm (`app/charts/arms.py`): arms take the palette in order,
its first colours the most distinct; runs of one arm (seeds) get shades of its colour (`family_colors`).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable

PALETTE = (  # ordered so that the first colours, used first, are the most distinct (see tests/test_palette.py)
    "#0072b2",  # blue (Okabe-Ito)
    "#e69f00",  # orange (Okabe-Ito)
    "#009e73",  # bluish green (Okabe-Ito)
    "#222222",  # near black
    "#cc79a7",  # reddish purple (Okabe-Ito)
    "#cc3311",  # red (Tol's vibrant)
    "#332288",  # indigo (Tol's muted)
    "#882255",  # wine (Tol's muted)
    "#56b4e9",  # sky blue (Okabe-Ito)
    "#999933",  # olive (Tol's muted)
)
DISTINCT = 7  # the first DISTINCT colours are pairwise at least MIN_DISTANCE apart
MIN_DISTANCE = 25.0  # CIEDE2000: two lines of one chart closer than this read as one colour from the back row


def contrast_on_white(color: str) -> float:
    """WCAG contrast ratio of a #rrggbb colour against white (1 = invisible, 21 = black)."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(color[i:i + 2], 16)) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 1.05 / (luminance + 0.05)


# ---- perceptual distance ----------------------------------------------------------------------------------------
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def srgb_to_lab(color: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65 white) of a #rrggbb sRGB colour."""
    def linear(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(color[i:i + 2], 16)) for i in (1, 3, 5))
    xyz = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b,
           0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
           0.0193339 * r + 0.1191920 * g + 0.9503041 * b)

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = (f(v / white) for v, white in zip(xyz, _WHITE_D65))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def ciede2000(lab1: Iterable[float], lab2: Iterable[float]) -> float:
    """The CIEDE2000 colour difference of two L*a*b* colours (kL = kC = kH = 1), as Sharma, Wu and Dalal (2005)
    spell it out: their notes settle the hue-angle cases (a zero chroma, mean hues across 0°) that are easy to get
    wrong."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    mean_chroma = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(mean_chroma ** 7 / (mean_chroma ** 7 + 25.0 ** 7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1 = math.degrees(math.atan2(b1, a1)) % 360 if c1 else 0.0
    h2 = math.degrees(math.atan2(b2, a2)) % 360 if c2 else 0.0
    delta_l, delta_c = l2 - l1, c2 - c1
    if c1 * c2 == 0:
        delta_h = 0.0
    else:
        delta_h = h2 - h1
        if delta_h > 180:
            delta_h -= 360
        elif delta_h < -180:
            delta_h += 360
    delta_big_h = 2 * math.sqrt(c1 * c2) * math.sin(math.radians(delta_h) / 2)
    mean_l, mean_c = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        mean_h = h1 + h2
    elif abs(h1 - h2) <= 180:
        mean_h = (h1 + h2) / 2
    else:
        mean_h = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(mean_h - 30)) + 0.24 * math.cos(math.radians(2 * mean_h))
         + 0.32 * math.cos(math.radians(3 * mean_h + 6)) - 0.20 * math.cos(math.radians(4 * mean_h - 63)))
    rotation = 30 * math.exp(-(((mean_h - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(mean_c ** 7 / (mean_c ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (mean_l - 50) ** 2 / math.sqrt(20 + (mean_l - 50) ** 2)
    s_c = 1 + 0.045 * mean_c
    s_h = 1 + 0.015 * mean_c * t
    r_t = -math.sin(math.radians(2 * rotation)) * r_c
    return math.sqrt((delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_big_h / s_h) ** 2
                     + r_t * (delta_c / s_c) * (delta_big_h / s_h))


def color_distance(first: str, second: str) -> float:
    """How different two #rrggbb colours look: CIEDE2000 over their L*a*b* values (about 1 = just noticeable)."""
    return ciede2000(srgb_to_lab(first), srgb_to_lab(second))


# ---- colours for arms and their seeds ---------------------------------------------------------------------------
def arm_colors(arms: Iterable[str]) -> dict[str, str]:
    """A colour per arm: the arms, in the view's order, take the palette in order (beyond its ten colours, again
    from the first)."""
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(dict.fromkeys(arms))}


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
    """A colour per run where runs of one family (one arm: the same settings but for the seed) share one hue in
    shades.

    `families`: run_id -> family key (runs missing from it are their own family); `base`: a colour per family key
    (e.g. arm_colors over the keys). Members are shaded in run-id order, so a re-render keeps each run's shade."""
    members: dict[str, list[str]] = {}
    for run_id in sorted(run_ids):
        members.setdefault(families.get(run_id, run_id), []).append(run_id)
    colors = {}
    for family, ids in members.items():
        for index, run_id in enumerate(ids):
            colors[run_id] = shade(base[family], index, len(ids))
    return colors
