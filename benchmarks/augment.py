"""How fast can a batch be randomly rotated/zoomed/shifted on this CPU? Measures the alternatives.

    python benchmarks/augment.py [--repeats 30] [--threads N]

Part 1 warps 64-image batches (1x28x28 and 3x32x32) with per-sample random affine parameters and prints the
best and median ms per batch, and img/s from the best, for: the engine's F.affine_grid + F.grid_sample
(bilinear, float32 and uint8), grid_sample nearest and channels-last, a hand-rolled gather-based bilinear and
nearest warp, torchvision's tensor RandomAffine image by image, and PIL RandomAffine image by image (the
seed-style baseline). It also prints how far each output is from the engine's: the hand-rolled bilinear warp
computes the same function independently from pixel coordinates, so its tiny difference cross-checks both.
The methods take turns, so load from other processes on a shared machine hits them alike; with more torch
threads than free cores, OpenMP waits make the medians (not the bests) jump to tens of ms.

Part 2 times one epoch of the whole data path on MNIST-5k (batch 64, no model): the seed-style
DataLoader + PIL transforms loop against engine.data.loading.iterate_batches, with and without augmentation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo
from engine.data.augment import AffineParams, AugmentSpec, affine_theta, apply_affine, augment_batch, sample_params
from engine.data.loading import iterate_batches, load_dataset

SPEC = AugmentSpec(rotate=15.0, scale=0.1, translate=0.1)  # the kind of setting a digits run uses
BATCH = 64


def grid_sample_warp(x: torch.Tensor, params: AffineParams, mode: str) -> torch.Tensor:
    """The engine's warp with another sampling mode (or another memory layout of x)."""
    theta = affine_theta(params, (x.shape[2], x.shape[3])).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def source_coordinates(params: AffineParams, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixel (x, y) of every output pixel, [N, H*W] each, from the inverse map in pixel units (float64).
    Written independently of engine.data.augment.affine_theta, so the diff column also cross-checks the engine."""
    theta = torch.deg2rad(params.angle)
    cos, sin = torch.cos(theta), torch.sin(theta)
    mirror = torch.where(params.flip, -1.0, 1.0).double()
    m00, m01 = mirror * cos / params.zoom, -mirror * sin / params.zoom
    m10, m11 = sin / params.zoom, cos / params.zoom
    cx, cy = (width - 1) / 2, (height - 1) / 2
    qx, qy = params.shift_x + cx, params.shift_y + cy
    inverse = torch.stack([torch.stack([m00, m01, cx - (m00 * qx + m01 * qy)], 1),
                           torch.stack([m10, m11, cy - (m10 * qx + m11 * qy)], 1)], 1)  # [N, 2, 3]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(height * width, dtype=torch.float64)])
    src = (inverse @ grid).float()
    return src[:, 0], src[:, 1]


def gather_bilinear(x: torch.Tensor, params: AffineParams) -> torch.Tensor:
    """Hand-rolled bilinear warp: four neighbours fetched with one gather from a zero-padded copy."""
    dtype = x.dtype
    x = x.float()
    n, c, h, w = x.shape
    sx, sy = source_coordinates(params, h, w)
    # one ring of zeros: clamped indices of far-away positions read only zeros, no validity masks needed
    padded = F.pad(x, (1, 1, 1, 1)).reshape(n, c, -1)
    px, py = (sx + 1).clamp_(0, w + 1), (sy + 1).clamp_(0, h + 1)
    x0, y0 = px.floor().clamp_(max=w), py.floor().clamp_(max=h)
    fx, fy = (px - x0).unsqueeze(1), (py - y0).unsqueeze(1)
    tl = (y0 * (w + 2) + x0).long()
    index = torch.cat([tl, tl + 1, tl + w + 2, tl + w + 3], 1).unsqueeze(1).expand(n, c, -1)
    v = padded.gather(2, index).reshape(n, c, 4, h * w)
    top = v[:, :, 0] + fx * (v[:, :, 1] - v[:, :, 0])
    bottom = v[:, :, 2] + fx * (v[:, :, 3] - v[:, :, 2])
    out = (top + fy * (bottom - top)).reshape(n, c, h, w)
    return out if dtype.is_floating_point else out.round().to(dtype)


def gather_nearest(x: torch.Tensor, params: AffineParams) -> torch.Tensor:
    n, c, h, w = x.shape
    sx, sy = source_coordinates(params, h, w)
    padded = F.pad(x, (1, 1, 1, 1)).reshape(n, c, -1)
    ix = (sx + 1).round().clamp(0, w + 1).long()
    iy = (sy + 1).round().clamp(0, h + 1).long()
    index = (iy * (w + 2) + ix).unsqueeze(1).expand(n, c, -1)
    return padded.gather(2, index).reshape(n, c, h, w)


def pil_random_affine(x: torch.Tensor) -> torch.Tensor:
    """Seed-style: each image to PIL, torchvision RandomAffine, back to a tensor."""
    transform = T.Compose([T.RandomAffine(SPEC.rotate, translate=(SPEC.translate,) * 2,
                                          scale=(1 - SPEC.scale, 1 + SPEC.scale),
                                          interpolation=T.InterpolationMode.BILINEAR), T.ToTensor()])
    arrays = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    images = [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in arrays]
    return torch.stack([transform(im) for im in images])


def tensor_random_affine(x: torch.Tensor) -> torch.Tensor:
    transform = T.RandomAffine(SPEC.rotate, translate=(SPEC.translate,) * 2, scale=(1 - SPEC.scale, 1 + SPEC.scale),
                               interpolation=T.InterpolationMode.BILINEAR)
    return torch.stack([transform(im) for im in x])


def timings_ms(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """(best, median) ms per call of each method. The methods take turns, so a burst of load from other
    processes on this shared machine hits all of them alike; the best run is the fairest estimate of the cost."""
    for fn in methods.values():
        for _ in range(3):
            fn()  # warm-up: first calls allocate and pick kernels
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t) * 1000, statistics.median(t) * 1000) for name, t in times.items()}


def part1(repeats: int) -> None:
    print(f"Part 1: one batch of {BATCH}, spec {SPEC}, {repeats} repeats")
    for shape in ((1, 28, 28), (3, 32, 32)):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(BATCH, *shape, generator=g)
        x_uint8 = (x * 255).round().to(torch.uint8)
        x_last = x.contiguous(memory_format=torch.channels_last)
        params = sample_params(BATCH, SPEC, shape[1:], g)
        reference = apply_affine(x, params)
        methods: dict[str, Callable[[], torch.Tensor]] = {
            "grid_sample bilinear (engine)": lambda: apply_affine(x, params),
            "grid_sample bilinear uint8": lambda: apply_affine(x_uint8, params),
            "grid_sample nearest": lambda: grid_sample_warp(x, params, "nearest"),
            "grid_sample bilinear channels-last": lambda: grid_sample_warp(x_last, params, "bilinear"),
            "gather bilinear float32 (hand-rolled)": lambda: gather_bilinear(x, params),
            "gather bilinear uint8 (hand-rolled)": lambda: gather_bilinear(x_uint8, params),
            "gather nearest float32 (hand-rolled)": lambda: gather_nearest(x, params),
            "augment_batch incl. sampling (engine)": lambda: augment_batch(x, SPEC, g),
            "torchvision RandomAffine per tensor image": lambda: tensor_random_affine(x),
            "PIL RandomAffine per image (seed-style)": lambda: pil_random_affine(x),
        }
        print(f"\n  {BATCH}x{shape[0]}x{shape[1]}x{shape[2]}")
        print(f"  {'method':42s} {'best ms':>8s} {'median':>8s} {'img/s':>9s}  max|diff| vs engine")
        for name, (ms, median) in timings_ms(methods, repeats).items():
            out = methods[name]().float()
            if "uint8" in name:
                diff = (out / 255 - reference).abs().max().item()
            elif "grid_sample" in name or "gather" in name:
                diff = (out - reference).abs().max().item()
            else:
                diff = float("nan")  # different random parameters: not comparable
            print(f"  {name:42s} {ms:8.2f} {median:8.2f} {BATCH / ms * 1000:9.0f}  {diff:.2g}")


def part2() -> None:
    split = load_dataset("mnist5k")
    mean, std = split.mean, split.std
    n = len(split.train_y)
    print(f"\nPart 2: one epoch of the data path over MNIST-5k train ({n} images, batch {BATCH}, no model)")
    arrays = (split.train_x[:, 0] * 255).round().to(torch.uint8).numpy()
    labels = split.train_y.numpy()

    class PilDataset(torch.utils.data.Dataset):
        def __init__(self, transform):
            self.transform = transform

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(arrays[i], mode="L")), int(labels[i])

    affine = T.RandomAffine(SPEC.rotate, translate=(SPEC.translate,) * 2, scale=(1 - SPEC.scale, 1 + SPEC.scale))
    loaders = {
        "DataLoader + PIL ToTensor/Normalize (seed-style)": lambda: torch.utils.data.DataLoader(
            PilDataset(T.Compose([T.ToTensor(), T.Normalize(mean, std)])), batch_size=BATCH, shuffle=True),
        "DataLoader + PIL RandomAffine (seed-style aug)": lambda: torch.utils.data.DataLoader(
            PilDataset(T.Compose([affine, T.ToTensor(), T.Normalize(mean, std)])), batch_size=BATCH, shuffle=True),
        "iterate_batches": lambda: iterate_batches(split.train_x, split.train_y, BATCH, seed=0, epoch=0,
                                                   mean=mean, std=std),
        "iterate_batches + augment": lambda: iterate_batches(split.train_x, split.train_y, BATCH, seed=0, epoch=0,
                                                             augment=SPEC, mean=mean, std=std),
    }
    rates = {}
    for name, make in loaders.items():
        best = min(_epoch_seconds(make) for _ in range(3))
        rates[name] = n / best
        print(f"  {name:50s} {best * 1000:8.0f} ms/epoch {rates[name]:9.0f} img/s")
    base = rates["DataLoader + PIL RandomAffine (seed-style aug)"]
    print(f"  augmented path speed-up over seed-style augmented loop: {rates['iterate_batches + augment'] / base:.1f}x")


def _epoch_seconds(make) -> float:
    start = time.perf_counter()
    for images, _ in make():
        images.sum()  # touch the batch, as a model would
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    part1(args.repeats)
    part2()


if __name__ == "__main__":
    main()
