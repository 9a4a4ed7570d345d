"""Default configuration (fvcore ``CfgNode``; leaves inherit with ``_BASE_``).

Every key has a comment. The config is only an adapter: modules take keyword arguments, and
``s3d_det.modeling.build`` (and the tools) translate these keys into them. :func:`load_config` reads a YAML
leaf (following its ``_BASE_`` chain) and ``KEY VALUE`` overrides; a key the defaults do not have is an
error naming it and the file.
"""
from __future__ import annotations

import ast
import os
import re
from typing import List, Optional, Sequence

import yaml
from fvcore.common.config import CfgNode

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "datasets_root"]

_C = CfgNode()

# Seed of every random choice (weights, data order, augmentation); -1: drawn from the clock and recorded.
_C.SEED = 0
# Torch threads on the CPU: 0 = the cores that other processes leave free (at most the cores less one per
# data-loading worker), looked at every 10 s of training (engine/threads.py: OpenMP threads spin-wait for a core
# another process holds); N = exactly N threads, for bit-for-bit reproducible runs.
_C.CPU_THREADS = 0
# Where checkpoints, metrics.json, TensorBoard events and evaluation results go.
_C.OUTPUT_DIR = "output"

_C.MODEL = CfgNode()
# Device to build the model on: "cpu" or "cuda".
_C.MODEL.DEVICE = "cpu"
# Our own checkpoint to start from (a file written by the trainer); "" for none.
_C.MODEL.WEIGHTS = ""
# Weights of the 2D keyframe detector: a torchvision Faster R-CNN COCO or ImageNet ResNet checkpoint, or a
# detectron2 model-zoo .pkl, converted on load; "" for random initialisation.
_C.MODEL.WEIGHTS_2D = ""
# Weights of the 3D network: a file written by tools/convert_weights.py; "" for random initialisation.
_C.MODEL.WEIGHTS_3D = ""
# Person boxes the action head classifies: "rpn" (the keyframe detector), "gt" (ground-truth boxes: the
# oracle-boxes ablation) or "given" (precomputed proposals in the batch).
_C.MODEL.PROPOSALS = "rpn"

# The 2D keyframe network and its region proposal network (torchvision's).
_C.MODEL.BACKBONE_2D = CfgNode()
# resnet18, resnet34, resnet50 or resnet101.
_C.MODEL.BACKBONE_2D.NAME = "resnet50"
# ResNet-FPN (True) or ResNet-C4: the layers up to layer3, stride 16 (False).
_C.MODEL.BACKBONE_2D.FPN = False
# How many of layer4, layer3, layer2, layer1, conv1 train (torchvision's rule); the rest is frozen.
_C.MODEL.BACKBONE_2D.TRAINABLE_LAYERS = 3
# BatchNorm frozen to its loaded statistics (as for detection fine-tuning from ImageNet / COCO).
_C.MODEL.BACKBONE_2D.FROZEN_BN = True
_C.MODEL.RPN = CfgNode()
# Anchor sides in keyframe pixels (FPN: exactly 5, one per level) and height/width ratios.
_C.MODEL.RPN.ANCHOR_SIZES = [32, 64, 128, 256, 512]
_C.MODEL.RPN.ASPECT_RATIOS = [0.5, 1.0, 2.0]
# Proposals kept per level before the RPN's NMS, and per keyframe after it, in training and at test.
_C.MODEL.RPN.PRE_NMS_TOP_N_TRAIN = 2000
_C.MODEL.RPN.PRE_NMS_TOP_N_TEST = 1000
_C.MODEL.RPN.POST_NMS_TOP_N_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOP_N_TEST = 300
# IoU of the RPN's NMS.
_C.MODEL.RPN.NMS_THRESH = 0.7
# Anchor IoU with a person box at or above which it is foreground, below which background.
_C.MODEL.RPN.FG_IOU_THRESH = 0.7
_C.MODEL.RPN.BG_IOU_THRESH = 0.3
# Anchors sampled per keyframe for the RPN losses, and the foreground share among them.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5

