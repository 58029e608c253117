"""From a run and an image to pictures: heatmaps, overlays and the PNG of `python -m engine explain`.

Rendering is numpy + Pillow + a matplotlib colormap (no pyplot): a map [C, H, W] becomes one value per pixel
(the signed channel total), scaled by its 98th percentile as Captum's visualiser does, and coloured by sign:
`all` on a diverging blue (against) / red (for) scale, `positive` in reds, `negative` in blues, `absolute`
in inferno. `load_subject` gathers what explaining a run's checkpoint needs: the model, the exact input
preparation of its dataset (training split mean/std) and the class names.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw
from torch import Tensor, nn

from engine.config import RunConfig
from engine.explain.methods import SIGNS, explain, get_method, predict
from engine.explain.images import InputSpec, decode_image, input_spec
from engine.explain.ood import OodReport
from engine.explain.reading import blank_note
from engine.records import epoch_label, epoch_number

_CMAPS = {"all": "RdBu_r", "positive": "Reds", "negative": "Blues", "absolute": "inferno"}


def pixel_map(attributions: Tensor) -> np.ndarray:
    """[C, H, W] or [1, C, H, W] -> float [H, W]: the signed total over a pixel's channels."""
    return attributions.detach().reshape(-1, *attributions.shape[-3:])[0].sum(0).cpu().numpy().astype(np.float64)


def scale_map(values: np.ndarray, sign: str, outlier_perc: float = 2.0) -> np.ndarray:
    """The part of the map `sign` selects, scaled to [0, 1] ([-1, 1] for "all") by its (100 - outlier_perc)th
    percentile, so a few extreme pixels do not wash out the rest."""
    if sign not in SIGNS:
        raise ValueError(f"sign={sign!r}: allowed values are {', '.join(SIGNS)}")
    selected = {"all": values, "positive": np.clip(values, 0, None), "negative": np.clip(-values, 0, None),
                "absolute": np.abs(values)}[sign]
    magnitude = np.abs(selected)
    top = np.percentile(magnitude[magnitude > 0], 100 - outlier_perc) if (magnitude > 0).any() else 1.0
    return np.clip(selected / max(top, 1e-12), -1.0, 1.0)


