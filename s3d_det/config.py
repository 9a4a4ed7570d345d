"""Default configuration (fvcore ``CfgNode``; leaves inherit with ``_BASE_``).

Every key has a comment. The config is only an adapter: modules take keyword arguments, and
``s3d_det.modeling.build`` translates these keys into them.
"""
from __future__ import annotations

from fvcore.common.config import CfgNode

__all__ = ["CfgNode", "get_cfg"]

_C = CfgNode()

_C.MODEL = CfgNode()
# Device to build the model on: "cpu" or "cuda".
_C.MODEL.DEVICE = "cpu"

# The 3D video network (s3d_det.modeling.S3DG).
_C.MODEL.BACKBONE_3D = CfgNode()
# One of i2d, i3d, bottom_heavy_i3d, top_heavy_i3d, s3d, s3dg.
_C.MODEL.BACKBONE_3D.VARIANT = "s3dg"
# Architecture preset of a checkpoint family ("", "torchvision", "milnce", "tfslim"); the keys below
# that are left at None take the preset's value (or the network default without a preset).
_C.MODEL.BACKBONE_3D.PRESET = ""
# Channel multiplier, and the floor of any layer's channel count under it.
_C.MODEL.BACKBONE_3D.WIDTH = 1.0
_C.MODEL.BACKBONE_3D.MIN_CHANNELS = 16
# Temporal kernel of the first 7x7 conv when it is temporal (None: preset or 3).
_C.MODEL.BACKBONE_3D.FIRST_TEMPORAL_KERNEL = None
# Stem: "full" (kt x 7 x 7), "separable" (1x7x7 + kt x1x1) or "space_to_depth" (None: preset or full).
_C.MODEL.BACKBONE_3D.STEM_STYLE = None
# First layer of the upper part of bottom_heavy_i3d / top_heavy_i3d (e.g. "mixed_4b").
_C.MODEL.BACKBONE_3D.SPLIT_AT = "mixed_4b"
# TensorFlow "SAME" padding (None: preset or False); needed for exact TF-slim / MIL-NCE weights.
_C.MODEL.BACKBONE_3D.SAME_PADDING = None
# BatchNorm epsilon and momentum (PyTorch convention; None: preset or 1e-3 / 1e-3).
_C.MODEL.BACKBONE_3D.BN_EPS = None
_C.MODEL.BACKBONE_3D.BN_MOMENTUM = None
# Stages 1..k of the backbone get no gradient and keep BatchNorm in eval mode (0: none).
_C.MODEL.BACKBONE_3D.FROZEN_STAGES = 0
# Layers whose outputs the backbone returns (e.g. ["mixed_4f"] for the detector's RoI features).
_C.MODEL.BACKBONE_3D.OUT_FEATURES = ["mixed_5c"]


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return _C.clone()
