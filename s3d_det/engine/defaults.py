"""What the tools share: detectron2's command line, and the adapters from a config to data, model and weights.

The config is only an adapter: everything here turns ``cfg`` keys into keyword arguments of the modules.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from fractions import Fraction
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import torch

from s3d_det.checkpoint import load_pretrained_3d
from s3d_det.checkpoint.image import load_2d_into, load_2d_weights
from s3d_det.config import ConfigError, datasets_root
from s3d_det.data import load_gt
from s3d_det.data.clips import ClipTransform
from s3d_det.data.dataset import TestClipDataset, TrainClipDataset, collate
from s3d_det.data.modality import MODALITIES, Modality
from s3d_det.modeling.build import build_action_detector_from_cfg
from s3d_det.modeling.detector import ActionDetector
from s3d_det.modeling.two_stream import TwoStreamDetector

from ..checkpoint.training import check_shapes, load_checkpoint
from ..utils.errors import INPUT_ERRORS, report_error, run_tool
from ..utils.io import atomic_write, available_cores
from .distributed import get_world_size, is_main_process, launch, synchronize
from .schedule import build_lr_scheduler, build_optimizer
from .threads import ThreadGovernor
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["default_argument_parser", "launch_tool", "write_config", "resolve_device", "data_root", "load_dataset_gt",
           "action_names",
           "build_datasets", "build_model", "load_model_weights", "load_weights_3d", "batch_collate", "model_changes",
           "cpu_threads", "build_trainer"]


def default_argument_parser(description: str) -> argparse.ArgumentParser:
    """detectron2's conventions: ``--config-file``, ``--resume``, ``--eval-only``, ``--num-gpus``,
    ``--num-machines``, ``--machine-rank``, ``--dist-url``, then ``KEY VALUE`` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", metavar="FILE", required=True, help="a YAML config (leaves use _BASE_)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS, do not train")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; on CPU, gloo)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 (auto: a free local port)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.02")
    return parser