# The 3D video network (s3d_det.modeling.S3DG).
_C.MODEL.BACKBONE_3D = CfgNode()
# One of i2d, i3d, bottom_heavy_i3d, top_heavy_i3d, s3d, s3dg.
_C.MODEL.BACKBONE_3D.VARIANT = "s3dg"
# Architecture preset of a checkpoint family ("", "torchvision", "milnce", "tfslim"); the keys below
# that are left at None take the preset's value (or the network default without a preset). It also sets the
# clip's input convention: "" and "milnce" [0, 1] RGB, "tfslim" [-1, 1], "torchvision" its Kinetics mean/std.
_C.MODEL.BACKBONE_3D.PRESET = ""
# Channel multiplier, and the floor of any layer's channel count under it.
_C.MODEL.BACKBONE_3D.WIDTH = 1.0
_C.MODEL.BACKBONE_3D.MIN_CHANNELS = 16
# Temporal kernel of the first 7x7 conv when it is temporal (None: preset or 3).
_C.MODEL.BACKBONE_3D.FIRST_TEMPORAL_KERNEL = None
# Stem: "full" (kt x 7 x 7), "separable" (1x7x7 + kt x1x1) or "space_to_depth" (None: preset or full).
_C.MODEL.BACKBONE_3D.STEM_STYLE = None
# First layer of the upper part of bottom_heavy_i3d / top_heavy_i3d (e.g. "mixed_4b"; "conv_1a" or "end", past the
# last block, for the all-2D or all-3D ends of the sweeps).
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
# The layer the detector RoI-aligns (its stage 5 then runs on the RoIs).
_C.MODEL.BACKBONE_3D.FEATURE = "mixed_4f"
# A classification config (tools/train_cls.py; a path relative to this config's folder) whose training gives the
# 3D network's weights when MODEL.WEIGHTS_3D is "": run first, or reused when its OUTPUT_DIR already holds them
# (the paper's path: pretrain the 3D network on clips, then detect). "": none.
_C.MODEL.BACKBONE_3D.PRETRAIN = ""

# Two-stream evaluation (docs/flow.md): this config is the RGB stream (MODEL.WEIGHTS its trained weights) and
# FLOW_CONFIG the flow stream's config (INPUT.MODALITY flow or brox; a path relative to this config's folder); used
# by --eval-only of tools/train_det.py and tools/train_cls.py and by tools/eval_jhmdb.py. "": one stream. Training
# trains this config's stream only: train each stream with its own config first.
_C.MODEL.TWO_STREAM = CfgNode()
_C.MODEL.TWO_STREAM.FLOW_CONFIG = ""
# The flow stream's trained weights; "": model_final.pth in its config's OUTPUT_DIR.
_C.MODEL.TWO_STREAM.FLOW_WEIGHTS = ""
# (RGB, flow) weights. Detection (ACT's fusion: the two heads' class probabilities on the RGB detector's proposals,
# averaged with these weights normalised to sum 1, boxes from the RGB head): ACT's is [1, 1]. Classification: see
# CLS_FUSION (not normalised for "logits": their scale is a softmax temperature); I3D's and MMAction2's: [1, 1].
_C.MODEL.TWO_STREAM.WEIGHTS = [1.0, 1.0]
# Classification: "logits" (I3D: each view's logits summed with WEIGHTS, then the softmax averaged over views) or
# "softmax" (MMAction2's report_accuracy.py on clips averaged as probabilities: each stream's view-averaged
# probabilities, weighted, divided by the weights' sum).
_C.MODEL.TWO_STREAM.CLS_FUSION = "logits"

# The clip classifier's head (tools/train_cls.py): global average pool of mixed_5c, dropout, a 1x1x1 projection.
_C.MODEL.CLS_HEAD = CfgNode()
# Dropout probability before the projection.
_C.MODEL.CLS_HEAD.DROPOUT = 0.5

