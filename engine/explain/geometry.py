"""Where a feature-map cell sits in the input: Grad-CAM placed by receptive fields, not stretched.

A convolutional feature map is smaller than the input, and not simply a shrunken copy of it: an unpadded
5x5 convolution drops two pixels on each side, so cell 0 of the convnet's second convolution (8x8 on a
28x28 digit) is centred on input pixel 6.5 and cell 7 on pixel 20.5. Stretching that 8x8 map over the whole
28x28 image (plain bilinear upsampling) moves everything towards the borders, which is why the stretched
Grad-CAM of an MNIST digit pointed at the empty corners.

`trace_geometry` runs the model once with hooks and follows every 4-D tensor from the input to the chosen
layer through convolutions and poolings (each one: centre of output cell 0 = centre of the input's cell
`-padding + dilation * (kernel - 1) / 2`, step multiplied by the stride). Modules that keep the spatial size
(ReLU, batch norm, a residual block's sum) keep the geometry. `place` then samples the map at the input
pixels' positions in feature-map coordinates, so every value lands over the centre of the region its cell
saw. Beyond the outermost centres the map fades to zero within one cell step: extending the edge cells' values
to the border (replicate padding) painted bright bands along the empty borders of MNIST digits, where fewer
cells overlap and no ink ever is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Geometry:
    """Cell (i, j) of a feature map is centred on input pixel (offset_y + i * stride_y, offset_x + j * stride_x)."""

    offset_y: float
    offset_x: float
    stride_y: float
    stride_x: float

    def after(self, module: nn.Module) -> "Geometry":
        """The geometry of `module`'s output when this is its input's (convolutions and poolings)."""
        kernel, stride, padding, dilation = (_pair(getattr(module, name, default)) for name, default in
                                             (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)))
        if isinstance(getattr(module, "padding", 0), str):  # Conv2d(padding="same" | "valid")
            padding = _string_padding(module)
        shift_y = -padding[0] + dilation[0] * (kernel[0] - 1) / 2
        shift_x = -padding[1] + dilation[1] * (kernel[1] - 1) / 2
        return Geometry(self.offset_y + self.stride_y * shift_y, self.offset_x + self.stride_x * shift_x,
                        self.stride_y * stride[0], self.stride_x * stride[1])


IDENTITY = Geometry(0.0, 0.0, 1.0, 1.0)
_RESAMPLING = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, str):
        return (0, 0)
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def _string_padding(module: nn.Module) -> tuple[int, int]:
    if module.padding == "valid":
        return (0, 0)
    kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)  # "same": output centred on input
    return (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)


def trace_geometry(model: nn.Module, inputs: Tensor, layer: nn.Module) -> Geometry | None:
    """The geometry of `layer`'s output for inputs shaped like `inputs` (one forward pass, no gradients).

    None when the layer's output is not a 4-D map or could not be followed back to the input.
    """
    by_id: dict[int, Geometry] = {}
    by_size: dict[tuple[int, int], Geometry] = {}
    keep: list[Tensor] = []  # holds the traced tensors so that their ids are not reused during the pass
    found: list[Geometry | None] = []

    def remember(tensor: Tensor, geometry: Geometry) -> None:
        keep.append(tensor)
        by_id[id(tensor)] = geometry
        by_size.setdefault(tuple(tensor.shape[-2:]), geometry)

    def lookup(tensor) -> Geometry | None:
        if not isinstance(tensor, Tensor) or tensor.dim() != 4:
            return None
        # a tensor made by a functional op (a residual sum) has no recorded id: same size, same geometry
        return by_id.get(id(tensor)) or by_size.get(tuple(tensor.shape[-2:]))

    def leaf_hook(module, args, output) -> None:
        if not args or not isinstance(output, Tensor) or output.dim() != 4:
            return
        geometry = lookup(args[0])
        if geometry is None:
            return
        if isinstance(module, _RESAMPLING):
            remember(output, geometry.after(module))
        elif tuple(output.shape[-2:]) == tuple(args[0].shape[-2:]):
            remember(output, geometry)

    def layer_hook(module, args, output) -> None:
        found.append(lookup(output) if isinstance(output, Tensor) else None)

    x = inputs[:1].detach()
    remember(x, IDENTITY)
    handles = [m.register_forward_hook(leaf_hook) for m in model.modules() if not list(m.children())]
    handles.append(layer.register_forward_hook(layer_hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def place(cam: Tensor, geometry: Geometry | None, size: tuple[int, int]) -> Tensor:
    """A map [B, 1, h, w] of feature-map cells resampled to the input's `size` by the cells' input positions.

    Without a geometry (a layer that could not be traced) it falls back to stretching the map over the input.
    """
    h, w = cam.shape[-2:]
    if geometry is None:
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    rows = (torch.arange(size[0], dtype=cam.dtype, device=cam.device) - geometry.offset_y) / geometry.stride_y
    cols = (torch.arange(size[1], dtype=cam.dtype, device=cam.device) - geometry.offset_x) / geometry.stride_x
    # grid_sample's align_corners=True puts -1 and 1 on the centres of the first and last cells
    grid_y = 2 * rows / max(h - 1, 1) - 1 if h > 1 else torch.zeros_like(rows)
    grid_x = 2 * cols / max(w - 1, 1) - 1 if w > 1 else torch.zeros_like(cols)
    yy, xx = torch.meshgrid(grid_y, grid_x, indexing="ij")
    grid = torch.stack([xx, yy], dim=-1).expand(cam.shape[0], *size, 2)
    return F.grid_sample(cam, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
