"""Uploaded images in, model inputs out: safe decoding with Pillow and dataset-faithful preparation.

`decode_image(data)` turns the bytes of an uploaded file (PNG, JPEG, BMP, GIF - first frame -, WebP, TIFF;
greyscale, RGB, RGBA, palette, CMYK, 16-bit) into RGB floats, or raises `ImageDecodeError` with a sentence a
user can act on (not an image, truncated, empty, decompression bomb, absurd dimensions). Bytes stay in memory:
nothing is written to disk, so an upload's name never reaches the file system.

`InputSpec.prepare(decoded)` then builds exactly what the model was trained on: the dataset's channels and
size, its framing (MNIST digits are scaled into a 20x20 box and centred by their centre of mass in 28x28),
the inversion of light-background images for white-on-black datasets (reported to the user), and the
training split's mean/std normalisation.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024  # larger uploads are refused before Pillow sees them
MAX_PIXELS = 40_000_000  # well under Pillow's own 89 MP warning: a 100 MP PNG can be a 94 KiB file
MAX_SIDE = 10_000  # px; a longer side is an absurd upload, not a photo
MIN_SIDE = 4  # px; nothing smaller can be classified
MAX_ASPECT = 50  # longest / shortest side
WORK_SIDE = 1024  # big images are reduced to this before the float conversion (models take <= 224 px)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")


class ImageDecodeError(ValueError):
    """The upload cannot be used as an image; the message says why in plain words."""


@dataclass
class DecodedImage:
    """An uploaded image as RGB floats, with what was done to get there."""

    rgb: np.ndarray  # float32 [H, W, 3] in [0, 1]; transparency already composited
    grey: bool  # the file had no colour information (modes 1, L, LA, I, I;16, F)
    format: str  # Pillow's format name, e.g. "PNG"
    mode: str  # Pillow's original mode, e.g. "RGBA", "P", "CMYK", "I;16"
    width: int  # original size, before any reduction
    height: int
    frames: int = 1  # frames in the file; only the first is used
    notes: list[str] = field(default_factory=list)  # one sentence per conversion, shown to the user


def decode_image(data: bytes) -> DecodedImage:
    """Decode uploaded bytes; ImageDecodeError for anything that is not a usable image."""
    if not data:
        raise ImageDecodeError("The file is empty (0 bytes).")
    if len(data) > MAX_BYTES:
        raise ImageDecodeError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    with warnings.catch_warnings():
        # Pillow only warns between 89 and 179 MP; make its warning an error like its own bomb error
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageDecodeError(f"The image is larger than {MAX_PIXELS / 1e6:.0f} megapixels "
                                   "(refused as a possible decompression bomb).") from None
        except UnidentifiedImageError:
            raise ImageDecodeError("This file is not an image that can be read; upload a PNG, JPEG, BMP, GIF, "
                                   "WebP or TIFF file.") from None
        except Exception as exc:  # Pillow plugins raise assorted errors on malformed headers
            raise ImageDecodeError(f"The image header is damaged ({exc}).") from None
        _check_dimensions(image.width, image.height)
        if image.format not in FORMATS:
            raise ImageDecodeError(f"{image.format} images are not supported; upload a PNG, JPEG, BMP, GIF, "
                                   "WebP or TIFF file.")
        notes: list[str] = []
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            image = next(ImageSequence.Iterator(image))  # the first frame
            notes.append(f"The file has {frames} frames (animation or pages); the first one is used.")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError(f"The file is damaged or truncated ({exc}).") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageDecodeError("The image decompresses to too many pixels (refused as a possible "
                                   "decompression bomb).") from None
    mode, width, height, fmt = image.mode, image.width, image.height, image.format
    if max(width, height) > WORK_SIDE:
        image = _reduced(image)
        notes.append(f"Reduced from {width}x{height} to {image.width}x{image.height} px for processing.")
    try:
        rgb, grey = _to_rgb(image, notes)
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"The pixel format {mode} cannot be converted ({exc}).") from None
    return DecodedImage(rgb, grey, fmt, mode, width, height, frames, notes)


def _check_dimensions(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"The image is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit is "
                               f"{MAX_PIXELS / 1e6:.0f} megapixels (a guard against decompression bombs).")
    if max(width, height) > MAX_SIDE:
        raise ImageDecodeError(f"The image is {width}x{height} px; sides longer than {MAX_SIDE:,} px are refused.")
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(f"The image is {width}x{height} px; it must be at least {MIN_SIDE} px on each side.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageDecodeError(f"The image is {width}x{height} px, a strip rather than a picture "
                               f"(sides differ by more than {MAX_ASPECT}x).")


def _reduced(image: Image.Image) -> Image.Image:
    # high-bit and float modes do not all support every resampling filter; 8-bit ones do
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "F", "I;16"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    if image.mode == "I;16":
        image = image.convert("I")
    image = image.copy()
    image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def _to_rgb(image: Image.Image, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Any Pillow mode -> float32 RGB [H, W, 3] in [0, 1], compositing transparency."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            scale = 65535.0
            notes.append("16-bit greyscale scaled to [0, 1].")
        elif mode == "F" and values.max(initial=0) <= 1.0:
            scale = 1.0
        else:
            scale = 255.0
        grey = np.clip(values / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), True
    if mode == "CMYK":
        notes.append("CMYK colours converted to RGB.")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    grey = mode in ("1", "L", "LA", "La")
    if mode == "P":
        palette_rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        grey = bool((palette_rgb == palette_rgb[..., :1]).all())  # a grey palette: R = G = B everywhere
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        if float(alpha.min()) < 1.0:
            # transparent pixels get a background that contrasts with what is drawn: dark strokes on a
            # transparent canvas become dark on white, light strokes light on black
            opaque = alpha[..., 0] > 0.5
            drawn = _luminance(rgb)[opaque]
            background = 1.0 if drawn.size == 0 or float(drawn.mean()) < 0.5 else 0.0
            rgb = rgb * alpha + background * (1.0 - alpha)
            notes.append(f"Transparent pixels were filled with {'white' if background else 'black'}.")
        return np.ascontiguousarray(rgb, dtype=np.float32), grey
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return rgb, grey


def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2, the weights Pillow's convert("L") uses
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """How a model's inputs were prepared in training: channels, size, framing and normalisation."""

    dataset: str  # dataset name, e.g. "mnist5k"
    channels: int  # 1 or 3
    size: int  # square side in pixels
    mean: tuple[float, ...]  # per-channel mean of the training split
    std: tuple[float, ...]  # per-channel std of the training split
    invert_light: bool  # white-on-black data: uploads with a light background are inverted
    fit: str = "crop"  # "digit": ink into a 20 px box, centred by mass (MNIST) | "object": ink fills the frame
    #                    (Fashion-MNIST) | "crop": centre square crop, then resize (colour photos, shapes)
    crop_fraction: float = 1.0  # share of the shorter side kept by "crop" (0.875 for ImageNet's 256 -> 224)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[.., C, H, W] in [0, 1] -> the model's input space."""
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(-1, 1, 1)
        return (pixels - mean) / std

    def black(self) -> torch.Tensor:
        """Pixel value 0 in the model's input space, [C, 1, 1]: the "nothing drawn" baseline."""
        return self.normalize(torch.zeros(self.channels, 1, 1))

    def prepare(self, decoded: DecodedImage, invert: bool | None = None) -> "PreparedImage":
        """The model input for an uploaded image. invert: None = decide from the background (reported)."""
        notes = list(decoded.notes)
        pixels = torch.from_numpy(decoded.rgb).permute(2, 0, 1)  # [3, H, W]
        if self.channels == 1:
            pixels = torch.from_numpy(_luminance(decoded.rgb))[None]
            if not decoded.grey:
                notes.append("Colours converted to grey: the model was trained on greyscale images.")
        elif decoded.grey:
            notes.append("Greyscale image repeated on the three colour channels.")
        background = _border_median(pixels)
        inverted = False
        if self.invert_light:
            inverted = background > 0.5 if invert is None else invert
            if inverted:
                pixels = 1.0 - pixels
                background = 1.0 - background
                why = "" if invert is not None else " (light background)"
                notes.append(f"Inverted{why}: {self.dataset} images are light on a dark background.")
        if self.fit in ("digit", "object"):
            pixels, fit_note = _fit_ink(pixels, background, self.size, box=20 if self.fit == "digit" else self.size,
                                        by_mass=self.fit == "digit")
        else:
            pixels, fit_note = _fit_crop(pixels, self.size, self.crop_fraction)
        notes.append(fit_note)
        pixels = pixels.clamp(0.0, 1.0).contiguous()
        return PreparedImage(pixels, self.normalize(pixels)[None], inverted, notes)

    def prepare_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """A dataset sample [C, H, W] in [0, 1] (already the right size) -> model input [1, C, H, W]."""
        return self.normalize(pixels.float())[None]