# The action head: tube RoIAlign, S3D-G stage 5, classifier and box regressor.
_C.MODEL.ROI_HEAD = CfgNode()
# Number of action classes C (the head scores C + 1 with background); 0: taken from the dataset's labels.
_C.MODEL.ROI_HEAD.NUM_CLASSES = 0
# RoIAlign output side and sampling ratio (0: adaptive).
_C.MODEL.ROI_HEAD.OUTPUT_SIZE = 7
_C.MODEL.ROI_HEAD.SAMPLING_RATIO = 0
# The RoIAlign reads each box enlarged about its centre by this factor (1: the box itself), so that the features
# cover what moves beside the person; the detections keep the box itself.
_C.MODEL.ROI_HEAD.CONTEXT = 1.0
# Dropout before the classifier.
_C.MODEL.ROI_HEAD.DROPOUT = 0.2
# One box regression per class (True) or one for all (False).
_C.MODEL.ROI_HEAD.CLASS_SPECIFIC_BOXES = False
# How a detection is scored: "joint" (Faster R-CNN: one softmax over actions + background, trained on proposals
# sampled against the person boxes) or "person" (two-stage, as AVA detectors: the RPN's person objectness x the
# action probability; the head learns actions on people only: GT boxes and proposals with IoU >= FG_IOU_THRESH).
_C.MODEL.ROI_HEAD.SCORING = "joint"
# Proposal IoU with a person box at or above which it takes that person's action, below which background.
_C.MODEL.ROI_HEAD.FG_IOU_THRESH = 0.5
_C.MODEL.ROI_HEAD.BG_IOU_THRESH = 0.5
# Proposals sampled per keyframe for the head's losses, and the foreground share among them.
_C.MODEL.ROI_HEAD.BATCH_SIZE_PER_IMAGE = 128
_C.MODEL.ROI_HEAD.POSITIVE_FRACTION = 0.25
# Factor on the head's box-regression loss (0: no box refinement is learned; the boxes are the proposals).
_C.MODEL.ROI_HEAD.BOX_REG_LOSS_WEIGHT = 1.0
# Inference: minimum class score, per-class NMS IoU, and at most this many detections a keyframe.
_C.MODEL.ROI_HEAD.SCORE_THRESH = 0.05
_C.MODEL.ROI_HEAD.NMS_THRESH = 0.5
_C.MODEL.ROI_HEAD.DETECTIONS_PER_IMG = 100
# Per action (in the dataset's class order), the score a detection must exceed, in place of SCORE_THRESH; []:
# SCORE_THRESH for every action.
_C.MODEL.ROI_HEAD.CLASS_SCORE_THRESH = []
# "softmax": one action a person (cross-entropy over background / "no action" and the actions); "sigmoid": several
# actions a person at once (one sigmoid and binary cross-entropy per action, the field's choice on AVA; the ground
# truth gives a person several actions by the same box in several labels' tubes; docs/training.md).
_C.MODEL.ROI_HEAD.LOSS = "softmax"

