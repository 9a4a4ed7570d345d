"""The Inception-v1 3D network family of Xie et al., "Rethinking Spatiotemporal Feature Learning" (ECCV 2018).

One network, six variants. A variant only decides, per layer, whether the 3x3 convolutions are 2D
(1xkxk), full 3D (kt x k x k) or separable (1xkxk then kt x1x1), and whether feature gating follows:

========================  ==========================================================================
``i2d``                   I3D "deflated": every convolution 2D, pools and strides unchanged (time is still
                          subsampled by ``conv_1a``, ``pool_4a`` and ``pool_5a``); the all-2D end point of
                          both heavy sweeps, and the cheapest of the family
``i3d``                   full 3D convolutions everywhere
``bottom_heavy_i3d``      3D below ``split_at``, 2D from ``split_at`` on (``split_at="conv_1a"``: ``i2d``)
``top_heavy_i3d``         2D below ``split_at``, 3D from ``split_at`` on (``split_at="end"``: ``i2d``)
``s3d``                   separable convolutions everywhere
``s3dg``                  ``s3d`` plus feature gating after Conv_2c and on every Inception branch
========================  ==========================================================================

Layers (names are the keys of ``out_features`` and of the state dict)::

    conv_1a   7x7 conv, stride 2        (B, 64,  T/2, H/2,  W/2)
    pool_2a   max-pool 1x3x3, stride 1,2,2
    conv_2b   1x1 conv
    conv_2c   3x3 conv (+ gating)       (B, 192, T/2, H/4,  W/4)
    pool_3a   max-pool 1x3x3, stride 1,2,2
    mixed_3b, mixed_3c                  (B, 480, T/2, H/8,  W/8)
    pool_4a   max-pool 3x3x3, stride 2
    mixed_4b .. mixed_4f                (B, 832, T/4, H/16, W/16)
    pool_5a   max-pool 2x2x2, stride 2
    mixed_5b, mixed_5c                  (B, 1024, T/8, H/32, W/32)

(channels at ``width=1``; every variant has these temporal strides). Sizes are exact with ``same_padding=True``
(TensorFlow "SAME": ``ceil(n / stride)``); with PyTorch's symmetric padding they are
``floor((n - 1) / stride) + 1`` for the odd kernels and ``floor(n / 2)`` for the 2x2x2 pool.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.modality import FLOW_CONVENTION, MODALITY_CHANNELS
from .cfg_args import node_kwargs
from .normalize import PixelNormalizer
from .presets import get_preset

__all__ = [
    "VARIANTS",
    "STEM_STYLES",
    "LAYERS",
    "TEMPORAL_LAYERS",
    "SPLIT_END",
    "STAGES",
    "INCEPTION_V1_CHANNELS",
    "conv_kinds",
    "ConvUnit",
    "FeatureGating",
    "InceptionBlock3d",
    "MaxPool",
    "POOL_PADDINGS",
    "SpaceToDepth",
    "S3DG",
    "ClassifierHead",
    "VideoClassifier",
]

VARIANTS = ("i2d", "i3d", "bottom_heavy_i3d", "top_heavy_i3d", "s3d", "s3dg")
STEM_STYLES = ("separable", "full", "space_to_depth")

# Inception-v1 (GoogLeNet) channel table. Per block, output channels of: branch 0 (1x1), branch 1
# (1x1 reduce, 3x3), branch 2 (1x1 reduce, 3x3), branch 3 (max-pool then 1x1). Block output = sum of
# the 1st, 3rd, 5th and 6th numbers.
INCEPTION_V1_CHANNELS: Dict[str, Tuple[int, int, int, int, int, int]] = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}

# Layers in forward order, grouped in the five stages used by ``frozen_stages``.
STAGES: Dict[int, Tuple[str, ...]] = {
    1: ("conv_1a",),
    2: ("pool_2a", "conv_2b", "conv_2c"),
    3: ("pool_3a", "mixed_3b", "mixed_3c"),
    4: ("pool_4a", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"),
    5: ("pool_5a", "mixed_5b", "mixed_5c"),
}
LAYERS: Tuple[str, ...] = tuple(name for stage in STAGES.values() for name in stage)

# The layers whose k x k convolutions can be 2D, 3D or separable, in order; ``split_at`` of the two
# heavy variants names one of them, or ``SPLIT_END``: past the last block (TF-slim's ``temporal_conv_startat``
# naming no block), where top-heavy I3D has no 3D layer left.
TEMPORAL_LAYERS: Tuple[str, ...] = ("conv_1a", "conv_2c") + tuple(INCEPTION_V1_CHANNELS)
SPLIT_END = "end"


def conv_kinds(variant: str, split_at: str = "mixed_4b") -> Dict[str, str]:
    """The convolution kind of every layer in ``TEMPORAL_LAYERS`` for a variant.

    Returns:
        dict: layer name -> ``"2d"`` (1xkxk), ``"3d"`` (kt x k x k) or ``"separable"``
        (1xkxk then kt x1x1). ``conv_1a`` of a separable variant is reported as ``"separable"``; the
        stem style decides what it becomes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if split_at not in TEMPORAL_LAYERS + (SPLIT_END,):
        raise ValueError(
            f"split_at={split_at!r} is not a layer with temporal convolutions; "
            f"expected one of {', '.join(TEMPORAL_LAYERS)} or {SPLIT_END!r} (past the last block)"
        )
    split = len(TEMPORAL_LAYERS) if split_at == SPLIT_END else TEMPORAL_LAYERS.index(split_at)
    kinds = {}
    for i, name in enumerate(TEMPORAL_LAYERS):
        if variant == "i2d":
            kind = "2d"
        elif variant == "i3d":
            kind = "3d"
        elif variant == "bottom_heavy_i3d":
            kind = "3d" if i < split else "2d"
        elif variant == "top_heavy_i3d":
            kind = "2d" if i < split else "3d"
        else:
            kind = "separable"
        kinds[name] = kind
    return kinds


