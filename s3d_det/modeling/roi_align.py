"""Tube RoIAlign as a sparse matrix product, for the CPU.

``torchvision.ops.roi_align`` samples each output bin by bilinear interpolation; the result is linear in the
features, ``out = M @ features``, with a sparse ``M`` that depends only on the boxes. A tube RoI reads the same
box at every time step, so one ``M`` serves all of them: ``tube_roi_align`` builds ``M`` once per call
(torchvision's sampling points and weights, to the letter) and runs the forward as ``M @ F`` and the backward as
``M^T @ grad``, two sparse-dense products over all time steps and channels at once.

Why not torchvision's kernel on the CPU: its backward pass recomputes every sample's interpolation weights for
each channel, on one thread (timings: ``benchmarks/bench_roi_align.py``).
``torchvision_tube_roi_align`` is the same RoIAlign with torchvision's kernel, which ``tube_roi_align`` uses on
other devices and dtypes.
"""
from __future__ import annotations

import warnings
from typing import Sequence, Tuple

import torch
from torchvision.ops import roi_align

__all__ = ["roi_align_matrix", "tube_roi_align", "torchvision_tube_roi_align"]


def _axis_samples(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, bins: int, max_grid: int,
                  size: int):
    """Sample coordinates along one axis and their two neighbours, as torchvision's ``bilinear_interpolate``.

    start, bin_size: (R,) in feature cells; grid: (R,) samples per bin (int64). Returns, each (R, bins, max_grid):
    valid (the sample exists and lies within [-1, size]), low and high indices (int64), their weights."""
    dtype = start.dtype
    sample = torch.arange(max_grid, dtype=dtype, device=start.device)
    step = torch.arange(bins, dtype=dtype, device=start.device)
    per_sample = bin_size / grid.clamp(min=1).to(dtype)
    v = start[:, None, None] + step[None, :, None] * bin_size[:, None, None] \
        + (sample[None, None, :] + 0.5) * per_sample[:, None, None]
    valid = (sample[None, None, :] < grid[:, None, None]) & (v >= -1.0) & (v <= size)
    v = v.clamp(min=0.0)
    low = v.floor().to(torch.int64)
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(v), v - low.to(dtype))
    return valid, low, high, 1.0 - frac, frac