_C.DATASETS = CfgNode()
# Detection (tools/train_det.py): "synthetic" (made on first use when missing) or any name; the data then lives in
# ROOT. Classification (tools/train_cls.py): "ucf101", "hmdb51", "kinetics", "ssv2" (their official lists, see
# docs/datasets.md) or "synthetic_clips" (made on first use: s3d_det/data/synthetic_clips.py).
_C.DATASETS.NAME = "synthetic"
# Folder holding Frames/ (or Videos/) and the GT pickle; a relative path is taken under $S3D_DET_DATASETS
# (default ./datasets).
_C.DATASETS.ROOT = "synthetic"
# The ground-truth pickle, relative to ROOT.
_C.DATASETS.GT = "synthetic-GT.pkl"
# Split to train on and evaluate (1-based; JHMDB, UCF101 and HMDB-51 have 3).
_C.DATASETS.SPLIT = 1
# Synthetic dataset, used only when it has to be made: videos in all, how many of them (the last) are the test
# split, and the seed. With more training videos (e.g. 330 and 30) the head generalises better on oracle boxes
# (README, quick start), at 0.17 s of generation a video.
_C.DATASETS.SYNTHETIC_NUM_VIDEOS = 90
_C.DATASETS.SYNTHETIC_TEST_VIDEOS = 30
_C.DATASETS.SYNTHETIC_SEED = 0
# Multi-label synthetic set: the share (0..1) of the movers (move_left, move_right) that also wave, jump or spin
# while walking; those frames' box is in both labels' tubes. 0: the single-label set. Give a multi-label set its
# own DATASETS.ROOT (configs/synthetic/s3dg_tiny_multilabel.yaml): a set made with another value is kept, not redone.
_C.DATASETS.SYNTHETIC_MULTI_LABEL = 0.0
# Synthetic class set: "default" (the six motions) or "order" (arm_up/arm_down, sit_down/stand_up: pairs told apart
# only by the order of their frames; docs/experiments/order-classes.md). Give an order set its own DATASETS.ROOT.
_C.DATASETS.SYNTHETIC_CLASSES = "default"
# With a flow INPUT.MODALITY: the folder of the flow, <video>/x/, <video>/y/ ("flow") or <video>/{k:05d}.jpg
# ("brox"); a relative path is taken under ROOT (e.g. "Flow" as tools/prepare_data.py flow ROOT --out ROOT/Flow
# makes it, "FlowBrox04" as ACT ships it). Classification: the same, under the dataset's root. The synthetic sets'
# flow is made there on first use, with DIS (docs/flow.md).
_C.DATASETS.FLOW_DIR = "Flow"

_C.INPUT = CfgNode()
# What the 3D network's clips are made of: "rgb" (the frames), "flow" (optical flow stored as x/y JPEGs, 2
# channels, I3D's convention: tools/prepare_data.py flow) or "brox" (the 3-channel Brox flow JPEGs of ACT and
# MOC). The detector finds people on the RGB keyframe whatever the modality (docs/flow.md).
_C.INPUT.MODALITY = "rgb"
# Frames per clip and the stride between them; the keyframe is at index CLIP_LENGTH // 2.
_C.INPUT.CLIP_LENGTH = 16
_C.INPUT.CLIP_STRIDE = 1
# At a video's ends: "repeat" the edge frame or "reflect".
_C.INPUT.BOUNDARY = "repeat"
# Shorter side after resizing: training picks one of the list per clip, test uses the single value.
_C.INPUT.SHORT_SIDE_TRAIN = [240]
_C.INPUT.SHORT_SIDE_TEST = 240
# Longer side is capped at this.
_C.INPUT.MAX_SIZE = 1333
# Training augmentation: horizontal flip probability and colour jitter strengths (0: off).
_C.INPUT.HFLIP_PROB = 0.5
# Pairs of class names a horizontal flip turns into each other, swapped in flipped samples, e.g.
# [["move_left", "move_right"]] (the synthetic set); a name the dataset does not have is an error.
_C.INPUT.HFLIP_SWAP = []
_C.INPUT.BRIGHTNESS = 0.0
_C.INPUT.CONTRAST = 0.0
_C.INPUT.SATURATION = 0.0
# Hue shift strength in turns, at most 0.5 (0.5: any hue): keeps a network from learning actors by their colours.
_C.INPUT.HUE = 0.0
# Frames are padded to a multiple of this in a batch.
_C.INPUT.SIZE_DIVISIBLE = 32
# Classification (tools/train_cls.py): the side of the square clips, pixels. Training takes a random resized crop
# of each clip (torchvision's RandomResizedCrop: CROP_AREA is the range of its share of the frame's area, its
# aspect ratio w/h lies in 3/4..4/3); testing resizes the shorter side to SHORT_SIDE_TEST (0: CROP_SIZE) and cuts
# TEST.NUM_CROPS squares along the longer side.
_C.INPUT.CROP_SIZE = 224
_C.INPUT.CROP_AREA = [0.25, 1.0]

