"""Entry points that build the networks from keyword arguments, a preset, or a config.

Each network builds itself from keyword arguments (``S3DG(...)``, ``TubeRoIHead(...)``, ``ActionDetector(...)``)
or from a config (``S3DG.from_config(cfg)``, ``TubeRoIHead.from_config(cfg, ...)``,
``ActionDetector.from_config(cfg, num_classes=...)``; each reads its own node, see ``cfg_args``). The functions
here are the short names tools and tests use.
"""
from __future__ import annotations

from typing import Any, Optional

from .detector import ActionDetector
from .presets import get_preset
from .s3dg import S3DG, VideoClassifier

_HEAD_KEYS = ("dropout", "pool_size")


def build_video_backbone(variant: str = "s3dg", *, preset: Optional[str] = None, **kwargs: Any) -> S3DG:
    """An ``S3DG`` backbone.

    Args:
        variant (str): one of ``s3d_det.modeling.VARIANTS``.
        preset (str, optional): ``"torchvision"``, ``"milnce"`` or ``"tfslim"``: the architecture details
            and the input convention (``pixel_mean``/``pixel_std``) of that checkpoint family (see
            ``s3d_det.modeling.presets``); ``kwargs`` override them.
        **kwargs: keyword arguments of ``S3DG``.

    Input raw (B, 3, T, H, W), RGB in [0, 255]; output a dict of ``out_features``.
    """
    arch = get_preset(preset).s3dg_kwargs() if preset else {}
    arch.update(kwargs)
    return S3DG(variant, **arch)


def build_video_classifier(
    variant: str = "s3dg", num_classes: int = 400, *, preset: Optional[str] = None, **kwargs: Any
) -> VideoClassifier:
    """A clip classifier: backbone up to ``mixed_5c``, then average pool, dropout, 1x1x1 conv, mean.

    Args:
        variant (str): one of ``s3d_det.modeling.VARIANTS``.
        num_classes (int): K.
        preset (str, optional): as in ``build_video_backbone``; also sets the head's pooling and dropout.
        **kwargs: ``dropout`` and ``pool_size`` go to the head, the rest to ``S3DG``.

    Input (B, 3, T, H, W); output logits (B, K).
    """
    head = dict(get_preset(preset).head) if preset else {}
    head.update({k: kwargs.pop(k) for k in _HEAD_KEYS if k in kwargs})
    if "out_features" in kwargs:
        raise ValueError("build_video_classifier reads mixed_5c; use build_video_backbone for other out_features")
    backbone = build_video_backbone(variant, preset=preset, **kwargs)
    return VideoClassifier(backbone, num_classes, **head)


def build_video_backbone_from_cfg(cfg) -> S3DG:
    """The backbone that ``cfg.MODEL.BACKBONE_3D`` describes (``S3DG.from_config``)."""
    return S3DG.from_config(cfg)


def build_action_detector_from_cfg(cfg, num_classes: int) -> ActionDetector:
    """The ``ActionDetector`` that ``cfg.MODEL`` describes, randomly initialised (``ActionDetector.from_config``;
    ``num_classes`` C actions, used when ``MODEL.ROI_HEAD.NUM_CLASSES`` is 0)."""
    return ActionDetector.from_config(cfg, num_classes=num_classes)