@dataclass
class PreparedImage:
    pixels: torch.Tensor  # [C, S, S] in [0, 1]: the image as the model sees it (before normalisation)
    inputs: torch.Tensor  # [1, C, S, S]: the model's input
    inverted: bool  # the colours were inverted
    notes: list[str]  # what was done, one sentence each


def _border_median(pixels: torch.Tensor) -> float:
    """Median brightness of the outer ring (5% of the side, at least 1 px): the background of most pictures."""
    grey = pixels.mean(0)
    h, w = grey.shape
    ring = max(1, round(0.05 * min(h, w)))
    mask = torch.ones_like(grey, dtype=torch.bool)
    mask[ring:h - ring, ring:w - ring] = False
    return float(grey[mask].median())


def _resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # antialias: shrinking a photo by 20x without it aliases thin strokes away
    return F.interpolate(pixels[None], size=(max(1, height), max(1, width)), mode="bilinear",
                         align_corners=False, antialias=True)[0]


def _fit_crop(pixels: torch.Tensor, size: int, fraction: float) -> tuple[torch.Tensor, str]:
    _, h, w = pixels.shape
    side = max(1, round(min(h, w) * fraction))
    top, left = (h - side) // 2, (w - side) // 2
    cropped = pixels[:, top:top + side, left:left + side]
    what = "Centre square cropped and resized" if (h != w or fraction < 1) else "Resized"
    return _resize(cropped, size, size), f"{what} from {w}x{h} to {size}x{size} px."


