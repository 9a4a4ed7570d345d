"""Networks: the S3D-G backbone family, its clip classifier, and the action detector.

Where things are::

    s3dg.py       S3DG (the 3D backbone family), VideoClassifier       presets.py    checkpoint families' settings
    detector.py   ActionDetector (assembles the parts), the 2D backbone  rpn.py        ScoredRPN, build_rpn
    roi_head.py   TubeRoIHead (tube RoIAlign, stage 5, predictor)      roi_align.py  the CPU tube RoIAlign
    proposals.py  where the head's boxes come from (MODEL.PROPOSALS)   scoring.py    MODEL.ROI_HEAD.SCORING rules
    build.py      short entry points (keywords, presets, configs)      cfg_args.py   config node -> keyword args
    normalize.py  input conventions (pixel mean/std)                   fusion.py     BatchNorm folding

Every network takes keyword arguments; ``S3DG``, ``TubeRoIHead`` and ``ActionDetector`` also build from a config
with ``Cls.from_config(cfg, ...)``, each reading its own node.
"""
from .build import (
    build_action_detector_from_cfg,
    build_video_backbone,
    build_video_backbone_from_cfg,
    build_video_classifier,
)
from .detector import ActionDetector, build_action_detector, detections_to_rows
from .presets import PRESETS, Preset, get_preset
from .proposals import PROPOSAL_SOURCES, GivenProposals, GTProposals, ProposalSource, RPNProposals
from .roi_head import SCORINGS, TubeRoIAlign, TubeRoIHead
from .rpn import ScoredRPN, build_rpn
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
from .scoring import JointScoring, PersonScoring, Scoring

__all__ = [
    "ActionDetector",
    "build_action_detector",
    "build_action_detector_from_cfg",
    "detections_to_rows",
    "PROPOSAL_SOURCES",
    "ProposalSource",
    "RPNProposals",
    "GTProposals",
    "GivenProposals",
    "TubeRoIAlign",
    "TubeRoIHead",
    "SCORINGS",
    "Scoring",
    "JointScoring",
    "PersonScoring",
    "ScoredRPN",
    "build_rpn",
    "build_video_backbone",
    "build_video_classifier",
    "build_video_backbone_from_cfg",
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
