"""Batched augmentation: geometry against torch.rot90 and torchvision's own affine, and randomness per sample."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from engine.data.augment import AffineParams, AugmentSpec, apply_affine, augment_batch, sample_params


def params(n: int = 1, angle: float = 0.0, zoom: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0,
           flip: bool = False) -> AffineParams:
    full = lambda v: torch.full((n,), float(v), dtype=torch.float64)  # noqa: E731
    return AffineParams(full(angle), full(zoom), full(shift_x), full(shift_y), torch.full((n,), flip))


def blob(size: int = 28, centre: tuple[float, float] = (13.5, 13.5), sigma: float = 2.5) -> torch.Tensor:
    """A smooth Gaussian spot [1, 1, S, S]: interpolation keeps its centre of mass and mass accurate."""
    coords = torch.arange(size, dtype=torch.float32)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))[None, None]


def centre_of_mass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) centre of mass of each image of x [N, 1, H, W]."""
    h, w = x.shape[-2:]
    mass = x.sum((-2, -1))
    cx = (x * torch.arange(w, dtype=x.dtype)).sum((-2, -1)) / mass
    cy = (x * torch.arange(h, dtype=x.dtype)[:, None]).sum((-2, -1)) / mass
    return cx[:, 0], cy[:, 0]


def test_inactive_spec_returns_the_input_untouched():
    x = torch.rand(5, 1, 28, 28)
    assert not AugmentSpec().active
    out = augment_batch(x, AugmentSpec(), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_identity_parameters_reproduce_the_image():
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(apply_affine(x, params(3)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle,k", [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_quarter_turns_equal_rot90(angle, k):
    x = torch.rand(2, 3, 28, 28)  # random pixels: asymmetric, and every pixel must land in the right place
    out = apply_affine(x, params(2, angle=angle))
    torch.testing.assert_close(out, torch.rot90(x, k, dims=(-2, -1)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("height,width", [(32, 32), (24, 40)])
def test_matches_torchvision_affine_for_random_parameters(height, width):
    # independent implementation: torchvision's functional affine, one image at a time (its angle is clockwise)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, height, width, generator=g)
    p = sample_params(6, AugmentSpec(rotate=40, scale=0.3, translate=0.15, flip=True), (height, width), g)
    assert p.flip.any() and not p.flip.all()
    out = apply_affine(x, p)
    for i in range(6):
        source = x[i].flip(-1) if p.flip[i] else x[i]
        expected = TF.affine(source, angle=-float(p.angle[i]), translate=[float(p.shift_x[i]), float(p.shift_y[i])],
                             scale=float(p.zoom[i]), shear=[0.0, 0.0], interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_positive_angle_is_counter_clockwise_like_torchvision_rotate():
    x = torch.rand(1, 1, 28, 28)
    expected = TF.rotate(x[0], 30.0, interpolation=TF.InterpolationMode.BILINEAR)
    torch.testing.assert_close(apply_affine(x, params(angle=30.0))[0], expected, atol=1e-4, rtol=0)


def test_translation_moves_the_centre_of_mass_by_the_sampled_shift():
    x = blob().repeat(16, 1, 1, 1)
    spec = AugmentSpec(translate=0.15)
    expected = sample_params(16, spec, (28, 28), torch.Generator().manual_seed(7))  # what augment_batch will draw
    out = augment_batch(x, spec, torch.Generator().manual_seed(7))
    cx, cy = centre_of_mass(out)
    cx0, cy0 = centre_of_mass(x)
    torch.testing.assert_close(cx - cx0, expected.shift_x.float(), atol=0.05, rtol=0)
    torch.testing.assert_close(cy - cy0, expected.shift_y.float(), atol=0.05, rtol=0)
    assert expected.shift_x.abs().max() > 2  # the shifts are real ones, up to 0.15 * 28 = 4.2 px
    assert expected.shift_x.abs().max() <= 0.15 * 28


@pytest.mark.parametrize("zoom", [0.7, 1.3])
def test_zoom_scales_the_object_area_by_the_square_of_the_factor(zoom):
    x = blob(sigma=3.0)
    out = apply_affine(x, params(zoom=zoom))
    assert out.sum() / x.sum() == pytest.approx(zoom**2, rel=0.02)
    # the object grows about the image centre, not somewhere else
    cx, cy = centre_of_mass(out)
    assert float(cx) == pytest.approx(13.5, abs=0.05) and float(cy) == pytest.approx(13.5, abs=0.05)


def test_same_generator_seed_same_batch_other_seed_other_batch():
    x = torch.rand(8, 1, 28, 28)
    spec = AugmentSpec(rotate=20, scale=0.1, translate=0.1, flip=True)
    a = augment_batch(x, spec, torch.Generator().manual_seed(1))
    b = augment_batch(x, spec, torch.Generator().manual_seed(1))
    c = augment_batch(x, spec, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_every_sample_gets_its_own_parameters():
    x = blob(centre=(10.0, 12.0)).repeat(32, 1, 1, 1)  # off-centre, so rotations move it too
    out = augment_batch(x, AugmentSpec(rotate=30, scale=0.2, translate=0.1), torch.Generator().manual_seed(0))
    flat = out.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(32, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3  # no two copies of the same image came out the same


def test_output_keeps_shape_dtype_and_range():
    x = torch.rand(10, 3, 32, 32)
    spec = AugmentSpec(rotate=45, scale=0.3, translate=0.2, flip=True)
    out = augment_batch(x, spec, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1  # bilinear weights are a convex mix of pixels and zeros
    # uint8 images stay uint8 and agree with the float path after rounding
    x8 = (x * 255).round().to(torch.uint8)
    p = sample_params(10, AugmentSpec(rotate=45), (32, 32), torch.Generator().manual_seed(0))
    out8 = apply_affine(x8, p)
    assert out8.dtype == torch.uint8
    assert (out8.float() - apply_affine(x8.float(), p)).abs().max() <= 0.5 + 1e-4


def test_flip_only_is_an_exact_mirror_for_about_half_the_samples():
    x = torch.rand(64, 3, 8, 8)
    out = augment_batch(x, AugmentSpec(flip=True), torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x)])
    assert bool((flipped | kept).all())
    assert 16 < int(flipped.sum()) < 48


def test_sampled_parameters_stay_within_the_spec():
    spec = AugmentSpec(rotate=10, scale=0.2, translate=0.1)
    p = sample_params(2000, spec, (28, 32), torch.Generator().manual_seed(0))
    assert p.angle.abs().max() <= 10 and p.angle.abs().max() > 9.5
    assert p.zoom.min() >= 0.8 and p.zoom.max() <= 1.2
    assert p.shift_x.abs().max() <= 3.2 and p.shift_y.abs().max() <= 2.8
    assert not p.flip.any()


@pytest.mark.parametrize("field,value", [("rotate", -1.0), ("rotate", 200.0), ("scale", 1.0), ("translate", 1.5)])
def test_spec_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentSpec(**{field: value})