# ----------------------------------------------------------------------------------------------
# Padding: PyTorch's symmetric padding, or TensorFlow's "SAME" (needed to reproduce TF checkpoints).
# ----------------------------------------------------------------------------------------------
def _triple(v) -> Tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _out_len(n: int, kernel: int, stride: int, same: bool) -> int:
    """Output length of a conv or pool along one axis (0 when the input is too short)."""
    if n <= 0:
        return 0
    if same:
        return -(-n // stride)
    pad = (kernel - 1) // 2
    return (n + 2 * pad - kernel) // stride + 1 if n + 2 * pad >= kernel else 0


def _ceil_out_len(n: int, kernel: int, stride: int) -> int:
    """Output length of an unpadded pool in ceil mode (PyTorch's rule: a window starts inside the input)."""
    if n < kernel:
        return 0
    out = -(-(n - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= n else out


def _same_pad(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pads (B, C, T, H, W) as TensorFlow's "SAME": total ``max((ceil(n/s)-1)*s + k - n, 0)``, the
    larger half after."""
    pads = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def _static_padding(kernel, stride, same: bool) -> Optional[Tuple[int, int, int]]:
    """Padding that a plain layer can apply, or None when "SAME" needs input-dependent padding."""
    if not same:
        return tuple((k - 1) // 2 for k in kernel)
    if all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride)):
        return tuple(k // 2 for k in kernel)  # stride 1, odd kernel: "SAME" is symmetric
    return None


class _SameConv3d(nn.Conv3d):
    """Conv3d with TensorFlow "SAME" padding computed from the input size (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size, self.stride))


class _SameMaxPool3d(nn.MaxPool3d):
    """MaxPool3d with TensorFlow "SAME" padding: padded positions never win the max."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size, self.stride, value=-math.inf))


class _Conv3d(nn.Conv3d):
    """Conv3d that keeps the CPU's fast convolution path on one thread.

    On one CPU thread PyTorch sends a convolution whose spatial kernel is 1x1 (the separable ``kt x 1 x 1`` and
    the ``1 x 1 x 1`` ones) of a batch under 16 to its reference kernel rather than to oneDNN. For a 3D
    convolution that kernel unfolds the input, and it returns a contiguous tensor, so every later layer also
    leaves ``channels_last_3d`` (where, for one, the 3x3x3 max-pools are much faster). Here, in that
    case only, the same convolution runs as a 2D one over (T, H * W) (``kt x 1``, which oneDNN takes) or, for
    ``1 x 1 x 1``, as one matrix product over the channels. The same values up to float rounding, the same
    parameters; elsewhere (CUDA, several threads, larger batches, under ``torch.jit`` tracing, as FLOP
    counting does, and under ``torch.compile``/``torch.export``, where the batch of RoIs is a data-dependent size
    the test ``x.shape[0] >= 16`` cannot be decided on) it is ``nn.Conv3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.jit.is_tracing() or torch.compiler.is_compiling()
                or x.device.type != "cpu" or x.dim() != 5 or x.shape[0] >= 16 or torch.get_num_threads() > 1
                or self.kernel_size[1:] != (1, 1) or self.stride[1:] != (1, 1) or self.groups != 1
                or self.dilation != (1, 1, 1) or self.padding_mode != "zeros" or self.padding[1:] != (0, 0)):
            return super().forward(x)
        b, c, t, h, w = x.shape
        if self.kernel_size[0] == 1 and self.stride[0] == 1 and self.padding[0] == 0:
            weight = self.weight.view(self.out_channels, c)
            if x.is_contiguous(memory_format=torch.channels_last_3d):  # (B, T, H, W, C) rows: stays channels-last
                return F.linear(x.permute(0, 2, 3, 4, 1), weight, self.bias).permute(0, 4, 1, 2, 3)
            y = torch.matmul(weight, x.reshape(b, c, t * h * w))  # stays contiguous
            return (y if self.bias is None else y + self.bias[:, None]).view(b, self.out_channels, t, h, w)
        y = F.conv2d(x.reshape(b, c, t, h * w), self.weight.view(*self.weight.shape[:3], 1), self.bias,
                     (self.stride[0], 1), (self.padding[0], 0))
        return y.view(b, self.out_channels, y.shape[2], h, w)


def _conv3d(cin: int, cout: int, kernel, stride, same: bool, bias: bool) -> nn.Conv3d:
    kernel, stride = _triple(kernel), _triple(stride)
    padding = _static_padding(kernel, stride, same)
    if padding is None:
        return _SameConv3d(cin, cout, kernel, stride, padding=0, bias=bias)
    return _Conv3d(cin, cout, kernel, stride, padding=padding, bias=bias)


POOL_PADDINGS = ("symmetric", "same", "fixed_same")


class MaxPool(nn.Module):
    """Max pooling with one of three padding rules.

    Args:
        kernel_size, stride: (t, h, w).
        padding (str): ``"symmetric"``: ``(k - 1) // 2`` on both sides (PyTorch, torchvision);
            ``"same"``: TensorFlow "SAME", output ``ceil(n / s)``; ``"fixed_same"``: MIL-NCE's pools, a
            fixed ``max(k - s, 0)`` split as "SAME" would for a length divisible by ``s`` (smaller half
            before), then ceil mode. "same" and "fixed_same" agree when every pooled length is divisible
            by the stride. Padded positions never win the max.
    """

    def __init__(self, kernel_size, stride, *, padding: str = "symmetric"):
        super().__init__()
        if padding not in POOL_PADDINGS:
            raise ValueError(f"unknown pool padding {padding!r}; expected one of {', '.join(POOL_PADDINGS)}")
        self.kernel_size, self.stride = _triple(kernel_size), _triple(stride)
        self.padding = padding
        self.fixed_pads = None
        static = _static_padding(self.kernel_size, self.stride, padding != "symmetric")
        if padding == "fixed_same" and static is None:
            pads = []
            for k, s in zip(reversed(self.kernel_size), reversed(self.stride)):
                total = max(k - s, 0)
                pads += [total // 2, total - total // 2]
            self.fixed_pads = tuple(pads)
            self.pool = nn.MaxPool3d(self.kernel_size, self.stride, ceil_mode=True)
        elif static is None:
            self.pool = _SameMaxPool3d(self.kernel_size, self.stride)
        else:
            self.pool = nn.MaxPool3d(self.kernel_size, self.stride, padding=static)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_pads is not None:
            x = F.pad(x, self.fixed_pads, value=-math.inf)
        return self.pool(x)

    def output_size(self, size: Sequence[int]) -> Tuple[int, int, int]:
        if self.fixed_pads is None:
            same = self.padding != "symmetric"
            return tuple(_out_len(n, k, s, same) for n, k, s in zip(size, self.kernel_size, self.stride))
        return tuple(_ceil_out_len(n + max(k - s, 0), k, s) for n, k, s in zip(size, self.kernel_size, self.stride))


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------
class FeatureGating(nn.Module):
    """S3D-G feature gating: ``y = sigmoid(W @ mean_THW(x) + b) * x``, one weight per channel.

    Args:
        channels (int): C.
        bias (bool): learn ``b`` (MIL-NCE has it; the TF-slim S3D-G has not).

    Attribute ``temporal_window`` (int or None): None (the default, the paper's gate) pools over all of T; k
    gives each time step t its own gate, pooled over steps t - k // 2 .. t - k // 2 + k - 1 (those inside the
    input), so each step of a long input is gated as a k-step clip around it would be
    (``S3DG.set_gating_window``, for the shared video inference).

    Shapes: x (B, C, T, H, W) -> (B, C, T, H, W).
    """

    def __init__(self, channels: int, *, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(channels, channels, bias=bias)
        self.temporal_window: Optional[int] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.temporal_window
        if k is None:
            weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
            return x * weights[:, :, None, None, None]
        steps = x.float().mean(dim=(3, 4))  # (B, C, T)
        csum = F.pad(steps.cumsum(dim=2), (1, 0))
        start = torch.arange(x.shape[2], device=x.device) - k // 2
        lo, hi = start.clamp(0, x.shape[2]), (start + k).clamp(0, x.shape[2])
        pooled = (csum[:, :, hi] - csum[:, :, lo]) / (hi - lo)
        weights = torch.sigmoid(self.fc(pooled.transpose(1, 2).to(x.dtype))).transpose(1, 2)  # (B, C, T)
        return x * weights[:, :, :, None, None]


class SpaceToDepth(nn.Module):
    """MIL-NCE's 3D space-to-depth: (B, C, T, H, W) -> (B, 8C, T/2, H/2, W/2).

    Output channel ``((dt * 2 + dh) * 2 + dw) * C + c`` holds input ``(c, 2t + dt, 2h + dh, 2w + dw)``.
    T, H and W must be even.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
        return x.reshape(b, 8 * c, t // 2, h // 2, w // 2)

    def output_size(self, size: Sequence[int]) -> Tuple[int, int, int]:
        return tuple(n // 2 if n % 2 == 0 else 0 for n in size)


class ConvUnit(nn.Module):
    """Conv -> BatchNorm -> ReLU, optionally as a separable pair and followed by feature gating.

    Args:
        in_channels, out_channels (int): C_in, C_out.
        kernel_size (int): spatial kernel k.
        kind (str): ``"2d"`` (1 x k x k), ``"3d"`` (kt x k x k) or ``"separable"`` (1 x k x k conv,
            BN, ReLU, then kt x 1 x 1 conv, BN, ReLU).
        temporal_kernel (int): kt (ignored for ``"2d"``).
        stride (int): spatial stride; temporal_stride (int): temporal stride.
        same_padding (bool): TensorFlow "SAME" padding.
        temporal_norm (bool): separable only: BN after the temporal conv (True: torchvision, MIL-NCE);
            False gives the TF-slim layout, a temporal conv with a bias and no BN.
        gating (bool): feature gating on the output; gating_bias (bool): its bias.
        space_to_depth (bool): apply ``SpaceToDepth`` before the conv (MIL-NCE's stem); then
            ``in_channels`` is 8 x the clip's channels.
        bn_eps, bn_momentum (float): BatchNorm settings (PyTorch momentum = 1 - TF decay).

    Shapes: x (B, C_in, T, H, W) -> (B, C_out, T', H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        kind: str = "2d",
        temporal_kernel: int = 1,
        stride: int = 1,
        temporal_stride: int = 1,
        same_padding: bool = False,
        temporal_norm: bool = True,
        gating: bool = False,
        gating_bias: bool = True,
        space_to_depth: bool = False,
        bn_eps: float = 1e-3,
        bn_momentum: float = 1e-3,
    ):
        super().__init__()
        if kind not in ("2d", "3d", "separable"):
            raise ValueError(f"unknown conv kind {kind!r}; expected '2d', '3d' or 'separable'")
        kt = 1 if kind == "2d" else temporal_kernel
        separable = kind == "separable" and kt > 1
        k = kernel_size
        self.same_padding = same_padding
        self.space_to_depth = SpaceToDepth() if space_to_depth else None
        first_kernel = (1, k, k) if separable else (kt, k, k)
        first_stride = (1, stride, stride) if separable else (temporal_stride, stride, stride)
        self.conv = _conv3d(in_channels, out_channels, first_kernel, first_stride, same_padding, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self._convs = [(first_kernel, first_stride)]
        if separable:
            t_kernel, t_stride = (kt, 1, 1), (temporal_stride, 1, 1)
            self.conv_t = _conv3d(out_channels, out_channels, t_kernel, t_stride, same_padding, bias=not temporal_norm)
            self.bn_t = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=bn_momentum) if temporal_norm else None
            self._convs.append((t_kernel, t_stride))
        else:
            self.conv_t = None
        self.gate = FeatureGating(out_channels, bias=gating_bias) if gating else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.space_to_depth is not None:
            x = self.space_to_depth(x)
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        if self.conv_t is not None:
            x = self.conv_t(x)
            if self.bn_t is not None:
                x = self.bn_t(x)
            x = F.relu(x, inplace=True)
        if self.gate is not None:
            x = self.gate(x)
        return x

    def output_size(self, size: Sequence[int]) -> Tuple[int, int, int]:
        if self.space_to_depth is not None:
            size = self.space_to_depth.output_size(size)
        for kernel, stride in self._convs:
            size = tuple(_out_len(n, k, s, self.same_padding) for n, k, s in zip(size, kernel, stride))
        return size


class InceptionBlock3d(nn.Module):
    """An Inception-v1 block in 3D: four branches concatenated on channels.

    Branch 0: 1x1. Branch 1 and 2: 1x1 reduce, then a 3x3 ``ConvUnit`` of the given kind. Branch 3:
    max-pool 3x3x3, stride 1, then 1x1 (the pool whatever the kind, as TF-slim's block: a 2D block is
    I3D's with its convolutions deflated, pools unchanged). The three 1x1 convolutions that read the
    block input (branch 0 and the two reduces) run as one convolution, ``reduce``, whose output is
    split: the same function as three convolutions, and one matrix product instead of three.

    Args:
        in_channels (int): C_in.
        channels (tuple): six ints, a row of ``INCEPTION_V1_CHANNELS``.
        kind (str): kind of the 3x3 convolutions (see ``ConvUnit``).
        temporal_kernel (int): kt of the 3x3 convolutions.
        gating (bool): feature gating on each of the four branch outputs.
        Others as in ``ConvUnit``.

    Shapes: x (B, C_in, T, H, W) -> (B, c0 + c2 + c4 + c5, T, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        *,
        kind: str,
        temporal_kernel: int = 3,
        gating: bool = False,
        gating_bias: bool = True,
        same_padding: bool = False,
        temporal_norm: bool = True,
        bn_eps: float = 1e-3,
        bn_momentum: float = 1e-3,
    ):
        super().__init__()
        b0, b1_reduce, b1, b2_reduce, b2, b3 = channels
        norm = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        conv3x3 = dict(
            kind=kind, temporal_kernel=temporal_kernel, same_padding=same_padding, temporal_norm=temporal_norm, **norm
        )
        self.splits = (b0, b1_reduce, b2_reduce)
        self.reduce = ConvUnit(in_channels, sum(self.splits), 1, **norm)
        self.branch1 = ConvUnit(b1_reduce, b1, 3, **conv3x3)
        self.branch2 = ConvUnit(b2_reduce, b2, 3, **conv3x3)
        self.pool = MaxPool((3, 3, 3), 1, padding="same" if same_padding else "symmetric")
        self.branch3 = ConvUnit(in_channels, b3, 1, **norm)
        self.gates = (
            nn.ModuleList(FeatureGating(c, bias=gating_bias) for c in (b0, b1, b2, b3)) if gating else None
        )
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, x2 = self.reduce(x).split(self.splits, dim=1)
        outs = [x0, self.branch1(x1), self.branch2(x2), self.branch3(self.pool(x))]
        if self.gates is not None:
            outs = [gate(out) for gate, out in zip(self.gates, outs)]
        return torch.cat(outs, dim=1)

    def output_size(self, size: Sequence[int]) -> Tuple[int, int, int]:
        return tuple(size)


@dataclass(frozen=True)
class FeatureInfo:
    """What a layer outputs: channels, and its stride (t, h, w) in input frames and pixels."""

    channels: int
    stride: Tuple[int, int, int]


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
def _check_arguments(*, stem_style: str, width: float, temporal_kernel: int, same_padding: bool,
                     frozen_stages: int, out_features: Tuple[str, ...]) -> None:
    """ValueError naming the argument unless ``S3DG``'s arguments are consistent (``conv_kinds`` checks
    ``variant`` and ``split_at``)."""
    if stem_style not in STEM_STYLES:
        raise ValueError(f"unknown stem_style {stem_style!r}; expected one of {', '.join(STEM_STYLES)}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    if temporal_kernel % 2 == 0 and not same_padding:
        raise ValueError(
            f"temporal_kernel={temporal_kernel} is even: with symmetric padding the Inception branches "
            "would shorten T unequally; use an odd kernel or same_padding=True"
        )
    if not 0 <= frozen_stages <= len(STAGES):
        raise ValueError(f"frozen_stages must be in 0..{len(STAGES)}, got {frozen_stages}")
    unknown = [name for name in out_features if name not in LAYERS]
    if not out_features or unknown:
        raise ValueError(f"out_features {list(out_features)} must be layers among {', '.join(LAYERS)}")


class S3DG(nn.Module):
    """The Inception-v1 3D backbone family (I2D, I3D, bottom/top-heavy I3D, S3D, S3D-G).

    Args:
        variant (str): one of ``VARIANTS``.
        width (float): channel multiplier; every layer gets ``max(int(c * width), min_channels)``.
        min_channels (int): floor of the channel count under ``width`` (TF-slim's ``min_depth``).
        first_temporal_kernel (int): kt of the first (7x7) convolution when it is temporal.
        stem_style (str): how a temporal first convolution is built: ``"full"`` (one kt x 7 x 7 conv,
            as TF-slim S3D-G), ``"separable"`` (1x7x7 then kt x1x1, as torchvision's S3D) or
            ``"space_to_depth"`` (MIL-NCE: 2x2x2 space-to-depth then a 2x4x4 conv, always "SAME"
            padded; needs even T, H, W).
        split_at (str): first layer of the upper part for ``bottom_heavy_i3d`` / ``top_heavy_i3d``;
            one of ``TEMPORAL_LAYERS``, or ``SPLIT_END`` (past the last block).
        temporal_kernel (int): kt of the 3x3 convolutions in temporal layers.
        same_padding (bool): TensorFlow "SAME" padding (exact conversion of TF checkpoints).
        pool_padding (str, optional): padding of the stride-2 max-pools (see ``MaxPool``); by default
            ``"same"`` with ``same_padding``, else ``"symmetric"``.
        temporal_norm (bool): BN after the temporal conv of a separable pair (False: TF-slim's
            temporal conv with bias).
        gating_bias (bool): a bias in feature gating (S3D-G only).
        bn_eps, bn_momentum (float): BatchNorm settings.
        frozen_stages (int): stages 1..k (see ``STAGES``) get no gradient and keep BN in eval mode.
        out_features (sequence of str): layers whose outputs ``forward`` returns; the forward stops
            after the last of them.
        channels_last (bool): run in ``torch.channels_last_3d`` memory format: conv weights are stored
            in it and the input is converted once, so every layer and every output stays in it. The
            same values, and much faster convolutions on CPU (oneDNN) and with cuDNN.
        in_channels (int): C, the clip's channels: 3 for RGB (and ACT's 3-channel Brox flow), 2 for optical flow
            stored as x/y JPEGs (``s3d_det.data.flow``). Only ``conv_1a`` depends on it.
        pixel_mean, pixel_std (C floats): the input convention, in pixel units (``input_norm``, a
            ``PixelNormalizer``); the default (0, 255) is [0, 1]. Presets set their own
            (``s3d_det.modeling.presets``: TF-slim's [-1, 1] is 127.5, 127.5); a single value is used for every
            channel.

    Input: raw clip (B, C, T, H, W) in [0, 255] (RGB or flow JPEG values; ``s3d_det.modeling.normalize``), float
    or uint8; optional
    ``image_sizes`` (a (h, w) per clip: the rest is a batch's padding, 0 after normalisation). Output: dict layer
    name -> (B, C, T', H', W'); ``feature_info[name]`` gives C and the stride of each layer.
    """

    def __init__(
        self,
        variant: str = "s3dg",
        *,
        width: float = 1.0,
        min_channels: int = 16,
        first_temporal_kernel: int = 3,
        stem_style: str = "full",
        split_at: str = "mixed_4b",
        temporal_kernel: int = 3,
        same_padding: bool = False,
        pool_padding: Optional[str] = None,
        temporal_norm: bool = True,
        gating_bias: bool = True,
        bn_eps: float = 1e-3,
        bn_momentum: float = 1e-3,
        frozen_stages: int = 0,
        out_features: Sequence[str] = ("mixed_5c",),
        channels_last: bool = True,
        in_channels: int = 3,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (255.0, 255.0, 255.0),
    ):
        super().__init__()
        out_features = (out_features,) if isinstance(out_features, str) else tuple(out_features)
        kinds = conv_kinds(variant, split_at)
        _check_arguments(stem_style=stem_style, width=width, temporal_kernel=temporal_kernel,
                         same_padding=same_padding, frozen_stages=frozen_stages, out_features=out_features)
        self.variant = variant
        self.channels_last = channels_last
        self.out_features = out_features
        self.frozen_stages = frozen_stages
        self.stem_style = stem_style
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int (3: RGB, 2: x/y flow), got {in_channels!r}")
        self.in_channels = in_channels
        pixel_mean, pixel_std = ([float(v) for v in values] for values in (pixel_mean, pixel_std))
        if len(pixel_mean) == 1 or len(set(pixel_mean)) == 1:  # one value for every channel (presets' 127.5)
            pixel_mean = pixel_mean[:1] * in_channels
        if len(pixel_std) == 1 or len(set(pixel_std)) == 1:
            pixel_std = pixel_std[:1] * in_channels
        if len(pixel_mean) != in_channels or len(pixel_std) != in_channels:
            raise ValueError(f"pixel_mean and pixel_std need one value per input channel ({in_channels}) or one "
                             f"for all; got {pixel_mean} and {pixel_std}")
        self.input_norm = PixelNormalizer(mean=pixel_mean, std=pixel_std)

        def ch(c: int) -> int:
            return max(int(c * width), min_channels)

        common = dict(same_padding=same_padding, temporal_norm=temporal_norm, bn_eps=bn_eps, bn_momentum=bn_momentum)
        pool_padding = pool_padding or ("same" if same_padding else "symmetric")
        gating = dict(gating=variant == "s3dg", gating_bias=gating_bias)
        self._build_stem(kinds, ch(64), stem_style=stem_style, first_temporal_kernel=first_temporal_kernel,
                         common=common)
        self._build_stages(kinds, ch, pool_padding=pool_padding, temporal_kernel=temporal_kernel,
                           common={**common, **gating})

        self.feature_info = self._feature_info()
        self._last_layer = max(LAYERS.index(name) for name in out_features)
        self._init_weights()
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)  # conv weights too, so every layer stays in it
        self._freeze()

    # Config keys of ``MODEL.BACKBONE_3D`` that are ``S3DG`` keyword arguments (``cfg_args.node_kwargs``: FOO is
    # ``foo``; None keeps the preset's or the default). VARIANT and PRESET are read by ``from_config`` itself,
    # FEATURE by the detector.
    CONFIG_KEYS = ("WIDTH", "MIN_CHANNELS", "FIRST_TEMPORAL_KERNEL", "STEM_STYLE", "SPLIT_AT", "SAME_PADDING",
                   "BN_EPS", "BN_MOMENTUM", "FROZEN_STAGES", "OUT_FEATURES")

    @classmethod
    def from_config(cls, cfg, **overrides) -> "S3DG":
        """The backbone ``cfg.MODEL.BACKBONE_3D`` describes, for clips of ``cfg.INPUT.MODALITY`` (its channels; a flow
        network without a preset takes I3D's flow convention, [0, 255] -> [-1, 1]): ``VARIANT``; ``PRESET`` (if set)
        supplies the
        architecture details and input convention of its checkpoint family (``s3d_det.modeling.presets``); the
        node's other non-None keys (``CONFIG_KEYS``) override them, and ``overrides`` (keyword arguments of
        ``S3DG``, e.g. ``out_features``) override those."""
        node = cfg.MODEL.BACKBONE_3D
        kwargs = get_preset(node.PRESET).s3dg_kwargs() if node.PRESET else {}
        modality = cfg.INPUT.MODALITY
        if modality not in MODALITY_CHANNELS:
            raise ValueError(f"INPUT.MODALITY must be one of {', '.join(MODALITY_CHANNELS)}, got {modality!r}")
        if modality != "rgb":  # a flow network: its channels, and I3D's [-1, 1] unless a preset says otherwise
            kwargs["in_channels"] = MODALITY_CHANNELS[modality]
            if not node.PRESET:
                kwargs.update(FLOW_CONVENTION)
            elif len(set(kwargs.get("pixel_mean", (0.0,)))) > 1 or len(set(kwargs.get("pixel_std", (1.0,)))) > 1:
                raise ValueError(f"MODEL.BACKBONE_3D.PRESET {node.PRESET!r} normalises RGB with per-channel "
                                 f"statistics; INPUT.MODALITY {modality!r} needs one for flow (no preset: I3D's "
                                 f"[-1, 1], or a preset with one mean and std, e.g. 'tfslim')")
        kwargs.update(node_kwargs(node, cls.CONFIG_KEYS))
        kwargs.update(overrides)
        return cls(node.VARIANT, **kwargs)

    # -- construction ------------------------------------------------------------------------
    def _build_stem(self, kinds: Dict[str, str], channels: int, *, stem_style: str, first_temporal_kernel: int,
                    common: dict) -> None:
        """Stage 1, ``conv_1a``: the 7x7 stride-2 convolution, (B, C, T, H, W) -> (B, channels, T/2, H/2, W/2);
        2D for a variant whose ``conv_1a`` is 2D, else built as ``stem_style`` says."""
        stem_kind = kinds["conv_1a"]
        if stem_kind != "2d":  # a temporal stem is built as stem_style says
            stem_kind = "separable" if stem_style == "separable" else "3d"
        if stem_style == "space_to_depth":
            if kinds["conv_1a"] == "2d":
                raise ValueError(f"stem_style='space_to_depth' needs a temporal stem; variant {self.variant!r} "
                                 "has a 2D one")
            self.conv_1a = ConvUnit(
                8 * self.in_channels, channels, 4, kind="3d", temporal_kernel=2, space_to_depth=True,
                **{**common, "same_padding": True}
            )
        else:
            self.conv_1a = ConvUnit(
                self.in_channels, channels, 7, kind=stem_kind, temporal_kernel=first_temporal_kernel,
                stride=2, temporal_stride=2, **common,
            )

    def _build_stages(self, kinds: Dict[str, str], ch, *, pool_padding: str, temporal_kernel: int,
                      common: dict) -> None:
        """Stages 2-5 (``pool_2a`` .. ``mixed_5c``) in forward order: the max-pools, ``conv_2b``/``conv_2c``, and
        the Inception blocks with ``ch(c)`` channels for each ``c`` of ``INCEPTION_V1_CHANNELS``. ``common``:
        the ``ConvUnit`` settings shared by every layer (padding, BN, gating)."""
        unit = {k: v for k, v in common.items() if k not in ("gating", "gating_bias")}
        self.pool_2a = MaxPool((1, 3, 3), (1, 2, 2), padding=pool_padding)
        self.conv_2b = ConvUnit(ch(64), ch(64), 1, **unit)
        self.conv_2c = ConvUnit(ch(64), ch(192), 3, kind=kinds["conv_2c"], temporal_kernel=temporal_kernel, **common)
        channels = ch(192)
        pools = {
            "pool_3a": ((1, 3, 3), (1, 2, 2)),
            "pool_4a": ((3, 3, 3), (2, 2, 2)),
            "pool_5a": ((2, 2, 2), (2, 2, 2)),
        }
        for name in LAYERS[LAYERS.index("pool_3a"):]:
            if name in pools:
                kernel, stride = pools[name]
                setattr(self, name, MaxPool(kernel, stride, padding=pool_padding))
                continue
            block = InceptionBlock3d(
                channels, [ch(c) for c in INCEPTION_V1_CHANNELS[name]], kind=kinds[name],
                temporal_kernel=temporal_kernel, **common,
            )
            setattr(self, name, block)
            channels = block.out_channels

    # -- structure ---------------------------------------------------------------------------
    def layers(self, first: str = LAYERS[0], last: str = LAYERS[-1]) -> List[Tuple[str, nn.Module]]:
        """(name, module) of the layers from ``first`` to ``last`` inclusive, in forward order."""
        for name in (first, last):
            if name not in LAYERS:
                raise ValueError(f"unknown layer {name!r}; expected one of {', '.join(LAYERS)}")
        return [(name, getattr(self, name)) for name in LAYERS[LAYERS.index(first): LAYERS.index(last) + 1]]

    def _feature_info(self) -> Dict[str, FeatureInfo]:
        info, channels, stride = {}, 3, [1, 1, 1]
        for name, module in self.layers():
            if isinstance(module, MaxPool):
                stride = [s * m for s, m in zip(stride, module.stride)]
            elif isinstance(module, ConvUnit):
                if module.space_to_depth is not None:
                    stride = [2 * s for s in stride]
                for _, conv_stride in module._convs:
                    stride = [s * m for s, m in zip(stride, conv_stride)]
                channels = module.bn.num_features
            else:
                channels = module.out_channels
            info[name] = FeatureInfo(channels, tuple(stride))
        return info

    def output_size(self, size: Sequence[int], last: Optional[str] = None) -> Tuple[int, int, int]:
        """(T', H', W') after layer ``last`` (default: the last of ``out_features``) for input (T, H, W);
        a 0 means the input is too small."""
        size = tuple(size)
        for _, module in self.layers(last=last or LAYERS[self._last_layer]):
            size = module.output_size(size)
        return size

    def min_input_size(self, last: Optional[str] = None) -> Tuple[int, int, int]:
        """The smallest (T, H, W) that gives a non-empty output at layer ``last``."""
        result = []
        for axis in range(3):
            n = 1
            while True:
                size = [64, 64, 64]
                size[axis] = n
                if self.output_size(size, last)[axis] > 0:
                    break
                n += 1
            result.append(n)
        return tuple(result)

    def set_gating_window(self, clip_length: Optional[int]) -> None:
        """Makes the feature gates of the layers ``forward`` runs pool, around each time step, over as many steps
        as a ``clip_length``-frame clip has at their layer (``FeatureGating.temporal_window``): a long input is
        then gated step by step as clips of that length are. None restores the paper's gate over the whole input."""
        for name, module in self.layers(last=LAYERS[self._last_layer]):
            steps = None if clip_length is None else self.output_size((clip_length, 224, 224), last=name)[0]
            for gate in module.modules():
                if isinstance(gate, FeatureGating):
                    gate.temporal_window = steps

    # -- init, freezing ----------------------------------------------------------------------
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _frozen_modules(self) -> Iterable[nn.Module]:
        for stage in range(1, self.frozen_stages + 1):
            for name in STAGES[stage]:
                yield getattr(self, name)

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "S3DG":
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    # -- forward -----------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raises ValueError unless x is a (B, C, T, H, W) clip (C = ``in_channels``) large enough for
        ``out_features``."""
        c = self.in_channels
        if x.dim() != 5:
            raise ValueError(f"expected a clip of shape (B, {c}, T, H, W), got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != c:
            raise ValueError(
                f"expected {c} input channels (B, {c}, T, H, W), got {x.shape[1]} "
                f"in a tensor of shape {tuple(x.shape)}"
            )
        size = tuple(x.shape[2:])
        if self.stem_style == "space_to_depth" and any(n % 2 for n in size):
            raise ValueError(f"stem_style='space_to_depth' needs even T, H, W; got (T, H, W) = {size}")
        if min(self.output_size(size)) <= 0:
            last = LAYERS[self._last_layer]
            raise ValueError(
                f"clip of (T, H, W) = {size} is too small for {self.variant} up to {last}: "
                f"it needs at least (T, H, W) = {self.min_input_size()}"
            )

    def forward(self, x: torch.Tensor, image_sizes: Optional[Sequence[Tuple[int, int]]] = None
                ) -> Dict[str, torch.Tensor]:
        self.check_input(x)
        x = self.input_norm(x, image_sizes)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        outputs = {}
        for name, module in self.layers(last=LAYERS[self._last_layer]):
            x = module(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs


class ClassifierHead(nn.Module):
    """Average pool -> dropout -> 1x1x1 conv -> mean over the remaining positions.

    Args:
        in_channels (int): C.
        num_classes (int): K.
        dropout (float): dropout probability before the projection.
        pool_size (tuple or None): (t, h, w) of the stride-1 average pool, each clamped to the input
            size (as TF-slim's reduced kernel); None pools globally.

    Shapes: features (B, C, T', H', W') -> logits (B, K).
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.2, pool_size=(2, 7, 7)):
        super().__init__()
        self.pool_size = None if pool_size is None else _triple(pool_size)
        self.dropout = nn.Dropout(p=dropout)
        self.proj = nn.Conv3d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_size is None:
            x = x.mean(dim=(2, 3, 4), keepdim=True)
        else:
            x = F.avg_pool3d(x, tuple(min(p, n) for p, n in zip(self.pool_size, x.shape[2:])), stride=1)
        return self.proj(self.dropout(x)).mean(dim=(2, 3, 4))


class VideoClassifier(nn.Module):
    """A clip classifier: a backbone's ``mixed_5c`` through a ``ClassifierHead``.

    Input: raw clip (B, 3, T, H, W), RGB in [0, 255] (the backbone normalises it). Output: logits
    (B, num_classes); softmax is left to the caller. The trainer's batches also work: a dict with ``"clip"``
    (B, 3, T, H, W) and, in training, ``"label"`` (B,) int64 gives ``{"loss_cls": cross-entropy}`` in training
    mode and the logits in eval mode.
    """

    def __init__(self, backbone: S3DG, num_classes: int, *, dropout: float = 0.2, pool_size=(2, 7, 7)):
        super().__init__()
        if backbone.out_features != ("mixed_5c",):
            raise ValueError(f"the classifier reads mixed_5c; the backbone returns {list(backbone.out_features)}")
        self.backbone = backbone
        self.head = ClassifierHead(
            backbone.feature_info["mixed_5c"].channels, num_classes, dropout=dropout, pool_size=pool_size
        )

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "VideoClassifier":
        """The backbone of ``cfg.MODEL.BACKBONE_3D`` (up to mixed_5c, whatever its OUT_FEATURES) and a head of
        ``cfg.MODEL.CLS_HEAD`` for ``num_classes`` classes: global average pooling, as every peer's video head."""
        backbone = S3DG.from_config(cfg, out_features=("mixed_5c",))
        return cls(backbone, num_classes, dropout=cfg.MODEL.CLS_HEAD.DROPOUT, pool_size=None)

    def forward(self, x):
        if isinstance(x, Mapping):
            logits = self.head(self.backbone(x["clip"])["mixed_5c"])
            if not self.training:
                return logits
            return {"loss_cls": F.cross_entropy(logits.float(), x["label"])}
        return self.head(self.backbone(x)["mixed_5c"])
