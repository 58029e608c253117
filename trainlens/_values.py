"""What a script may log, and the one warning it gets for what it may not: metric keys and values made fit for the
store without losing anything a chart needs.

A value must be a number: a Python or NumPy number, a bool, a one-element tensor or array (anything `float()`
reads that is not text). Anything else is skipped with one warning naming the key. NaN and infinities are numbers:
they are kept (the run's charts stop at the last finite point, and a loss that became NaN marks the run diverged
when it finishes). A key longer than KEY_MAX characters is cut, with one warning; a key that is not text is written
as its text.
"""

from __future__ import annotations

import math
import warnings

KEY_MAX = 200  # characters of a metric key: a chart title and a legend stay readable; TensorBoard tags fit


class TrainLensWarning(UserWarning):
    """Something a script logged was skipped or changed (each said once per key or method)."""


def warn(message: str, stacklevel: int = 4) -> None:
    """One TrainLensWarning, shown at the script's line (`stacklevel` counts the client's frames above it)."""
    warnings.warn(message, TrainLensWarning, stacklevel=stacklevel)


class Cleaner:
    """One run's memory of the keys it has seen, so a warning is given once per key, and a capped key is always
    cut the same way. The fast path (a known key, a float or int value) is a dict lookup; see Run.log."""

    def __init__(self) -> None:
        # the key as logged -> (as stored, whether TrainLens logs it once per epoch: it closes an epoch, see Run.log)
        self.keys: dict[object, tuple[str, bool]] = {}
        self.skipped: set[str] = set()  # keys whose non-numeric values were warned about

    def key(self, key: object) -> tuple[str, bool]:
        known = self.keys.get(key)
        if known is not None:
            return known
        text = key if isinstance(key, str) else str(key)
        text = " ".join(text.split()) or "(empty key)"  # one line: a key with a line break cannot be a chart title
        if len(text) > KEY_MAX:
            warn(f"trainlens: metric key {text[:40]!r}... is {len(text):,} characters long; stored cut to "
                 f"{KEY_MAX} characters")
            text = text[:KEY_MAX - 1] + "…"
        from engine.records import is_epoch_level

        self.keys[key] = known = (text, is_epoch_level(text))
        return known

    def number(self, key: str, value: object) -> float | None:
        """`value` as a float, or None (skipped, with one warning per key) when it is not a number."""
        if isinstance(value, (str, bytes, bytearray)):
            problem = f"is text ({str(value)[:30]!r})"
        else:
            try:
                return float(value)  # type: ignore[arg-type]  # numpy scalars, bools, one-element tensors
            except (TypeError, ValueError, RuntimeError) as exc:  # a tensor of several elements: RuntimeError
                problem = f"is a {type(value).__name__}, not a number ({' '.join(str(exc).split())[:80]})"
        if key not in self.skipped:
            self.skipped.add(key)
            warn(f"trainlens: {key!r} {problem}: skipped (this warning is given once per key; log numbers, or "
                 "text with add_text)")
        return None


def non_finite(value: float) -> bool:
    return not math.isfinite(value)


def is_loss(key: str) -> bool:
    """A key that names a loss ('loss', 'train_loss', 'Loss/train'): a NaN or infinite one means divergence."""
    return "loss" in key.lower()
