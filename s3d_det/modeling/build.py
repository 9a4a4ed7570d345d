"""Entry points that build the video networks from keyword arguments, a preset, or a config."""
from __future__ import annotations

from typing import Any, Optional

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
    arch = {**get_preset(preset).backbone, **get_preset(preset).input_convention()} if preset else {}
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


# Config keys of MODEL.BACKBONE_3D -> S3DG keyword arguments; a None value leaves the preset's or the
# network's default in place.
_BACKBONE_KEYS = {
    "WIDTH": "width",
    "MIN_CHANNELS": "min_channels",
    "FIRST_TEMPORAL_KERNEL": "first_temporal_kernel",
    "STEM_STYLE": "stem_style",
    "SPLIT_AT": "split_at",
    "SAME_PADDING": "same_padding",
    "BN_EPS": "bn_eps",
    "BN_MOMENTUM": "bn_momentum",
    "FROZEN_STAGES": "frozen_stages",
    "OUT_FEATURES": "out_features",
}


def video_backbone_kwargs(cfg) -> dict:
    """``build_video_backbone`` keyword arguments (variant and preset included) from ``cfg.MODEL.BACKBONE_3D``."""
    node = cfg.MODEL.BACKBONE_3D
    kwargs = {arg: node[key] for key, arg in _BACKBONE_KEYS.items() if node[key] is not None}
    kwargs["out_features"] = tuple(kwargs["out_features"])
    return dict(variant=node.VARIANT, preset=node.PRESET or None, **kwargs)


def build_video_backbone_from_cfg(cfg) -> S3DG:
    """The backbone that ``cfg.MODEL.BACKBONE_3D`` describes."""
    return build_video_backbone(**video_backbone_kwargs(cfg))


def action_detector_kwargs(cfg, num_classes: int) -> dict:
    """``build_action_detector`` keyword arguments from ``cfg.MODEL`` (``num_classes`` C actions, used when
    ``MODEL.ROI_HEAD.NUM_CLASSES`` is 0)."""
    m = cfg.MODEL
    video = video_backbone_kwargs(cfg)
    video.pop("out_features")
    return dict(
        num_classes=m.ROI_HEAD.NUM_CLASSES or num_classes,
        proposals=m.PROPOSALS,
        backbone_2d=m.BACKBONE_2D.NAME,
        fpn=m.BACKBONE_2D.FPN,
        trainable_layers_2d=m.BACKBONE_2D.TRAINABLE_LAYERS,
        frozen_bn_2d=m.BACKBONE_2D.FROZEN_BN,
        anchor_sizes=tuple(m.RPN.ANCHOR_SIZES),
        aspect_ratios=tuple(m.RPN.ASPECT_RATIOS),
        rpn_pre_nms_top_n_train=m.RPN.PRE_NMS_TOP_N_TRAIN,
        rpn_pre_nms_top_n_test=m.RPN.PRE_NMS_TOP_N_TEST,
        rpn_post_nms_top_n_train=m.RPN.POST_NMS_TOP_N_TRAIN,
        rpn_post_nms_top_n_test=m.RPN.POST_NMS_TOP_N_TEST,
        rpn_nms_thresh=m.RPN.NMS_THRESH,
        rpn_fg_iou_thresh=m.RPN.FG_IOU_THRESH,
        rpn_bg_iou_thresh=m.RPN.BG_IOU_THRESH,
        rpn_batch_size_per_image=m.RPN.BATCH_SIZE_PER_IMAGE,
        rpn_positive_fraction=m.RPN.POSITIVE_FRACTION,
        variant_3d=video.pop("variant"),
        preset_3d=video.pop("preset"),
        width_3d=video.pop("width", 1.0),
        frozen_stages_3d=video.pop("frozen_stages", 0),
        backbone_3d_kwargs=video,
        feature_3d=m.BACKBONE_3D.FEATURE,
        roi_output_size=m.ROI_HEAD.OUTPUT_SIZE,
        roi_sampling_ratio=m.ROI_HEAD.SAMPLING_RATIO,
        roi_context=m.ROI_HEAD.CONTEXT,
        dropout=m.ROI_HEAD.DROPOUT,
        class_specific_boxes=m.ROI_HEAD.CLASS_SPECIFIC_BOXES,
        scoring=m.ROI_HEAD.SCORING,
        box_fg_iou_thresh=m.ROI_HEAD.FG_IOU_THRESH,
        box_bg_iou_thresh=m.ROI_HEAD.BG_IOU_THRESH,
        box_batch_size_per_image=m.ROI_HEAD.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=m.ROI_HEAD.POSITIVE_FRACTION,
        box_reg_loss_weight=m.ROI_HEAD.BOX_REG_LOSS_WEIGHT,
        box_score_thresh=m.ROI_HEAD.SCORE_THRESH,
        box_nms_thresh=m.ROI_HEAD.NMS_THRESH,
        box_detections_per_img=m.ROI_HEAD.DETECTIONS_PER_IMG,
    )


def build_action_detector_from_cfg(cfg, num_classes: int):
    """The ``ActionDetector`` that ``cfg.MODEL`` describes, randomly initialised."""
    from .detector import build_action_detector

    return build_action_detector(**action_detector_kwargs(cfg, num_classes))