def roi_align_matrix(boxes: torch.Tensor, image_index: torch.Tensor, *, image_size: Tuple[int, int],
                     num_images: int, output_size: int, spatial_scale: float, sampling_ratio: int = 0,
                     aligned: bool = True, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sparse matrix of RoIAlign: row ``r * S * S + i * S + j`` holds the weights with which bin (i, j) of box r
    averages the feature cells ``b * h * w + y * w + x`` (b its image), exactly as ``torchvision.ops.roi_align``
    samples them (the same sample points, boundary rules and averaging).

    Args:
        boxes: (R, 4) x1, y1, x2, y2 in input pixels; image_index: (R,) int64, each box's image.
        image_size: (h, w) of the feature map; num_images: B.
        output_size (int): S; spatial_scale (float): feature cells per input pixel; sampling_ratio (int): samples
        per bin side, 0 adapts it to the bin size; aligned (bool): the half-pixel correction.
    Returns: a sparse CSR tensor (R * S * S, B * h * w) of ``dtype``.
    """
    h, w = image_size
    r, s = boxes.shape[0], output_size
    device = boxes.device
    boxes = boxes.to(dtype)
    offset = 0.5 if aligned else 0.0
    x1, y1 = boxes[:, 0] * spatial_scale - offset, boxes[:, 1] * spatial_scale - offset
    width, height = boxes[:, 2] * spatial_scale - offset - x1, boxes[:, 3] * spatial_scale - offset - y1
    if not aligned:  # torchvision's legacy mode: boxes at least one cell
        width, height = width.clamp(min=1.0), height.clamp(min=1.0)
    bin_w, bin_h = width / s, height / s
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((r,), sampling_ratio, dtype=torch.int64, device=device)
    else:
        grid_h, grid_w = torch.ceil(height / s).to(torch.int64), torch.ceil(width / s).to(torch.int64)
    max_h = max(int(grid_h.max()) if r else 1, 1)
    max_w = max(int(grid_w.max()) if r else 1, 1)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)
    ok_y, y_lo, y_hi, wy_lo, wy_hi = _axis_samples(y1, bin_h, grid_h, s, max_h, h)  # (R, S, gh)
    ok_x, x_lo, x_hi, wx_lo, wx_hi = _axis_samples(x1, bin_w, grid_w, s, max_w, w)  # (R, S, gw)

    def along_y(t):  # (R, S, gh) -> (R, S, 1, gh, 1)
        return t[:, :, None, :, None]

    def along_x(t):  # (R, S, gw) -> (R, 1, S, 1, gw)
        return t[:, None, :, None, :]

    base = image_index.to(torch.int64)[:, None, None, None, None] * (h * w)
    cols = torch.stack([base + along_y(yy) * w + along_x(xx)
                        for yy in (y_lo, y_hi) for xx in (x_lo, x_hi)], -1)  # (R, S, S, gh, gw, 4)
    scale = (along_y(ok_y) & along_x(ok_x)).to(dtype) / count[:, None, None, None, None]
    vals = torch.stack([along_y(wy) * along_x(wx) * scale for wy in (wy_lo, wy_hi) for wx in (wx_lo, wx_hi)], -1)
    rows = torch.arange(r * s * s, device=device).view(r, s, s, 1, 1, 1).expand_as(cols)
    keep = vals != 0
    indices = torch.stack([rows[keep], cols[keep]])
    matrix = torch.sparse_coo_tensor(indices, vals[keep], (r * s * s, num_images * h * w), check_invariants=False)
    return _to_csr(matrix)


def _to_csr(matrix: torch.Tensor) -> torch.Tensor:
    """A sparse COO matrix as CSR (the faster layout for products on the CPU), without PyTorch's beta warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.coalesce().to_sparse_csr()


class _SparseProduct(torch.autograd.Function):
    """``matrix @ dense`` with the gradient ``matrix^T @ grad`` for ``dense`` (``matrix`` is a constant)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.matrix = matrix
        return matrix @ dense

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, _to_csr(ctx.matrix.to_sparse_coo().t()) @ grad.contiguous()


def _memory_format(features: torch.Tensor) -> torch.memory_format:
    return torch.channels_last_3d if features.is_contiguous(memory_format=torch.channels_last_3d) \
        else torch.contiguous_format


def tube_roi_align(features: torch.Tensor, boxes: Sequence[torch.Tensor], *, output_size: int,
                   spatial_scale: float, sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """RoIAlign of each box at every time step of its image's 3D feature map, equal (up to the order of the
    sums) to ``torchvision.ops.roi_align`` applied frame by frame. On the CPU in float32 or float64 it runs as the
    sparse product; otherwise it is ``torchvision_tube_roi_align``.

    Args:
        features: (B, C, T, h, w); boxes: B tensors (R_b, 4), x1, y1, x2, y2 in input pixels.
        output_size, spatial_scale, sampling_ratio, aligned: as ``torchvision.ops.roi_align``.
    Returns: (R, C, T, S, S), R = sum of R_b, in the order of ``boxes``; in the features' memory format
    (``channels_last_3d`` or contiguous).
    """
    kw = dict(output_size=output_size, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned)
    if features.device.type != "cpu" or features.dtype not in (torch.float32, torch.float64):
        return torchvision_tube_roi_align(features, boxes, **kw)
    b, c, t, h, w = features.shape
    flat = torch.cat(list(boxes))
    image = torch.cat([torch.full((len(bx),), i, dtype=torch.int64, device=flat.device) for i, bx in enumerate(boxes)])
    s = output_size
    with torch.no_grad():
        matrix = roi_align_matrix(flat, image, image_size=(h, w), num_images=b, dtype=features.dtype, **kw)
    dense = features.permute(0, 3, 4, 2, 1).reshape(b * h * w, t * c)  # rows (image, y, x), columns (t, channel)
    out = _SparseProduct.apply(matrix, dense).view(len(flat), s, s, t, c).permute(0, 4, 3, 1, 2)
    return out.contiguous(memory_format=_memory_format(features))


def torchvision_tube_roi_align(features: torch.Tensor, boxes: Sequence[torch.Tensor], *, output_size: int,
                               spatial_scale: float, sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """``tube_roi_align`` with ``torchvision.ops.roi_align`` on the (B * T) frames: the kernel used on CUDA, and
    the reference the tests and ``benchmarks/bench_roi_align.py`` compare the sparse product with."""
    b, c, t, h, w = features.shape
    frames = features.transpose(1, 2).reshape(b * t, c, h, w)  # frame b * T + t
    flat = torch.cat(list(boxes)).to(features.dtype)
    image = torch.cat([torch.full((len(bx),), i, device=flat.device) for i, bx in enumerate(boxes)])
    frame = (image[:, None] * t + torch.arange(t, device=flat.device)).reshape(-1, 1)  # RoI-major, then time
    rois = torch.cat([frame.to(flat.dtype), flat.repeat_interleave(t, dim=0)], dim=1)
    s = output_size
    out = roi_align(frames, rois, (s, s), spatial_scale, sampling_ratio, aligned)
    return out.view(len(flat), t, c, s, s).transpose(1, 2).contiguous(memory_format=_memory_format(features))