def _fit_ink(pixels: torch.Tensor, background: float, size: int, box: int, by_mass: bool) -> tuple[torch.Tensor, str]:
    """MNIST-style framing: stretch ink against the background, crop to it, fit the box, centre it."""
    _, h, w = pixels.shape
    peak = float(pixels.max())
    if peak - background > 0.05:
        # grey paper and faint pencil become black background and full-strength ink, as in MNIST
        pixels = ((pixels - background) / (peak - background)).clamp(0.0, 1.0)
    ink = pixels.mean(0) > 0.2
    if not ink.any():
        return _resize(pixels, size, size), f"Nothing drawn was found; resized from {w}x{h} to {size}x{size} px."
    rows, cols = torch.where(ink)
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    crop = pixels[:, top:bottom, left:right]
    scale = box / max(bottom - top, right - left)
    crop = _resize(crop, round((bottom - top) * scale), round((right - left) * scale))
    ch, cw = crop.shape[-2:]
    canvas = torch.zeros(pixels.shape[0], size, size)
    if by_mass:
        weight = crop.mean(0)
        total = float(weight.sum()) or 1.0
        cy = float((weight.sum(1) * torch.arange(ch)).sum()) / total
        cx = float((weight.sum(0) * torch.arange(cw)).sum()) / total
        y0, x0 = round(size / 2 - cy - 0.5), round(size / 2 - cx - 0.5)
    else:
        y0, x0 = (size - ch) // 2, (size - cw) // 2
    y0, x0 = min(max(y0, 0), size - ch), min(max(x0, 0), size - cw)
    canvas[:, y0:y0 + ch, x0:x0 + cw] = crop
    how = f"fitted into a {box}x{box} box and centred by its centre of mass" if by_mass else "fitted to the frame"
    return canvas, f"Drawing cropped from {w}x{h} px, {how} in {size}x{size} px."


# how each dataset was framed when it was made; anything not listed is centre-cropped
_FIT = {"mnist5k": "digit", "mnist": "digit", "fashion_mnist": "object"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_spec(dataset: str, channels: int, size: int, mean, std, light_background: bool) -> InputSpec:
    """The InputSpec of a dataset; `light_background` as in engine.data.loading.DatasetInfo."""
    return InputSpec(dataset, channels, size, tuple(float(m) for m in mean), tuple(float(s) for s in std),
                     invert_light=not light_background and channels == 1, fit=_FIT.get(dataset, "crop"))


def imagenet_spec(size: int = 224) -> InputSpec:
    """torchvision's ImageNet preparation: resize to 256, centre crop 224, ImageNet mean/std."""
    return InputSpec("imagenet", 3, size, IMAGENET_MEAN, IMAGENET_STD, invert_light=False, fit="crop",
                     crop_fraction=size / 256)
