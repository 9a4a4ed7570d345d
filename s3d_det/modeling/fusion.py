"""Folding BatchNorm into the convolution before it, for inference.

In eval mode a BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one convolution with
weight ``w * g / sqrt(v + eps)`` and bias ``(b - m) * g / sqrt(v + eps) + beta``
(``torch.nn.utils.fusion.fuse_conv_bn_weights``). On the CPU every BatchNorm is a pass over its activations
(``FrozenBatchNorm2d``, the ResNet default for pretrained weights, several), which folding removes.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["fold_batchnorm"]

# (convolution, the norm right after it) attribute pairs, in torchvision's ResNet blocks and s3dg.ConvUnit
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "bn"), ("conv_t", "bn_t"))
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d, FrozenBatchNorm2d)


def _fold(conv: nn.Module, norm: nn.Module) -> None:
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                        norm.weight, norm.bias)
    layout = torch.channels_last if conv.weight.dim() == 4 else torch.channels_last_3d
    if conv.weight.is_contiguous() or not conv.weight.is_contiguous(memory_format=layout):
        layout = torch.contiguous_format  # keep the weight's memory format: oneDNN runs fastest in it
    conv.weight = nn.Parameter(weight.detach().contiguous(memory_format=layout), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach(), requires_grad=False)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (put in eval mode) in which every BatchNorm that directly follows a convolution is
    folded into it and replaced by ``nn.Identity``: torchvision ResNet blocks (``conv1``/``bn1`` ...,
    ``downsample`` = conv, norm) and S3D-G units (``conv``/``bn``, ``conv_t``/``bn_t``). The same function up to
    float rounding, for inference only: the copy's parameters do not train. ``model`` is not changed."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for conv_name, norm_name in _PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.modules.conv._ConvNd) and isinstance(norm, _NORMS):
                _fold(conv, norm)
                setattr(module, norm_name, nn.Identity())
        if isinstance(module, nn.Sequential) and len(module) >= 2:
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.modules.conv._ConvNd) and isinstance(module[i + 1], _NORMS):
                    _fold(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return model