_C.DATALOADER = CfgNode()
# Worker processes per training process; above 0, evaluation and video inference also read the next step's frames
# in a background thread (VideoDetector read_ahead).
_C.DATALOADER.NUM_WORKERS = 2
# MiB of decoded training frames each process keeps in memory (0: none). A clip of T frames decodes every
# frame anew otherwise: an epoch decodes each frame about T times. A 320x240 frame takes 0.22 MiB. (Evaluation's
# video inference decodes each frame once a pass and keeps no cache.)
_C.DATALOADER.FRAME_CACHE_MB = 0
# Keyframes drawn per training video each epoch (0: every annotated frame is a sample).
_C.DATALOADER.KEYFRAMES_PER_VIDEO = 0
# Also train on the frames without a box (untrimmed videos: people before and after their actions are
# background). False follows ACT and the usual UCF101-24 recipes: annotated frames only.
_C.DATALOADER.BACKGROUND_FRAMES = False
# Untrimmed videos: on the frames outside a tube, hold its nearest box for this many frames (-1: to the video's
# ends; 0: off) as a person doing none of the actions: a person for the RPN, background for the action head.
_C.DATALOADER.IDLE_HOLD = 0
# With IDLE_HOLD: the idle boxes at most this many frames from their tube stay persons for the RPN but are ignored
# by the action head (0: none are), as a clip around such a keyframe still shows part of the action (a clip
# reaches CLIP_LENGTH * CLIP_STRIDE // 2 frames to each side).
_C.DATALOADER.IDLE_MARGIN = 0
# With IDLE_HOLD: also train on the frames where nobody acts but an idle box lies beyond IDLE_MARGIN, as
# action-head negatives (BACKGROUND_FRAMES takes every frame, also those that teach the head nothing).
_C.DATALOADER.IDLE_KEYFRAMES = False

_C.SOLVER = CfgNode()
# Clips per iteration over all processes.
_C.SOLVER.BATCH_SIZE = 8
# "sgd" (with momentum) or "adamw" (MOMENTUM is its beta1; for small models trained from scratch).
_C.SOLVER.OPTIMIZER = "sgd"
# Learning rate, momentum, weight decay (and its value on normalisation layers).
_C.SOLVER.BASE_LR = 0.01
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Iterations, and the schedule after warm-up: "step" (x GAMMA at each of STEPS) or "cosine".
_C.SOLVER.MAX_ITER = 20000
_C.SOLVER.SCHEDULE = "step"
_C.SOLVER.STEPS = [14000, 18000]
_C.SOLVER.GAMMA = 0.1
# Linear warm-up from WARMUP_FACTOR x BASE_LR over WARMUP_ITERS iterations.
_C.SOLVER.WARMUP_ITERS = 500
_C.SOLVER.WARMUP_FACTOR = 0.001
# Gradient clipping by global norm (0: off).
_C.SOLVER.CLIP_GRAD_NORM = 0.0
# Factor on the learning rate of the 3D network's weights (the classifier head and the detection heads keep
# BASE_LR): below 1 when fine-tuning loaded weights, e.g. 0.1.
_C.SOLVER.BACKBONE_LR_FACTOR = 1.0
# From this iteration on the 2D backbone is frozen (no gradient, BatchNorm in eval mode) and only the RPN's head
# and the action detector train; -1: never (nor, with a warning, when it is not before MAX_ITER or there is no 2D
# backbone). From scratch the person features settle long before the actions.
_C.SOLVER.FREEZE_2D_AT = -1
# Save a checkpoint every this many iterations.
_C.SOLVER.CHECKPOINT_PERIOD = 2000
# Mixed precision on CUDA: "bfloat16", "float16" or "" (fp32). CPU always runs fp32.
_C.SOLVER.AMP_DTYPE = ""

