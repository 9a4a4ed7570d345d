"""Networks: the S3D-G backbone family and its clip classifier."""
from .build import build_video_backbone, build_video_backbone_from_cfg, build_video_classifier, video_backbone_kwargs
from .presets import PRESETS, Preset, get_preset
from .s3dg import (
    INCEPTION_V1_CHANNELS,
    LAYERS,
    STAGES,
    STEM_STYLES,
    TEMPORAL_LAYERS,
    VARIANTS,
    ClassifierHead,
    ConvUnit,
    FeatureGating,
    InceptionBlock3d,
    S3DG,
    VideoClassifier,
    conv_kinds,
)

__all__ = [
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