def _checked_main(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """``main(args)`` in this process (each spawned process runs it): bad input ends it with ``error: <one line>``
    and exit status 2 (``s3d_det.utils.errors``)."""
    status = run_tool(main, args)
    if status:
        sys.exit(status)


def launch_tool(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """Runs a training tool's ``main(args)`` in ``args.num_gpus`` processes (``launch``: one in this process by
    default); bad input, in launch's own checks or in any process, exits with status 2 after one ``error:`` line."""
    try:
        launch(_checked_main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(main, args))
    except INPUT_ERRORS as e:  # launch's own checks (--num-gpus, --dist-url)
        sys.exit(report_error(e))
    except torch.multiprocessing.ProcessExitedException as e:  # a spawned process reported bad input
        if e.exit_code != 2:
            raise
        sys.exit(2)


def write_config(cfg) -> None:
    """Makes ``OUTPUT_DIR`` and (main process) writes the config there as ``config.yaml``, atomically."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    if is_main_process():
        with atomic_write(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), ".yaml") as tmp:
            with open(tmp, "w") as f:
                f.write(cfg.dump())


def resolve_device(name: str) -> torch.device:
    """``MODEL.DEVICE`` as a ``torch.device``: "cpu", "cuda" or "cuda:N". CUDA asked for where there is none runs
    on the CPU, with a warning saying so; a name torch does not know is a ConfigError."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"MODEL.DEVICE={name!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE %r: CUDA is not available here; running on the CPU", name)
        return torch.device("cpu")
    return device


def synthetic_classes(cfg) -> str:
    """``DATASETS.SYNTHETIC_CLASSES``, checked: the synthetic class set ("default" or "order")."""
    from s3d_det.data.synthetic import CLASS_SETS

    value = cfg.DATASETS.SYNTHETIC_CLASSES
    if value not in CLASS_SETS:
        raise ConfigError(f"DATASETS.SYNTHETIC_CLASSES must be one of {', '.join(sorted(CLASS_SETS))}, got {value!r}")
    return value


KNOWN_NUM_CLASSES = {"jhmdb": 21, "ucf24": 24, "ucf101": 101, "hmdb51": 51, "kinetics": 400, "ssv2": 174}


def known_num_classes(cfg) -> Optional[int]:
    """The number of classes of the dataset ``cfg`` names, known without reading its files (benchmarks build
    models before any data exists): the synthetic sets' from ``DATASETS.SYNTHETIC_CLASSES`` (the clip set has
    ``idle`` besides), the public datasets' as published (Kinetics: 400); None for others."""
    from s3d_det.data.synthetic import CLASS_SETS
    from s3d_det.data.synthetic_clips import clip_classes

    name = cfg.DATASETS.NAME
    if name == "synthetic":
        return len(CLASS_SETS[synthetic_classes(cfg)])
    if name == "synthetic_clips":
        return len(clip_classes(synthetic_classes(cfg)))
    return KNOWN_NUM_CLASSES.get(name)


def data_root(cfg) -> str:
    """``DATASETS.ROOT``, under ``$S3D_DET_DATASETS`` (default ./datasets) when relative."""
    return cfg.DATASETS.ROOT if os.path.isabs(cfg.DATASETS.ROOT) else os.path.join(datasets_root(), cfg.DATASETS.ROOT)


def load_dataset_gt(cfg, *, make_synthetic: bool = True) -> Tuple[dict, str]:
    """The ground truth and the data root. The synthetic set (``DATASETS.NAME: synthetic``) is made first
    when it is missing; any other dataset must be there, else FileNotFoundError says where it was looked for."""
    root = data_root(cfg)
    if cfg.DATASETS.NAME == "synthetic" and make_synthetic:
        from s3d_det.data.synthetic import ensure_synthetic

        num, test = cfg.DATASETS.SYNTHETIC_NUM_VIDEOS, cfg.DATASETS.SYNTHETIC_TEST_VIDEOS
        if not 0 < test < num:
            raise ConfigError(f"DATASETS.SYNTHETIC_TEST_VIDEOS must be in 1..SYNTHETIC_NUM_VIDEOS - 1 "
                              f"({num - 1}), got {test}")
        multi = cfg.DATASETS.SYNTHETIC_MULTI_LABEL
        if isinstance(multi, bool) or not isinstance(multi, (int, float)) or not 0 <= multi <= 1:
            raise ConfigError(f"DATASETS.SYNTHETIC_MULTI_LABEL must be a number in [0, 1] (the share of movers that "
                              f"also do a second action), got {multi!r}")
        ensure_synthetic(root, num_videos=num, test_fraction=Fraction(test, num), seed=cfg.DATASETS.SYNTHETIC_SEED,
                         multi_label=multi, classes=synthetic_classes(cfg))
    path = os.path.join(root, cfg.DATASETS.GT)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ground truth not found: {path} (DATASETS.ROOT={cfg.DATASETS.ROOT!r} under "
                                f"$S3D_DET_DATASETS={datasets_root()!r}, DATASETS.GT={cfg.DATASETS.GT!r}); "
                                "see tools/prepare_data.py")
    return load_gt(path), root


SYNTHETIC_NAMES = ("synthetic", "synthetic_clips")


def action_names(cfg, weights: str) -> List[str]:
    """The action names of a detector: the config's dataset ground truth's labels when it is there (never made on
    the fly), else "action K" for the K actions of the head in ``weights``. ValueError when ``weights`` holds no
    detector head."""
    try:
        gt, _ = load_dataset_gt(cfg, make_synthetic=False)
        return list(gt["labels"])
    except FileNotFoundError:
        pass
    from s3d_det.checkpoint.training import load_checkpoint

    state = load_checkpoint(weights)
    logits = state.get("model", state).get("roi_head.box_predictor.cls_score.weight")
    if logits is None:
        raise ValueError(f"{weights} holds no roi_head.box_predictor.cls_score.weight: not a detector")
    return [f"action {k}" for k in range(logits.shape[0] - 1)]


def build_modality(cfg, root: str) -> Modality:
    """``INPUT.MODALITY`` with its flow folder (``DATASETS.FLOW_DIR``, relative paths under ``root``); the flow of
    a synthetic set is made there on first use (DIS)."""
    name = cfg.INPUT.MODALITY
    if name not in MODALITIES:
        raise ConfigError(f"INPUT.MODALITY must be one of {', '.join(MODALITIES)}, got {name!r}")
    if name == "rgb":
        return Modality()
    if not cfg.DATASETS.FLOW_DIR:
        raise ConfigError(f"INPUT.MODALITY {name!r} needs DATASETS.FLOW_DIR, the folder of the flow")
    flow_root = os.path.join(root, os.path.expanduser(cfg.DATASETS.FLOW_DIR))
    if cfg.DATASETS.NAME in SYNTHETIC_NAMES and name == "flow" and is_main_process():
        # a synthetic set's flow is made on first use, as the set itself: DIS, the fast algorithm (TV-L1 would take
        # most of an hour on 2 cores; tools/prepare_data.py flow makes it for other data)
        from s3d_det.data.flow import extract_flow

        counts = extract_flow(root, flow_root, algorithm="dis", workers=available_cores(), progress=True)
        if counts["computed"]:
            logger.info("optical flow (DIS) of %d videos written to %s", counts["computed"], flow_root)
    if cfg.DATASETS.NAME in SYNTHETIC_NAMES and name == "flow":
        synchronize()  # the other processes wait for the main one's flow
    if not os.path.isdir(flow_root):
        raise FileNotFoundError(f"flow folder {flow_root} does not exist (INPUT.MODALITY {name!r}, DATASETS.FLOW_DIR "
                                f"{cfg.DATASETS.FLOW_DIR!r}); make it with tools/prepare_data.py flow")
    return Modality(name, flow_root)


# Settings the two streams of a two-stream evaluation must share: the data, and the clips and views they see.
_SHARED_BY_STREAMS = ("DATASETS.NAME", "DATASETS.ROOT", "DATASETS.GT", "DATASETS.SPLIT", "INPUT.CLIP_LENGTH",
                      "INPUT.CLIP_STRIDE", "INPUT.BOUNDARY", "INPUT.SHORT_SIDE_TEST", "INPUT.MAX_SIZE",
                      "INPUT.CROP_SIZE", "TEST.NUM_CLIPS", "TEST.NUM_CROPS", "MODEL.ROI_HEAD.SCORING")


def flow_stream(cfg, config_file: str, opts: Sequence[str] = (), *, tool: str = "tools/train_det.py"):
    """The flow stream of a two-stream evaluation (``MODEL.TWO_STREAM``): its config, with ``MODEL.WEIGHTS`` set to
    its weights file, or None when ``FLOW_CONFIG`` is "".

    ``opts``: the run's ``KEY VALUE`` overrides; those of the data and the clips (``DATASETS.*`` and
    ``_SHARED_BY_STREAMS``) apply to the flow stream's config too, and its ``DATASETS.SPLIT`` is ``cfg``'s.
    ``{split}`` in ``FLOW_CONFIG`` and ``FLOW_WEIGHTS`` is replaced by that split (one flow model a split, as
    ``--weights`` of tools/eval_jhmdb.py). ConfigError when that config is missing, is not a flow config, or
    differs from ``cfg`` in the data or the clips, or when ``cfg`` itself is not RGB; FileNotFoundError when the
    weights are missing (``tool`` is named in the hint to train them)."""
    from s3d_det.config import load_config

    node = cfg.MODEL.TWO_STREAM
    if not node.FLOW_CONFIG:
        return None
    split = str(cfg.DATASETS.SPLIT)
    weights = [float(v) for v in node.WEIGHTS]
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"MODEL.TWO_STREAM.WEIGHTS must be [rgb, flow], both >= 0 and not both 0, got {weights}")
    if cfg.INPUT.MODALITY != "rgb":
        raise ConfigError(f"MODEL.TWO_STREAM: this config is the RGB stream, but its INPUT.MODALITY is "
                          f"{cfg.INPUT.MODALITY!r}")
    flow_config = node.FLOW_CONFIG.replace("{split}", split)
    path = flow_config if os.path.isabs(flow_config) else \
        os.path.join(os.path.dirname(os.path.abspath(config_file)), flow_config)
    if not os.path.isfile(path):
        raise ConfigError(f"MODEL.TWO_STREAM.FLOW_CONFIG: no config {path}")
    shared = []
    for key, value in zip(opts[::2], opts[1::2]):
        if key.startswith("DATASETS.") or key in _SHARED_BY_STREAMS:
            shared += [str(key), str(value)]
    flow_cfg = load_config(path, shared + ["DATASETS.SPLIT", split])
    if flow_cfg.INPUT.MODALITY == "rgb":
        raise ConfigError(f"MODEL.TWO_STREAM.FLOW_CONFIG {path}: its INPUT.MODALITY is 'rgb'; the flow stream's is "
                          "'flow' or 'brox'")
    for key in _SHARED_BY_STREAMS:
        node_a, node_b, name = cfg, flow_cfg, key
        for part in key.split("."):
            node_a, node_b = node_a[part], node_b[part]
        if node_a != node_b:
            raise ConfigError(f"MODEL.TWO_STREAM: {name} is {node_a!r} here and {node_b!r} in the flow stream's "
                              f"{path}; the two streams must see the same data and clips")
    flow_weights = (node.FLOW_WEIGHTS or os.path.join(flow_cfg.OUTPUT_DIR, "model_final.pth")).replace("{split}",
                                                                                                       split)
    if not os.path.isfile(flow_weights):
        raise FileNotFoundError(f"the flow stream's weights {flow_weights} do not exist (MODEL.TWO_STREAM.FLOW_WEIGHTS"
                                f"{'' if node.FLOW_WEIGHTS else ' is empty: its OUTPUT_DIR model_final.pth'}); train "
                                f"it first: {tool} --config-file {path}")
    flow_cfg = flow_cfg.clone()
    flow_cfg.defrost()
    flow_cfg.MODEL.WEIGHTS = flow_weights
    flow_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    flow_cfg.freeze()
    return flow_cfg


def with_modality_of(cfg, other):
    """``cfg`` with ``other``'s INPUT.MODALITY and DATASETS.FLOW_DIR: the data of a two-stream evaluation (RGB
    frames and the flow stream's flow)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.INPUT.MODALITY, cfg.DATASETS.FLOW_DIR = other.INPUT.MODALITY, other.DATASETS.FLOW_DIR
    cfg.freeze()
    return cfg


def build_datasets(cfg, gt: Mapping, root: str) -> Tuple[TrainClipDataset, TestClipDataset]:
    """The training and test datasets of ``DATASETS.SPLIT`` with ``INPUT.*`` transforms."""
    names = list(gt["labels"])
    flip_labels = []
    for pair in cfg.INPUT.HFLIP_SWAP:
        unknown = [name for name in pair if name not in names]
        if len(pair) != 2 or unknown:
            raise ConfigError(f"INPUT.HFLIP_SWAP: {list(pair)!r} must be two class names of the dataset "
                             f"({', '.join(names)}); unknown: {unknown}")
        flip_labels.append((names.index(pair[0]), names.index(pair[1])))
    if cfg.DATALOADER.IDLE_HOLD < -1:
        raise ConfigError(f"DATALOADER.IDLE_HOLD must be -1 (to the video's ends), 0 (off) or a number of frames, "
                          f"got {cfg.DATALOADER.IDLE_HOLD}")
    if cfg.DATALOADER.IDLE_MARGIN < 0 or (cfg.DATALOADER.IDLE_MARGIN and not cfg.DATALOADER.IDLE_HOLD):
        raise ConfigError(f"DATALOADER.IDLE_MARGIN must be at least 0 frames, and above 0 needs DATALOADER.IDLE_HOLD "
                          f"(-1 or a number of frames); got IDLE_MARGIN {cfg.DATALOADER.IDLE_MARGIN}, IDLE_HOLD "
                          f"{cfg.DATALOADER.IDLE_HOLD}")
    if cfg.DATALOADER.IDLE_KEYFRAMES and not cfg.DATALOADER.IDLE_HOLD:
        raise ConfigError("DATALOADER.IDLE_KEYFRAMES needs DATALOADER.IDLE_HOLD (-1 or a number of frames): the "
                          "idle keyframes are those of its idle boxes")
    if cfg.TEST.SMOOTH_FRAMES < 0:
        raise ConfigError(f"TEST.SMOOTH_FRAMES must be at least 0 (frames to each side; 0: off), got "
                          f"{cfg.TEST.SMOOTH_FRAMES}")
    if cfg.DATALOADER.FRAME_CACHE_MB < 0:
        raise ConfigError(f"DATALOADER.FRAME_CACHE_MB must be at least 0 (MiB; 0: no cache), got "
                          f"{cfg.DATALOADER.FRAME_CACHE_MB}")
    if not 0 <= cfg.INPUT.HUE <= 0.5:
        raise ConfigError(f"INPUT.HUE must lie in [0, 0.5] (turns of the colour wheel), got {cfg.INPUT.HUE}")
    common = dict(clip_length=cfg.INPUT.CLIP_LENGTH, clip_stride=cfg.INPUT.CLIP_STRIDE, boundary=cfg.INPUT.BOUNDARY,
                  seed=cfg.SEED, modality=build_modality(cfg, root))
    train_tf = ClipTransform(short_side=list(cfg.INPUT.SHORT_SIDE_TRAIN), max_size=cfg.INPUT.MAX_SIZE,
                             hflip_prob=cfg.INPUT.HFLIP_PROB, brightness=cfg.INPUT.BRIGHTNESS,
                             contrast=cfg.INPUT.CONTRAST, saturation=cfg.INPUT.SATURATION,
                             hue=cfg.INPUT.HUE)
    test_tf = ClipTransform(short_side=cfg.INPUT.SHORT_SIDE_TEST, max_size=cfg.INPUT.MAX_SIZE)
    train = TrainClipDataset(gt=gt, frames_root=root, split=cfg.DATASETS.SPLIT, transform=train_tf,
                             flip_labels=flip_labels,
                             keyframes_per_video=cfg.DATALOADER.KEYFRAMES_PER_VIDEO or None,
                             background_frames=cfg.DATALOADER.BACKGROUND_FRAMES,
                             idle_hold=None if cfg.DATALOADER.IDLE_HOLD == -1 else cfg.DATALOADER.IDLE_HOLD,
                             idle_margin=cfg.DATALOADER.IDLE_MARGIN,
                             idle_keyframes=cfg.DATALOADER.IDLE_KEYFRAMES,
                             frame_cache_mb=cfg.DATALOADER.FRAME_CACHE_MB, **common)
    # no cache for the test set: video inference decodes each of its frames once a pass anyway, and a cache
    # filled during evaluation would only hold memory (up to FRAME_CACHE_MB) for the next one
    test = TestClipDataset(gt=gt, frames_root=root, split=cfg.DATASETS.SPLIT, transform=test_tf, **common)
    return train, test


def batch_collate(cfg):
    """``collate`` padding frames to a multiple of ``INPUT.SIZE_DIVISIBLE``."""
    return functools.partial(collate, size_divisible=cfg.INPUT.SIZE_DIVISIBLE)


def load_weights_3d(backbone: torch.nn.Module, cfg) -> None:
    """Loads ``MODEL.WEIGHTS_3D`` (a converted file, or a ``weights_3d.pth`` of ``tools/train_cls.py``) into the 3D
    network ``backbone``, its input convention included; a file whose convention is not that of an explicit
    ``MODEL.BACKBONE_3D.PRESET`` is a ConfigError."""
    before = backbone.input_norm.convention()
    load_pretrained_3d(backbone, cfg.MODEL.WEIGHTS_3D, prefix="backbone.", strict=True)
    after = backbone.input_norm.convention()
    if cfg.MODEL.BACKBONE_3D.PRESET and after != before:
        raise ConfigError(f"MODEL.WEIGHTS_3D {cfg.MODEL.WEIGHTS_3D} expects clips {after}, but MODEL.BACKBONE_3D."
                          f"PRESET {cfg.MODEL.BACKBONE_3D.PRESET!r} gives {before}: set the preset of the "
                          "weights' family")


def load_model_weights(model: torch.nn.Module, path: str, *, unused_prefixes: Tuple[str, ...] = ()) -> None:
    """Loads ``MODEL.WEIGHTS`` (our training checkpoint at ``path``, or its bare state dict) into ``model``, leaving
    out the keys under ``unused_prefixes``. A missing file, a tensor of another shape (another WIDTH or number of
    classes: one line, both shapes) or a key that does not fit is an error naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.WEIGHTS not found: {path}")
    state = load_checkpoint(path, "MODEL.WEIGHTS")
    state = state.get("model", state)
    if unused_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(unused_prefixes)}
    check_shapes(state, model, path)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not fit the model: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


def build_model(cfg, num_classes: int) -> torch.nn.Module:
    """The detector of ``cfg.MODEL`` with its weights: ``WEIGHTS_2D`` and ``WEIGHTS_3D`` converted on load, then
    ``WEIGHTS`` (our own checkpoint) over them. Weights bring their input conventions (``ActionDetector``'s
    ``normalize_2d`` / ``stride_in_1x1_2d`` and the 3D network's ``input_norm``): the last loaded wins, and it is
    logged. A missing file or a key that does not fit is an error naming the file and key; a 3D file of another
    preset than ``MODEL.BACKBONE_3D.PRESET`` a ConfigError. A full detector's checkpoint also loads into a model
    without the 2D part (``MODEL.PROPOSALS`` gt or given: the same weights on oracle boxes); its 2D weights are
    then unused. A checkpoint written before conventions were saved loads with the defaults it was trained with."""
    model = build_action_detector_from_cfg(cfg, num_classes)
    if cfg.MODEL.WEIGHTS_2D:
        if model.backbone_2d is None:
            raise ValueError(f"MODEL.WEIGHTS_2D={cfg.MODEL.WEIGHTS_2D!r} given, but MODEL.PROPOSALS="
                             f"{cfg.MODEL.PROPOSALS!r} builds no 2D detector")
        # ResNetC4 and torchvision's BackboneWithFPN both hold the ResNet as .body
        prefixes = {"body": "backbone_2d.body.", "rpn": "rpn.head.", **({"fpn": "backbone_2d.fpn."}
                                                                         if cfg.MODEL.BACKBONE_2D.FPN else {})}
        converted = load_2d_weights(cfg.MODEL.WEIGHTS_2D)
        load_2d_into(converted, model, prefixes=prefixes, strict=True)
        model.set_conventions_2d(converted.meta)
    if cfg.MODEL.WEIGHTS_3D:
        load_weights_3d(model.backbone_3d, cfg)
    if cfg.MODEL.WEIGHTS:
        # oracle or given boxes: a full detector's 2D part has nothing to fill
        unused = ("backbone_2d.", "rpn.", "normalize_2d.", "stride_in_1x1_2d") if model.backbone_2d is None else ()
        # an older file without the convention keys gets those it was trained with (ActionDetector.load_state_dict)
        load_model_weights(model, cfg.MODEL.WEIGHTS, unused_prefixes=unused)
    logger.info("input conventions: %s", model.conventions())
    return model


def build_two_stream_detector(cfg, flow_cfg, num_classes: int) -> TwoStreamDetector:
    """ACT's two-stream fusion of ``cfg``'s detector (the RGB stream, ``MODEL.WEIGHTS``) and ``flow_cfg``'s (its
    ``MODEL.WEIGHTS``; ``flow_stream``), with ``MODEL.TWO_STREAM.WEIGHTS`` normalised to the RGB share."""
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("MODEL.TWO_STREAM: MODEL.WEIGHTS must name the RGB stream's trained weights")
    w_rgb, w_flow = (float(v) for v in cfg.MODEL.TWO_STREAM.WEIGHTS)
    return TwoStreamDetector(rgb=build_model(cfg, num_classes), flow=build_model(flow_cfg, num_classes),
                             rgb_weight=w_rgb / (w_rgb + w_flow))


def model_changes(cfg) -> List[Tuple[int, Callable[[torch.nn.Module], None]]]:
    """The ``Trainer``'s ``model_changes`` that ``cfg.SOLVER`` asks for: ``FREEZE_2D_AT`` (-1: none).

    A recipe's freeze is kept out, with a warning, where it cannot apply: at or after ``SOLVER.MAX_ITER`` (a
    shortened run, as detectron2 ignores ``SOLVER.STEPS`` past the end), or without a 2D backbone
    (``MODEL.PROPOSALS`` "gt" or "given", the oracle-boxes ablation of the same recipe)."""
    at = cfg.SOLVER.FREEZE_2D_AT
    if at == -1:
        return []
    if at < 0:
        raise ConfigError(f"SOLVER.FREEZE_2D_AT must be -1 (never) or an iteration >= 0, got {at}")
    if at >= cfg.SOLVER.MAX_ITER:
        logger.warning("SOLVER.FREEZE_2D_AT %d is not before SOLVER.MAX_ITER %d: the 2D backbone trains to the end",
                       at, cfg.SOLVER.MAX_ITER)
        return []
    if cfg.MODEL.PROPOSALS != "rpn":
        logger.warning("SOLVER.FREEZE_2D_AT %d: MODEL.PROPOSALS %r builds no 2D backbone, so nothing is frozen",
                       at, cfg.MODEL.PROPOSALS)
        return []
    return [(at, ActionDetector.freeze_backbone_2d)]


def cpu_threads(cfg) -> Optional[ThreadGovernor]:
    """Sets torch's CPU threads: ``CPU_THREADS`` when given; else a ``ThreadGovernor`` (returned) that keeps them
    at the cores other processes leave free, at most a core each less one per data-loading worker (oversubscribed
    OpenMP threads spin-wait for a core another process holds: docs/benchmarks.md, "A busy machine")."""
    if cfg.CPU_THREADS < 0:
        raise ConfigError(f"CPU_THREADS must be 0 (follow the free cores) or a number of threads, got "
                          f"{cfg.CPU_THREADS}")
    if cfg.CPU_THREADS:
        torch.set_num_threads(cfg.CPU_THREADS)
        return None
    return ThreadGovernor(max_threads=max(1, available_cores() // get_world_size() - cfg.DATALOADER.NUM_WORKERS))


def build_trainer(cfg, model: torch.nn.Module, train_set, *, device, eval_fn, governor: Optional[ThreadGovernor],
                  collate_fn: Optional[Callable[[list], Any]] = None,
                  model_changes: Sequence[Tuple[int, Callable[[torch.nn.Module], None]]] = (),
                  lr_factors: Optional[Mapping[str, float]] = None) -> Trainer:
    """The ``Trainer`` of ``cfg.SOLVER`` (optimizer, schedule, checkpoints) for ``model`` on ``train_set``;
    ``lr_factors`` as ``build_optimizer``'s (``SOLVER.BACKBONE_LR_FACTOR`` on the 3D network)."""
    world = get_world_size()
    if cfg.SOLVER.BATCH_SIZE % world:
        raise ConfigError(f"SOLVER.BATCH_SIZE={cfg.SOLVER.BATCH_SIZE} does not split over {world} processes")
    optimizer = build_optimizer(model, name=cfg.SOLVER.OPTIMIZER, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                                weight_decay=cfg.SOLVER.WEIGHT_DECAY, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
                                lr_factors={k: v for k, v in (lr_factors or {}).items() if v != 1.0})
    scheduler = build_lr_scheduler(optimizer, max_iter=cfg.SOLVER.MAX_ITER, schedule=cfg.SOLVER.SCHEDULE,
                                   steps=tuple(cfg.SOLVER.STEPS), gamma=cfg.SOLVER.GAMMA,
                                   warmup_iters=cfg.SOLVER.WARMUP_ITERS, warmup_factor=cfg.SOLVER.WARMUP_FACTOR)
    return Trainer(model, dataset=train_set, batch_size=cfg.SOLVER.BATCH_SIZE // world, optimizer=optimizer,
                   scheduler=scheduler, max_iter=cfg.SOLVER.MAX_ITER, output_dir=cfg.OUTPUT_DIR,
                   checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD, eval_period=cfg.TEST.EVAL_PERIOD,
                   eval_fn=eval_fn, clip_grad_norm=cfg.SOLVER.CLIP_GRAD_NORM or None,
                   amp_dtype=cfg.SOLVER.AMP_DTYPE or None, device=device, collate_fn=collate_fn,
                   seed=cfg.SEED, num_workers=cfg.DATALOADER.NUM_WORKERS, model_changes=model_changes,
                   thread_governor=governor)
