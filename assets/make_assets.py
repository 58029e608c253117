"""Draw the sample images of the Explain page's upload demo: digits and shapes, made here with Pillow.

Run `python assets/make_assets.py` to (re)write the PNGs next to this file; the output is deterministic.
The digits come in both styles a user may upload: white strokes on black (like MNIST) and dark pen on light
paper, which the page inverts before the model sees it. The shapes mimic the `shapes` dataset: one coloured
object on a noisy background of another colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent

# strokes in unit coordinates (x right, y down), each a polyline drawn with round joints
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5 + 0.2 * np.cos(t), 0.5 + 0.3 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
    1: [[(0.42, 0.3), (0.52, 0.2), (0.52, 0.8)]],
    2: [[(0.3, 0.35), (0.36, 0.24), (0.5, 0.18), (0.63, 0.23), (0.68, 0.34), (0.62, 0.48), (0.3, 0.8), (0.72, 0.8)]],
    3: [[(0.32, 0.24), (0.45, 0.18), (0.6, 0.2), (0.67, 0.3), (0.6, 0.43), (0.46, 0.48), (0.63, 0.53), (0.7, 0.65),
         (0.62, 0.78), (0.46, 0.82), (0.3, 0.76)]],
    4: [[(0.6, 0.82), (0.6, 0.18), (0.28, 0.6), (0.76, 0.6)]],
    7: [[(0.28, 0.22), (0.72, 0.22), (0.46, 0.82)]],
}

# (file name, digit, side in px, dark pen on light paper?)
DIGITS = [("digit_0_light_paper.png", 0, 280, True), ("digit_1.png", 1, 140, False),
          ("digit_2_light_paper.png", 2, 300, True), ("digit_3.png", 3, 112, False),
          ("digit_4_light_paper.png", 4, 200, True), ("digit_7.png", 7, 168, False)]

# (file name, shape, object colour, background colour)
SHAPES = [("shape_circle.png", "circle", (230, 60, 40), (40, 90, 200)),
          ("shape_square.png", "square", (250, 220, 40), (90, 40, 140)),
          ("shape_triangle.png", "triangle", (40, 200, 90), (200, 60, 150)),
          ("shape_cross.png", "cross", (30, 40, 160), (240, 170, 60)),
          ("shape_ring.png", "ring", (240, 240, 240), (30, 120, 60))]


def draw_digit(digit: int, side: int, light_paper: bool) -> Image.Image:
    ink, paper = (25, 255) if light_paper else (255, 0)
    image = Image.new("L", (side, side), paper)
    draw = ImageDraw.Draw(image)
    width = max(2, side // 11)
    for stroke in DIGIT_STROKES[digit]:
        points = [(x * side, y * side) for x, y in stroke]
        draw.line(points, fill=ink, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)
    return image


def draw_shape(shape: str, colour: tuple[int, int, int], background: tuple[int, int, int], side: int = 128,
               seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 20, (side, side, 3))
    canvas = np.clip(np.array(background, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    c, r = side / 2, side * 0.3
    if shape == "circle":
        draw.ellipse((c - r, c - r, c + r, c + r), fill=colour)
    elif shape == "square":
        s = 0.8 * r
        draw.rectangle((c - s, c - s, c + s, c + s), fill=colour)
    elif shape == "triangle":
        half_base = r * np.sqrt(3) / 2
        draw.polygon([(c, c - r), (c - half_base, c + r / 2), (c + half_base, c + r / 2)], fill=colour)
    elif shape == "cross":
        arm = 0.3 * r
        draw.rectangle((c - arm, c - r, c + arm, c + r), fill=colour)
        draw.rectangle((c - r, c - arm, c + r, c + arm), fill=colour)
    elif shape == "ring":
        draw.ellipse((c - r, c - r, c + r, c + r), fill=colour)
        inner = 0.55 * r
        draw.ellipse((c - inner, c - inner, c + inner, c + inner), fill=background)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image


def draw_icon(side: int = 64) -> Image.Image:
    """The page icon: a falling loss curve over two axes, in the theme's blue. Served with the app, so the
    dashboard never fetches an icon from a font host (it must work offline)."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 6, fill=(255, 255, 255, 255),
                           outline=(59, 111, 212, 255), width=max(2, side // 20))
    pad = side // 6
    draw.line([(pad, pad), (pad, side - pad), (side - pad, side - pad)], fill=(60, 60, 60, 255), width=max(2, side // 24))
    curve = [(pad + (side - 2 * pad) * t, pad + (side - 2 * pad) * (1 - 0.85 * (1 - np.exp(-4 * t)))) for t in
             np.linspace(0.02, 1, 24)]
    curve = [(x, side - y) for x, y in curve]
    draw.line(curve, fill=(59, 111, 212, 255), width=max(3, side // 12), joint="curve")
    return image


def main() -> list[Path]:
    written = [HERE / "icon.png"]
    draw_icon().save(written[0], optimize=True)
    for name, digit, side, light in DIGITS:
        draw_digit(digit, side, light).save(HERE / name, optimize=True)
        written.append(HERE / name)
    for i, (name, shape, colour, background) in enumerate(SHAPES):
        draw_shape(shape, colour, background, seed=i).save(HERE / name, optimize=True)
        written.append(HERE / name)
    return written


if __name__ == "__main__":
    for path in main():
        print(path.relative_to(HERE.parent))
