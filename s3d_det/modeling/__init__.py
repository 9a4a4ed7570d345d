"""Networks: the S3D-G backbone family, its clip classifier, and the action detector."""
from .build import build_video_backbone, build_video_backbone_from_cfg, build_video_classifier, video_backbone_kwargs
from .detector import ActionDetector, build_action_detector, detections_to_rows
from .presets import PRESETS, Preset, get_preset
from .roi_head import SCORINGS, TubeRoIAlign, TubeRoIHead
from .rpn import ScoredRPN
from .s3dg import (
    INCEPTION_V1_CHANNELS,
    LAYERS,
    S3DG,
    STAGES,
    STEM_STYLES,
    TEMPORAL_LAYERS,
    VARIANTS,
    ClassifierHead,
    ConvUnit,
    FeatureGating,
    InceptionBlock3d,
    VideoClassifier,
    conv_kinds,
)

__all__ = [
    "ActionDetector",
    "build_action_detector",
    "detections_to_rows",
    "TubeRoIAlign",
    "TubeRoIHead",
    "SCORINGS",
    "ScoredRPN",
    "build_video_backbone",
    "build_video_classifier",
    "build_video_backbone_from_cfg",
    "video_backbone_kwargs",
    "PRESETS",
    "Preset",
    "get_preset",
    "INCEPTION_V1_CHANNELS",
    "LAYERS",
    "STAGES",
    "STEM_STYLES",
    "TEMPORAL_LAYERS",
    "VARIANTS",
    "ClassifierHead",
    "ConvUnit",
    "FeatureGating",
    "InceptionBlock3d",
    "S3DG",
    "VideoClassifier",
    "conv_kinds",
]
