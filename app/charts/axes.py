"""Axes a class reads from the back row: a few tick labels that never overlap, whole epochs, titles that fit.

Plotly's own log ticks label every decade (a diverged loss of 1e33 gives 34 labels stacked into a black smear) and
label 2 and 5 without their decade ("5, 2, 0.1, 5"); its linear ticks on an epoch axis fall on 1.5 and 2.5. Here a
log axis gets at most `MOST_TICKS` labels: 1-2-5 per decade where they fit, else 1-3, else the powers of ten,
else every second, fifth, tenth... decade; an epoch axis ticks whole epochs only; a long y-axis title wraps onto
more lines instead of running past the plot's height (Plotly cuts it at the figure's edge). Pure functions, no
plotly objects: the metric chart (`app/charts/metrics.py`) puts their values into its layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

MOST_TICKS = 6  # labels on a log y axis: 18 px type on a 300 px tall plot keeps them well apart
MOST_EPOCH_TICKS = 8  # labels on an epoch x axis: a half-width chart at 1024 px is about 350 px wide
TITLE_CHARACTERS = 28  # one line of a y-axis title at projector size (20 px) along a 300 px tall plot
_PAD = 0.05  # of the span, on each side of a range this module sets


def tick_text(value: float, plain: int = 4) -> str:
    """A tick label: plain digits while the power of ten is within ±`plain` (0.0001 to 99999: 0.002, 50, 20000), else
    a power of ten (10³⁴, 2×10⁻⁶) in Plotly's superscript markup, never "1e+34"."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)) + 1e-9)
    if -plain <= exponent <= plain:
        return f"{float(f'{value:.6g}'):g}"
    mantissa = float(f"{value / 10.0 ** exponent:.3g}")
    power = f"10<sup>{exponent}</sup>"
    return power if mantissa == 1 else f"{mantissa:g}×{power}"


def tick_texts(values: list[float]) -> list[str]:
    """The labels of one axis, written alike: when one of them needs a power of ten (10⁵), so does every one from
    10³ or below 10⁻² (1, 10, 100, 10³, 10⁴, 10⁵ rather than 1, 10, 100, 1000, 10000, 10⁵)."""
    texts = [tick_text(v) for v in values]
    return [tick_text(v, plain=2) for v in values] if any("<sup>" in t for t in texts) else texts


def padded_range(low: float, high: float, log: bool) -> list[float]:
    """[low, high] with a little room on each side, in Plotly's axis units (log10 of the values on a log axis)."""
    if log:
        low, high = math.log10(low), math.log10(high)
    span = high - low or (abs(high) or 1.0)
    return [low - _PAD * span, high + _PAD * span]


def _within(ticks: list[float], low: float, high: float) -> list[float]:
    return [float(f"{t:.6g}") for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]


def log_ticks(values: np.ndarray, most: int = MOST_TICKS) -> list[float]:
    """At most `most` tick values for a log axis showing `values` (or a visible range given as its two ends), at
    least two where the range allows: 1-2-5 per decade where they fit (0.1, 0.2, 0.5, 1), else 1-3 (0.1, 0.3, 1),
    else every k-th power of ten (k = 1, 2, 5, 10...); on a range narrower than 1-2-5, 1-2-3-5 or whole digits, and
    on one narrower still, evenly spaced round values. Empty when there is nothing positive to label."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return []
    low, high = float(values.min()), float(values.max())
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)

    def with_mantissas(*mantissas: float) -> list[float]:
        return _within([m * 10.0 ** d for d in decades for m in mantissas], low, high)

    ticks = with_mantissas(1, 2, 5)
    if 2 <= len(ticks) <= most:
        return ticks
    if len(ticks) > most:  # over two decades: 1-3 where it fits (0.1, 0.3, 1, 3), else every k-th power of ten
        if len(thirds := with_mantissas(1, 3)) <= most:
            return thirds
        exponents = [round(math.log10(p)) for p in with_mantissas(1)]
        for step in _nice_steps():
            kept = range(math.ceil(exponents[0] / step) * step, exponents[-1] + 1, step)
            if len(kept) <= most:
                return [float(f"{10.0 ** e:.6g}") for e in kept]
    for mantissas in ((1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):  # a range within one or two 1-2-5 steps
        ticks = with_mantissas(*mantissas)
        if len(ticks) >= 2:
            return ticks[:: math.ceil(len(ticks) / most)]
    return linear_ticks(low, high, most)


def linear_ticks(low: float, high: float, most: int = MOST_TICKS) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) from low to high, at most `most` of them."""
    if not high > low:
        return [float(f"{low:.6g}")]
    for step in (m * 10.0 ** e for e in range(math.floor(math.log10(high - low)) - 2, 300) for m in (1, 2, 5)):
        first = math.ceil(low / step - 1e-9)
        count = math.floor(high / step + 1e-9) - first + 1
        if count <= most:
            return [float(f"{(first + i) * step:.6g}") for i in range(count)]
    return [low, high]