_C.TEST = CfgNode()
# Evaluate every this many iterations during training (0: only at the end).
_C.TEST.EVAL_PERIOD = 0
# Frame-AP protocol ("act", "voc", "yowo"; "ava": AVA's frame-AP on the keyframes, s3d_det.data.ava_gt) and IoU
# threshold.
_C.TEST.PROTOCOL = "act"
_C.TEST.IOU = 0.5
# Keyframes per forward at test time.
_C.TEST.BATCH_SIZE = 4
# Also compute video-mAP (tubes linked from the frame detections).
_C.TEST.VIDEO_MAP = False
# Video inference (s3d_det.engine.inference, tools/visualize_video.py), shared mode: clip positions (frames at
# INPUT.CLIP_STRIDE) per forward of the 3D network; 0: one clip, so every st-th keyframe (st the feature layer's
# temporal stride) has its own clip's features and the keyframes between mix those of the two nearest. Longer
# windows compute less but give every slice the real frames a clip would see as zero padding (README:
# "Detecting actions in a video").
_C.TEST.WINDOW = 0
# Temporal smoothing (s3d_det.evaluation.postprocess): each detection's score becomes the mean, over the frames within
# this many frames of it, of the best score of its action on a box overlapping it (IoU >= 0.5; 0 where none);
# 0: off. Applied to the detections of a whole video, in evaluation and video inference.
_C.TEST.SMOOTH_FRAMES = 0
# Classification: the multi-view test protocol, NUM_CLIPS clips spread evenly over each video x NUM_CROPS (1 or
# 3) spatial crops, their softmax scores averaged (10 x 3 in PySlowFast's and MMAction2's Kinetics results).
_C.TEST.NUM_CLIPS = 10
_C.TEST.NUM_CROPS = 3


class ConfigError(ValueError):
    """A config file or override that the defaults do not describe."""


# Keys whose value must be one of a few words (the modules check them again; this names the key early).
CHOICES = {
    "MODEL.PROPOSALS": ("rpn", "gt", "given"),
    "MODEL.ROI_HEAD.SCORING": ("joint", "person"),
    "INPUT.BOUNDARY": ("repeat", "reflect"),
    "SOLVER.OPTIMIZER": ("sgd", "adamw"),
    "SOLVER.SCHEDULE": ("step", "cosine"),
    "SOLVER.AMP_DTYPE": ("", "bfloat16", "float16"),
    "TEST.PROTOCOL": ("act", "voc", "yowo", "ava"),
    "INPUT.MODALITY": ("rgb", "flow", "brox"),
    "MODEL.ROI_HEAD.LOSS": ("softmax", "sigmoid"),
    "MODEL.TWO_STREAM.CLS_FUSION": ("logits", "softmax"),
}


# Keys that were removed, and why; a config that sets one gets that reason (yacs sees them as renamed keys).
REMOVED_KEYS = {
    # the clip's normalisation could disagree with the preset; the network now owns its convention
    "INPUT.NORM_3D": "the 3D network normalises raw frames with its preset's convention, or with that of the weights "
                     "it loads (MODEL.BACKBONE_3D.PRESET, MODEL.WEIGHTS_3D, MODEL.WEIGHTS); delete the key",
}
for _key in REMOVED_KEYS:
    _C.register_renamed_key(_key, "(removed)")


def _removed(error: KeyError) -> Optional[str]:
    """The reason a removed key was set, when yacs' "renamed" error is about one."""
    text = str(error.args[0] if error.args else error)
    return next((f"{key} was removed: {why}" for key, why in REMOVED_KEYS.items() if key in text), None)


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return _C.clone()


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> CfgNode:
    """The defaults, merged with the YAML file ``path`` (and its ``_BASE_`` chain, relative to each file) and
    then with ``overrides`` (``["SOLVER.BASE_LR", "0.02", ...]``, detectron2's ``KEY VALUE`` pairs). Frozen.

    Raises:
        FileNotFoundError: ``path`` or a ``_BASE_`` it names does not exist.
        ConfigError: a file that is not YAML or not a mapping (naming the file, line and column), a key the
            defaults do not have (naming it and the file), a value of another type, or an odd override list.
    """
    cfg = get_cfg()
    if path:
        _check_yaml_chain(path)
        try:
            cfg.merge_from_file(path)
        except KeyError as e:
            raise ConfigError(f"{path}: " + (_removed(e) or f"{e.args[0] if e.args else e} (a key the defaults do not "
                                                         "have; see s3d_det/config.py)")) from None
        except ValueError as e:  # yacs: a value of another type than the default's
            raise ConfigError(f"{path} (or a _BASE_ it names): {_mismatch(e)}") from None
    if len(overrides) % 2:
        raise ConfigError(f"overrides come in KEY VALUE pairs, got {len(overrides)} items: {list(overrides)}")
    try:
        cfg.merge_from_list(_ints_as_floats(cfg, overrides))
    except (KeyError, AssertionError) as e:  # yacs asserts on unknown keys given as overrides
        removed = _removed(e) if isinstance(e, KeyError) else None
        raise ConfigError(f"command-line override: {removed or (e.args[0] if e.args else e)}") from None
    except ValueError as e:
        raise ConfigError(f"command-line override: {_mismatch(e)}") from None
    for key, choices in CHOICES.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node not in choices:
            raise ConfigError(f"{key}={node!r} ({path or 'defaults'} and overrides): expected one of "
                              f"{', '.join(repr(c) for c in choices)}")
    cfg.freeze()
    return cfg