def heatmap(values: np.ndarray, sign: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a pixel map."""
    scaled = scale_map(values, sign)
    position = (scaled + 1) / 2 if sign == "all" else scaled  # where on the colormap each pixel falls
    return (colormaps[_CMAPS[sign]](position)[..., :3] * 255).round().astype(np.uint8)


def image_rgb(pixels: Tensor) -> np.ndarray:
    """A [C, H, W] image in [0, 1] (C = 1 or 3) as uint8 RGB [H, W, 3]."""
    rgb = pixels.detach().cpu().float().clamp(0, 1)
    rgb = rgb.expand(3, *rgb.shape[-2:]) if rgb.shape[0] == 1 else rgb
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def overlay(pixels: Tensor, values: np.ndarray, sign: str, alpha: float = 0.7) -> np.ndarray:
    """The map's colours over a dimmed greyscale copy of the image, opaque where the map is strong."""
    grey = image_rgb(pixels).astype(np.float64).mean(axis=2, keepdims=True)
    base = 0.35 * grey + 0.65 * 255 * 0.5  # dimmed so that colours stand out on black and white alike
    strength = alpha * np.abs(scale_map(values, sign))[..., None]
    mixed = (1 - strength) * base + strength * heatmap(values, sign).astype(np.float64)
    return mixed.round().clip(0, 255).astype(np.uint8)


def enlarge(rgb: np.ndarray, side: int = 224) -> np.ndarray:
    """Nearest-neighbour upscaling: each model pixel stays a crisp square."""
    h, w = rgb.shape[:2]
    scale = max(1, side // max(h, w))
    return np.asarray(Image.fromarray(rgb).resize((w * scale, h * scale), Image.Resampling.NEAREST))


def panels_png(panels: list[tuple[str, np.ndarray]], side: int = 224) -> bytes:
    """Images side by side, each enlarged to about `side` px with its caption underneath."""
    images = [Image.fromarray(enlarge(rgb, side)) for _, rgb in panels]
    width = sum(im.width for im in images) + 8 * (len(images) + 1)
    height = max(im.height for im in images) + 8 + 24
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = 8
    for (caption, _), im in zip(panels, images):
        sheet.paste(im, (x, 8))
        draw.text((x, 8 + im.height + 6), caption[:40], fill="black")
        x += im.width + 8
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------------


@dataclass
class Subject:
    """A run's checkpoint made ready to explain."""

    run_id: str
    model: nn.Module  # eval mode, on `device`
    config: RunConfig | None  # None for a pretrained ImageNet model
    spec: InputSpec  # how inputs are prepared (channels, size, framing, train mean/std)
    classes: tuple[str, ...]
    epoch: int  # the epoch the checkpoint closes (0-based); -1 before training, or for a pretrained model
    device: str


def run_device(config: RunConfig) -> str:
    """The device the run trains on here: CUDA when asked for or available ('auto'), else CPU."""
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def run_split(config: RunConfig):
    """The run's DatasetSplit exactly as training loaded it (the fixed data seed, whatever the run's seed), cached;
    never downloads: explaining must not start a download behind the page."""
    from engine.data.loading import cached_run_split

    return cached_run_split(config, download=False)


def load_subject(run_id: str, which: str | int = "best", device: str | None = None) -> Subject:
    """Model, input preparation and classes of a run's checkpoint ('best', 'last' or an epoch)."""
    from engine.checkpoints import load_run_model

    model, config, info, ckpt = load_run_model(run_id, which)
    device = device or run_device(config)
    if "mean" in ckpt.extra and "std" in ckpt.extra:  # recorded by the trainer: no need to load the data
        mean, std = ckpt.extra["mean"], ckpt.extra["std"]
    else:
        split = run_split(config)
        mean, std = split.mean, split.std
    spec = input_spec(info.name, info.channels, info.size, mean, std, info.light_background)
    return Subject(run_id, model.to(device).eval(), config, spec, tuple(info.classes), ckpt.epoch, device)


def default_params(method: str, spec: InputSpec) -> dict[str, Any]:
    """Parameters the app and CLI use: the normalised black as the baseline ("nothing drawn")."""
    return {"baseline": spec.black()} if "baseline" in get_method(method).defaults else {}


def familiarity_of(subject: Subject, prepared) -> OodReport | None:
    """The out-of-distribution report of a prepared image, calibrated on the run's validation split; None when
    the run's data is not on this machine (explaining never downloads)."""
    from engine.explain.ood import calibrate_on_split

    if subject.config is None:
        return None
    try:
        split = run_split(subject.config)
    except (OSError, RuntimeError, ValueError):
        return None
    detector = calibrate_on_split(subject.model, subject.spec, split)
    return detector.score(subject.model, prepared.inputs, prepared.pixels)


def explain_to_png(run_id: str, image_path: str | Path, method: str, target: int | None = None,
                   which: str | int = "best", out: str | Path = "explain.png", *, sign: str | None = None,
                   **params: Any) -> dict[str, Any]:
    """Explain an image file with a run's checkpoint and write [input | heatmap | overlay] as a PNG.

    Returns what a script wants to know: predicted class and confidence, the target, whether the image was
    inverted, the preparation notes, the seconds taken and the output path. ValueError (ImageDecodeError,
    NotApplicable, bad target) and FileNotFoundError carry one-line messages for the CLI.
    """
    return subject_to_png(load_subject(run_id, which), image_path, method, target, out, sign=sign, **params)


def subject_to_png(subject: Subject, image_path: str | Path, method: str, target: int | None = None,
                   out: str | Path = "explain.png", *, sign: str | None = None, **params: Any) -> dict[str, Any]:
    """`explain_to_png` for any Subject (a run's checkpoint, or your own model)."""
    spec_method = get_method(method)
    prepared = subject.spec.prepare(decode_image(Path(image_path).read_bytes()))
    probs = predict(subject.model, prepared.inputs)[0]
    predicted = int(probs.argmax())
    target = predicted if target is None else int(target)
    if not 0 <= target < len(subject.classes):
        raise ValueError(f"--target {target}: classes are 0..{len(subject.classes) - 1}")
    start = time.perf_counter()
    attributions = explain(subject.model, prepared.inputs, target, method,
                           **{**default_params(method, subject.spec), **params})
    seconds = time.perf_counter() - start
    sign = sign or spec_method.default_sign
    values = pixel_map(attributions)
    panels = [("input (as the model sees it)", image_rgb(prepared.pixels)),
              (f"{spec_method.title} ({sign})", heatmap(values, sign)),
              (f"target: {subject.classes[target]}", overlay(prepared.pixels, values, sign))]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(panels_png(panels))
    familiarity = familiarity_of(subject, prepared)
    # the epoch as users count it (after epoch N; 0 before training), what `explain --checkpoint N` takes
    epoch = epoch_number(subject.epoch) if subject.config is not None else None
    return {"run_id": subject.run_id, "epoch": epoch, "epoch_label": epoch_label(subject.epoch),
            "unfamiliar": familiarity.unfamiliar if familiarity else None,
            "warning": familiarity.message() if familiarity else "", "blank": blank_note(method, values) or "",
            "method": method, "predicted": predicted,
            "predicted_class": subject.classes[predicted], "confidence": float(probs[predicted]),
            "target": target, "target_class": subject.classes[target], "inverted": prepared.inverted,
            "notes": prepared.notes, "seconds": seconds, "out": str(out)}


def colour_bar(sign: str, width: int = 168, height: int = 10) -> np.ndarray:
    """uint8 RGB [height, width, 3]: the heatmap's colour scale under `sign`, weakest/most negative on the left."""
    values = np.linspace(-1.0 if sign == "all" else 0.0, 1.0, width)
    if sign == "negative":
        values = -values[::-1]  # strongest "against" on the right, like the other keys' strongest end
    row = heatmap(values[None, :], sign)
    return np.repeat(row, height, axis=0)
