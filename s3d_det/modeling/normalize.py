"""Input conventions owned by the model: frames come in one raw form, and each network normalises them itself.

The raw form, everywhere in the toolkit (datasets, video inference, the tools): RGB pixel values in [0, 255],
channels first, float32 (uint8 is accepted and converted): a keyframe batch (B, 3, H, W), a clip batch
(B, 3, T, H, W). A network's convention (channel order, mean, std) is a ``PixelNormalizer`` whose buffers are
set from the network's preset or from its converted checkpoint's meta, and are saved with the model's weights,
so that a checkpoint carries the convention it was trained with (as detectron2's ``pixel_mean``/``pixel_std``
and ``INPUT.FORMAT``, or torchvision's weights ``transforms``).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["PixelNormalizer", "IMAGENET_MEAN", "IMAGENET_STD", "DETECTRON2_PIXEL_MEAN", "CHANNEL_ORDERS"]

CHANNEL_ORDERS = ("RGB", "BGR")
# torchvision's ImageNet statistics ([0, 1] RGB), in pixel units.
IMAGENET_MEAN = tuple(255.0 * v for v in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * v for v in (0.229, 0.224, 0.225))
# detectron2's MODEL.PIXEL_MEAN for the MSRA (Caffe2) weights: BGR, [0, 255], std 1.
DETECTRON2_PIXEL_MEAN = (103.530, 116.280, 123.675)


class PixelNormalizer(nn.Module):
    """Raw frames -> a network's input: channels put in ``channel_order``, then ``(x - mean) / std`` per channel.

    Args:
        mean, std (C floats): per channel of the *reordered* input, in pixel units ([0, 255]); e.g. ImageNet's
            ``IMAGENET_MEAN``/``IMAGENET_STD``, or ``(127.5,) * 3`` both for TF-slim's [-1, 1]. C is the input's
            channel count: 3 for RGB, 2 for optical flow stored as x/y JPEGs (``(127.5, 127.5)`` both: I3D's
            [-1, 1] flow, +-bound px), 3 for ACT's 3-channel Brox flow.
        channel_order (str): "RGB" (the raw form's) or "BGR" (detectron2's MSRA weights; 3 channels only).

    Buffers ``mean`` (C,), ``std`` (C,) and ``bgr`` () are in the state dict: loading a checkpoint sets them.

    Forward: ``x`` (B, C, ...) raw frames in [0, 255] (RGB, or flow JPEG values), float or uint8 -> float32 of the
    same shape. With ``image_sizes`` (a (h, w) per sample), pixels past each sample's h rows and w columns (a
    batch's padding) are 0 after normalisation, as detectron2 and torchvision pad normalised images.
    """

    def __init__(self, *, mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (255.0, 255.0, 255.0),
                 channel_order: str = "RGB"):
        super().__init__()
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if not mean or len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std must be one value per input channel each, std positive; got mean {mean}, "
                             f"std {std}")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {channel_order!r}")
        if channel_order == "BGR" and len(mean) != 3:
            raise ValueError(f"channel_order 'BGR' needs 3 channels, got {len(mean)}")
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.register_buffer("bgr", torch.tensor(channel_order == "BGR"))

    @classmethod
    def from_range(cls, input_range: Tuple[float, float] = (0.0, 1.0), mean: Sequence[float] = (0.0, 0.0, 0.0),
                   std: Sequence[float] = (1.0, 1.0, 1.0), channel_order: str = "RGB") -> "PixelNormalizer":
        """The convention "pixels scaled linearly from [0, 255] to ``input_range``, then (v - mean) / std"
        (torchvision's and TF-slim's way of saying it), in pixel units: mean' = (mean - lo) 255 / (hi - lo),
        std' = std 255 / (hi - lo)."""
        lo, hi = (float(v) for v in input_range)
        if hi <= lo:
            raise ValueError(f"input_range must rise, got {input_range}")
        k = 255.0 / (hi - lo)
        return cls(mean=[(m - lo) * k for m in mean], std=[s * k for s in std], channel_order=channel_order)

    @property
    def channel_order(self) -> str:
        return "BGR" if bool(self.bgr) else "RGB"

    def convention(self) -> dict:
        """``{"channel_order", "mean", "std"}`` (floats rounded to 1e-4): for comparisons and messages."""
        return {"channel_order": self.channel_order, "mean": [round(float(v), 4) for v in self.mean],
                "std": [round(float(v), 4) for v in self.std]}

    def set_convention(self, other: "PixelNormalizer") -> None:
        """Takes ``other``'s buffers (another convention for the same network, with as many channels)."""
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"a convention for {other.mean.numel()} input channels cannot replace one for "
                             f"{self.mean.numel()} (an RGB network's for a flow network's, or the reverse)")
        with torch.no_grad():
            for name in ("mean", "std", "bgr"):
                getattr(self, name).copy_(getattr(other, name))

    def extra_repr(self) -> str:
        c = self.convention()
        return f"channel_order={c['channel_order']}, mean={c['mean']}, std={c['std']}"

    def forward(self, x: torch.Tensor, image_sizes: Optional[Sequence[Tuple[int, int]]] = None) -> torch.Tensor:
        channels = self.mean.numel()
        if x.dim() < 3 or x.shape[1] != channels:
            raise ValueError(f"expected raw frames (B, {channels}, ...), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        if bool(self.bgr):
            x = x.flip(1)
        view = (1, channels) + (1,) * (x.dim() - 2)
        x = (x - self.mean.view(view)) / self.std.view(view)
        if image_sizes is not None:
            height, width = x.shape[-2:]
            for i, (h, w) in enumerate(image_sizes):
                if h < height:
                    x[i, ..., int(h):, :] = 0
                if w < width:
                    x[i, ..., :, int(w):] = 0
        return x

    @classmethod
    def from_meta_2d(cls, meta: Mapping[str, object]) -> "PixelNormalizer":
        """The convention a converted 2D checkpoint records (``s3d_det.checkpoint.image``, ``Converted2D.meta``):
        ``input_format`` "RGB01-imagenet" (torchvision: ImageNet mean/std on [0, 1] RGB) or "BGR255" (detectron2:
        BGR in [0, 255] minus ``pixel_mean``, over ``pixel_std``; detectron2's defaults when the file has none)."""
        fmt = meta.get("input_format")
        if fmt == "RGB01-imagenet":
            return cls(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if fmt == "BGR255":
            return cls(mean=meta.get("pixel_mean") or DETECTRON2_PIXEL_MEAN,
                       std=meta.get("pixel_std") or (1.0, 1.0, 1.0), channel_order="BGR")
        raise ValueError(f"unknown 2D input_format {fmt!r}; expected 'RGB01-imagenet' or 'BGR255'")
