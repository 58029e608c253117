"""Synthetic colour shapes: small images of circles, squares, triangles... with a ground-truth object mask.

The masks say exactly which pixels belong to the object, so the explain page can score an attribution map
(how much of it falls on the object rather than on the background). Everything is vectorised numpy over the
whole batch (one boolean test per class over [N, S, S] coordinate grids), so thousands of images take well
under a second, and a seed always gives the same images.
"""

from __future__ import annotations

import numpy as np

from engine.datasets import SHAPE_CLASSES

_RADIUS_RANGE = (0.18, 0.34)  # object radius as a fraction of the image side
_BACKGROUND_NOISE = 0.10  # std of per-pixel noise on the background
_OBJECT_NOISE = 0.03  # std of per-pixel noise on the object (faint, so the colour is what matters)
_MIN_COLOUR_GAP = 0.35  # every channel of the object differs from the background colour by at least this


def _object_masks(label: np.ndarray, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Inside-the-object test for every pixel. dx, dy [N, S, S] are pixel offsets from the object centre in the
    object's own (rotated) frame, radius [N, 1, 1]. Returns bool [N, S, S]."""
    masks = np.zeros(dx.shape, dtype=bool)
    for k, name in enumerate(SHAPE_CLASSES):
        sel = label == k
        if not sel.any():
            continue
        x, y, r = dx[sel], dy[sel], radius[sel]
        if name == "circle":
            inside = x * x + y * y <= r * r
        elif name == "square":
            # half-side 0.8 r, so a square covers about the same area as a circle of radius r
            inside = np.maximum(np.abs(x), np.abs(y)) <= 0.8 * r
        elif name == "triangle":
            # equilateral, apex at (0, -r), base at y = r/2 (centroid at the centre)
            inside = (y <= 0.5 * r) & (np.abs(x) * np.sqrt(3.0) <= y + r)
        elif name == "cross":
            arm = 0.3 * r
            inside = ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
        elif name == "ring":
            d2 = x * x + y * y
            inside = (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
        else:  # pragma: no cover - SHAPE_CLASSES and this table are edited together
            raise AssertionError(name)
        masks[sel] = inside
    return masks


def generate_shapes(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n images of random shapes. Returns (images float32 [N, 3, S, S] in [0, 1], labels int64 [N],
    masks bool [N, S, S]); labels are balanced (counts differ by at most one) and in random order."""
    if n < 0 or size < 8:
        raise ValueError(f"generate_shapes needs n >= 0 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)

    radius = rng.uniform(*_RADIUS_RANGE, size=n) * size
    # keep the whole object inside the image: the centre is at least one radius from each edge
    cx = radius + rng.uniform(0, 1, n) * (size - 1 - 2 * radius)
    cy = radius + rng.uniform(0, 1, n) * (size - 1 - 2 * radius)
    angle = rng.uniform(0, 2 * np.pi, n)

    background = rng.uniform(0, 1, (n, 3))
    # shift each channel by 0.35..0.65 around the colour circle: far from the background in every channel
    colour = (background + rng.uniform(_MIN_COLOUR_GAP, 1 - _MIN_COLOUR_GAP, (n, 3))) % 1.0

    grid = np.arange(size, dtype=np.float32)
    ox = grid[None, None, :] - cx[:, None, None].astype(np.float32)  # [N, 1, S]
    oy = grid[None, :, None] - cy[:, None, None].astype(np.float32)  # [N, S, 1]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    # rotate the pixel offsets into the object's frame
    dx = cos * ox + sin * oy
    dy = -sin * ox + cos * oy
    masks = _object_masks(labels, dx, dy, radius.astype(np.float32)[:, None, None])

    noise = rng.standard_normal((n, 3, size, size), dtype=np.float32)
    inside = masks[:, None]
    images = np.where(
        inside,
        colour.astype(np.float32)[:, :, None, None] + _OBJECT_NOISE * noise,
        background.astype(np.float32)[:, :, None, None] + _BACKGROUND_NOISE * noise,
    )
    np.clip(images, 0.0, 1.0, out=images)
    return images.astype(np.float32, copy=False), labels, masks