def _mismatch(error: ValueError) -> str:
    """yacs's "Type mismatch (<class 'A'> vs. <class 'B'>) with values (default vs. given) for config key: K" as
    "K must be a A (like its default), got B: given" without printing a whole sub-config."""
    found = re.fullmatch(r"Type mismatch \(<class '([\w.]+)'> vs\. <class '([\w.]+)'>\) with values \((.*) vs\. "
                         r"(.*)\) for config key: (\S+)", str(error), flags=re.S)
    if not found:
        return " ".join(str(error).split())
    want, got, _, value, key = found.groups()
    want = "section of keys" if want.endswith("CfgNode") else want.rsplit(".", 1)[-1]
    value = " ".join(value.split())
    return f"{key} must be a {want} (as its default is), got a {got.rsplit('.', 1)[-1]}: {value[:200]}"


def _check_yaml_chain(path: str, child: Optional[str] = None, seen: Sequence[str] = ()) -> None:
    """Reads ``path`` and the ``_BASE_`` files it names as fvcore will, so that a missing file, a YAML syntax error,
    a file that is not text or a top level that is not a mapping is a one-line error naming the file."""
    where = f" (the _BASE_ of {child})" if child else ""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}{where}")
    if os.path.abspath(path) in seen:
        raise ConfigError(f"{path}{where}: _BASE_ files name each other in a loop")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(e.problem or e.context or e).split())
        raise ConfigError(f"{path}{at}{where}: not valid YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}{where}: not a YAML text file ({type(e).__name__}: "
                          f"{' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        got = "nothing (an empty file)" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{path}{where}: expected a mapping of KEY: value at the top level, got {got}")
    base = data.get("_BASE_")
    if base is None:
        return
    if not isinstance(base, str):
        raise ConfigError(f"{path}{where}: _BASE_ must be the path of a YAML file, got {base!r}")
    base = os.path.expanduser(base)
    if not base.startswith(("/", "https://", "http://")):  # fvcore: relative to the file naming it
        base = os.path.join(os.path.dirname(path), base)
    _check_yaml_chain(base, path, (*seen, os.path.abspath(path)))


def _ints_as_floats(cfg: CfgNode, overrides: Sequence[str]) -> List[str]:
    """``overrides`` with a whole number given for a float key written as a float (``BASE_LR 1`` -> ``1.0``),
    which yacs would otherwise refuse as a type mismatch."""
    out = list(overrides)
    for i in range(0, len(out) - 1, 2):
        node = cfg
        for part in str(out[i]).split("."):
            node = node.get(part) if isinstance(node, CfgNode) else None
        try:
            value = ast.literal_eval(str(out[i + 1]))
        except (ValueError, SyntaxError):
            continue
        if isinstance(node, float) and isinstance(value, int) and not isinstance(value, bool):
            out[i + 1] = repr(float(value))
    return out


def datasets_root() -> str:
    """``$S3D_DET_DATASETS``, or ``./datasets`` when unset."""
    return os.environ.get("S3D_DET_DATASETS", "datasets")