def _nice_steps():
    yield from (1, 2, 5)
    power = 10
    while True:
        yield from (power, 2 * power, 5 * power)
        power *= 10


def whole_ticks(last: float, most: int = MOST_EPOCH_TICKS) -> dict:
    """Plotly axis settings that tick whole numbers only (epochs 1, 2, 3, never 1.5; layers 1, 2, 3), every 1, 2, 5,
    10... so that at most `most` labels show up to `last`."""
    span = max(1.0, float(last))
    step = next(k for k in _nice_steps() if span / k <= most)
    return dict(tickmode="linear", tick0=0, dtick=step, tickformat="d")


def readable_log_axis(values: Iterable[float]) -> dict:
    """Plotly settings for a log axis over `values`: their range (with a little room) and at most `MOST_TICKS`
    labels on it (log_ticks, tick_texts); {} when nothing is positive."""
    values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return {}
    ticks = log_ticks(values)
    return dict(range=padded_range(float(values.min()), float(values.max()), True), tickvals=ticks,
                ticktext=tick_texts(ticks))


def step_ticks(steps: Iterable[float], most: int = MOST_EPOCH_TICKS) -> dict:
    """Whole steps on a short step axis (Plotly ticks 0.5 and 1.5 while a run has logged a few steps); {} on a
    longer one, where Plotly's own ticks are whole numbers."""
    steps = np.asarray(list(steps) if not isinstance(steps, np.ndarray) else steps, dtype=np.float64)
    steps = steps[np.isfinite(steps)]
    return whole_ticks(float(steps.max()), most) if steps.size and steps.max() <= 10 else {}


def wrapped_title(text: str, width: int = TITLE_CHARACTERS) -> str:
    """`text` in lines of at most about `width` characters (joined by Plotly's <br>): broken after the " / " between
    metric names, and a name longer than a line between its words: before its parenthesis, else into halves of about
    equal length. Plotly draws a
    y-axis title in one line, cut where it passes the figure's edge."""
    if len(text) <= width:
        return text
    parts = text.split(" / ")
    units = [line for i, part in enumerate(parts)
             for line in _balanced(part + (" /" if i < len(parts) - 1 else ""), width)]
    lines = [units[0]]
    for unit in units[1:]:
        if len(lines[-1]) + 1 + len(unit) <= width:
            lines[-1] += " " + unit
        else:
            lines.append(unit)
    return "<br>".join(lines)


def _balanced(text: str, width: int) -> list[str]:
    words = text.split(" ")
    if len(text) <= width or len(words) == 1:
        return [text]
    def longer(i: int) -> int:
        return max(len(" ".join(words[:i])), len(" ".join(words[i:])))

    # before a parenthesis when both halves fit ("gradient norm" / "(L2, before clipping)"), else the most even cut
    cut = min(range(1, len(words)), key=lambda i: (not (words[i].startswith("(") and longer(i) <= width), longer(i)))
    return _balanced(" ".join(words[:cut]), width) + _balanced(" ".join(words[cut:]), width)
