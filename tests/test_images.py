"""engine.explain.images: a corpus of good, odd and bad image files generated here, and dataset-faithful preparation."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.explain.images import (MAX_BYTES, ImageDecodeError, InputSpec, decode_image, imagenet_spec, input_spec)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MNIST = input_spec("mnist5k", 1, 28, (0.1307,), (0.3081,), light_background=False)
SHAPES = input_spec("shapes", 3, 32, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), light_background=True)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds almost no data: what a decompression bomb looks like to open()."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def colour_blocks() -> Image.Image:
    image = Image.new("RGB", (40, 30), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 30))
    return image


# ---- good and odd files: each must decode to the right pixels ------------------------------------------------


@pytest.mark.parametrize("fmt,options", [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True}), ("TIFF", {}),
                                         ("GIF", {})])
def test_lossless_formats_keep_exact_colours(fmt, options):
    decoded = decode_image(encode(colour_blocks(), fmt, **options))
    assert decoded.format == fmt and decoded.rgb.shape == (30, 40, 3) and not decoded.grey
    np.testing.assert_allclose(decoded.rgb[5, 5], [1, 0, 0])
    np.testing.assert_allclose(decoded.rgb[5, 30], [0, 0, 1])


def test_jpeg_is_close_to_the_original():
    decoded = decode_image(encode(colour_blocks(), "JPEG", quality=95))
    original = np.asarray(colour_blocks(), dtype=np.float32) / 255
    assert np.abs(decoded.rgb - original)[:, [5, 30]].max() < 0.05  # away from the block edge


def test_greyscale_modes_are_flagged_grey():
    grey = Image.new("L", (10, 10), 200)
    bilevel = grey.convert("1", dither=Image.Dither.NONE)
    for image in (grey, bilevel, grey.convert("LA")):
        decoded = decode_image(encode(image, "PNG"))
        assert decoded.grey
        np.testing.assert_allclose(decoded.rgb[..., 0], decoded.rgb[..., 2])
    np.testing.assert_allclose(decode_image(encode(grey, "PNG")).rgb, 200 / 255, rtol=1e-6)
    np.testing.assert_allclose(decode_image(encode(bilevel, "PNG")).rgb, 1.0)  # 200 > 127: white


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_from_65535(fmt):
    values = np.array([[0, 32768, 65535, 1000]] * 4, dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), fmt))
    assert decoded.mode.startswith("I") and decoded.grey
    np.testing.assert_allclose(decoded.rgb[0, :, 0], values[0] / 65535, atol=1e-6)
    assert any("16-bit" in note for note in decoded.notes)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(fmt):
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    decoded = decode_image(encode(cyan, fmt))
    assert decoded.mode == "CMYK"
    np.testing.assert_allclose(decoded.rgb[4, 4], [0, 1, 1], atol=0.03)
    assert "CMYK colours converted to RGB." in decoded.notes


def test_palette_images_keep_their_colours():
    palette = colour_blocks().quantize(colors=4)
    assert palette.mode == "P"
    decoded = decode_image(encode(palette, "PNG"))
    np.testing.assert_allclose(decoded.rgb[5, 5], [1, 0, 0])
    assert not decoded.grey


def test_transparency_is_filled_to_contrast_with_the_drawing():
    dark_strokes = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    ImageDraw.Draw(dark_strokes).line([(10, 2), (10, 18)], fill=(0, 0, 0, 255), width=3)
    decoded = decode_image(encode(dark_strokes, "PNG"))
    np.testing.assert_allclose(decoded.rgb[0, 0], [1, 1, 1])  # dark drawing: white paper
    np.testing.assert_allclose(decoded.rgb[10, 10], [0, 0, 0])
    assert "Transparent pixels were filled with white." in decoded.notes
    light_strokes = Image.new("LA", (20, 20), (0, 0))
    ImageDraw.Draw(light_strokes).line([(10, 2), (10, 18)], fill=(255, 255), width=3)
    decoded = decode_image(encode(light_strokes, "PNG"))
    np.testing.assert_allclose(decoded.rgb[0, 0], [0, 0, 0])  # light drawing: black background
    # a GIF with a transparent palette index takes the same path
    gif = decode_image(encode(dark_strokes.convert("RGB").convert("P"), "GIF", transparency=255))
    assert gif.rgb.shape == (20, 20, 3)


def test_animated_gif_and_multipage_tiff_use_the_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "TIFF"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        decoded = decode_image(data)
        assert decoded.frames == 3, fmt
        np.testing.assert_allclose(decoded.rgb[8, 8], [1, 0, 0], atol=0.01)
        assert any("first one is used" in note for note in decoded.notes)


def test_large_images_are_reduced_before_the_float_conversion():
    decoded = decode_image(encode(Image.new("L", (3000, 1500), 90), "PNG"))
    assert (decoded.width, decoded.height) == (3000, 1500) and decoded.rgb.shape == (512, 1024, 3)
    assert any("Reduced from 3000x1500" in note for note in decoded.notes)


# ---- bad files: one error type, a readable message --------------------------------------------------------------


def _truncated_png() -> bytes:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noisy, "PNG")
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noisy, "JPEG")
    return data[: len(data) // 2]


BAD = [
    ("empty", lambda: b"", "The file is empty"),
    ("text", lambda: b"print('hello')\n" * 20, "not an image that can be read"),
    ("truncated png", _truncated_png, "damaged or truncated"),
    ("truncated jpeg", _truncated_jpeg, "damaged or truncated"),
    ("broken header", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|damaged"),
    ("bomb over Pillow's hard limit", lambda: png_header(20000, 20000), "megapixels"),
    ("bomb in Pillow's warning range", lambda: png_header(10000, 9999), "megapixels"),
    ("bomb under Pillow's limits", lambda: png_header(9000, 9000), "81 megapixels; the limit is 40"),
    ("absurd side", lambda: png_header(12000, 100), "longer than 10,000 px"),
    ("one pixel wide", lambda: png_header(1, 300), "at least 4 px on each side"),
    ("strip", lambda: png_header(2000, 20), "a strip rather than a picture"),
    ("unsupported format", lambda: encode(Image.new("RGB", (8, 8)), "PPM"), "PPM images are not supported"),
    ("too many bytes", lambda: b"\x00" * (MAX_BYTES + 1), "the limit is 25 MB"),
]


@pytest.mark.parametrize("make,message", [(m, msg) for _, m, msg in BAD], ids=[name for name, _, _ in BAD])
def test_bad_files_raise_one_clear_error(make, message):
    with pytest.raises(ImageDecodeError, match=message) as info:
        decode_image(make())
    assert isinstance(info.value, ValueError)  # the CLI maps ValueError to exit 2
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_a_real_one_pixel_wide_png_is_refused():
    with pytest.raises(ImageDecodeError, match="at least 4 px"):
        decode_image(encode(Image.new("L", (1, 50)), "PNG"))


# ---- preparation for a dataset -------------------------------------------------------------------------------


def drawn_digit(light_paper: bool, size=(200, 160)) -> bytes:
    ink, paper = (20, 240) if light_paper else (255, 0)
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).line([(60, 20), (140, 20), (90, 140)], fill=ink, width=14)  # a "7" off-centre
    return encode(image, "PNG")


def test_digits_on_light_paper_are_inverted_and_framed_like_mnist():
    prepared = MNIST.prepare(decode_image(drawn_digit(light_paper=True)))
    assert prepared.inverted and any("Inverted (light background)" in n for n in prepared.notes)
    pixels = prepared.pixels[0]
    assert pixels.shape == (28, 28)
    assert float(pixels[0].max()) == 0.0 and float(pixels.max()) > 0.95  # black background, full-strength ink
    rows, cols = torch.where(pixels > 0.05)
    assert int(rows.max() - rows.min()) <= 21 and int(cols.max() - cols.min()) <= 21  # the 20x20 box (+ blur)
    weight = pixels / pixels.sum()
    cy, cx = float((weight.sum(1) * torch.arange(28)).sum()), float((weight.sum(0) * torch.arange(28)).sum())
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0  # centred by its centre of mass
    torch.testing.assert_close(prepared.inputs[0], (prepared.pixels - 0.1307) / 0.3081)


def test_white_on_black_digits_are_not_inverted_and_the_choice_can_be_forced():
    assert not MNIST.prepare(decode_image(drawn_digit(light_paper=False))).inverted
    forced = MNIST.prepare(decode_image(drawn_digit(light_paper=True)), invert=False)
    assert not forced.inverted and not any("Inverted" in n for n in forced.notes)


def test_colour_dataset_gets_three_channels_centre_cropped_and_normalised():
    grey = decode_image(encode(Image.new("L", (64, 48), 128), "PNG"))
    prepared = SHAPES.prepare(grey)
    assert prepared.pixels.shape == (3, 32, 32) and not prepared.inverted  # no inversion for colour data
    torch.testing.assert_close(prepared.pixels[0], prepared.pixels[2])
    assert "Greyscale image repeated on the three colour channels." in prepared.notes
    mean, std = torch.tensor(SHAPES.mean).view(3, 1, 1), torch.tensor(SHAPES.std).view(3, 1, 1)
    torch.testing.assert_close(prepared.inputs[0], (prepared.pixels - mean) / std)
    assert torch.allclose(SHAPES.black(), -mean / std)


def test_grey_model_gets_the_luminance_of_colour_uploads():
    spec = InputSpec("grey", 1, 8, (0.0,), (1.0,), invert_light=False, fit="crop")
    prepared = spec.prepare(decode_image(encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG")))
    torch.testing.assert_close(prepared.pixels, torch.full((1, 8, 8), 0.299))


def test_imagenet_preparation_is_resize_256_centre_crop_224():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    prepared = imagenet_spec().prepare(decode_image(encode(Image.fromarray(array), "PNG")))
    centre = torch.from_numpy(array[16:240, 16:240]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(prepared.pixels, centre, atol=1e-5, rtol=0)


def test_every_asset_decodes_and_prepares(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: the working directory stays empty
    paths = sorted(ASSETS.glob("*.png"))
    assert len(paths) >= 8
    for path in paths:
        decoded = decode_image(path.read_bytes())
        if path.name.startswith("digit"):
            prepared = MNIST.prepare(decoded)
            assert prepared.inverted == ("light_paper" in path.name), path.name
            assert float(prepared.pixels.max()) > 0.9
        else:
            assert SHAPES.prepare(decoded).pixels.shape == (3, 32, 32)
    assert list(tmp_path.iterdir()) == []
