"""The classification half: clip classifiers trained and scored from a config (``tools/train_cls.py``), their 3D
weights exported for the detector, and the detector's pretraining step (``MODEL.BACKBONE_3D.PRETRAIN``).

``train_classifier(cfg)`` trains ``VideoClassifier.from_config`` on ``DATASETS.NAME``'s official training list with
the shared ``Trainer`` (checkpoints, exact resume, NaN stop, metrics.json, TensorBoard, DDP), evaluates with the
multi-view protocol (``TEST.NUM_CLIPS`` x ``TEST.NUM_CROPS``) and writes ``weights_3d.pth``: the classifier in the
format of ``tools/convert_weights.py`` (``{"state_dict", "meta"}``), which ``MODEL.WEIGHTS_3D`` loads exactly as a
converted Kinetics file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from s3d_det.config import ConfigError, load_config
from s3d_det.data.video_dataset import TestVideoDataset, TrainVideoDataset, view_batches
from s3d_det.data.video_lists import VideoList, read_ucf101, read_video_list
from s3d_det.evaluation.classification import (
    aggregate_views,
    classification_metrics,
    format_per_class_table,
    plot_confusion,
)
from s3d_det.modeling.s3dg import VideoClassifier
from s3d_det.modeling.two_stream import CLS_FUSION_METHODS, fuse_class_scores
from s3d_det.utils.io import atomic_write, write_json

from ..checkpoint.training import last_checkpoint
from .defaults import (
    build_modality,
    build_trainer,
    cpu_threads,
    data_root,
    flow_stream,
    load_model_weights,
    load_weights_3d,
    resolve_device,
    synthetic_classes,
    write_config,
)
from .distributed import all_gather, get_rank, get_world_size, is_main_process, synchronize
from .sampler import seed_all

logger = logging.getLogger(__name__)

__all__ = ["CLS_DATASETS", "WEIGHTS_3D_NAME", "build_video_lists", "build_cls_datasets", "build_classifier",
           "classify_views", "evaluate_classifier", "export_weights_3d", "train_classifier", "pretrained_weights_3d"]

CLS_DATASETS = ("ucf101", "hmdb51", "kinetics", "ssv2", "synthetic_clips")
WEIGHTS_3D_NAME = "weights_3d.pth"  # in OUTPUT_DIR: the trained classifier, for MODEL.WEIGHTS_3D


def build_video_lists(cfg, *, make_synthetic: bool = True) -> Tuple[VideoList, VideoList]:
    """The training and test ``VideoList`` of ``DATASETS.NAME`` / ``ROOT`` / ``SPLIT``. The synthetic clip set is
    made first when missing (``s3d_det.data.synthetic_clips``; ``SYNTHETIC_*`` keys give its size and seed)."""
    name, root = cfg.DATASETS.NAME, data_root(cfg)
    if name not in CLS_DATASETS:
        raise ConfigError(f"DATASETS.NAME={name!r} is not a classification dataset: expected one of "
                          f"{', '.join(CLS_DATASETS)}")
    if name == "synthetic_clips":
        from s3d_det.data.synthetic_clips import ensure_synthetic_clips

        num, test = cfg.DATASETS.SYNTHETIC_NUM_VIDEOS, cfg.DATASETS.SYNTHETIC_TEST_VIDEOS
        if not 0 < test < num:
            raise ConfigError(f"DATASETS.SYNTHETIC_TEST_VIDEOS must be in 1..SYNTHETIC_NUM_VIDEOS - 1 "
                              f"({num - 1}), got {test}")
        if make_synthetic:
            ensure_synthetic_clips(root, num_videos=num, seed=cfg.DATASETS.SYNTHETIC_SEED, test_fraction=test / num,
                                   classes=synthetic_classes(cfg))
        synchronize()
        lists = [read_ucf101(root, split=1, subset=subset) for subset in ("train", "test")]
        for videos in lists:
            videos.dataset = name
        return lists[0], lists[1]
    train, test = (read_video_list(name, root, split=cfg.DATASETS.SPLIT, subset=subset) for subset in ("train", "test"))
    if train.classes != test.classes:
        raise ConfigError(f"{name} in {root}: the training and test lists name different classes")
    return train, test


def build_cls_datasets(cfg, train: VideoList, test: VideoList) -> Tuple[TrainVideoDataset, TestVideoDataset]:
    """The datasets of ``INPUT.*`` (clip, crops, flip, jitter, the modality: RGB or flow under ``DATASETS.FLOW_DIR``)
    and ``TEST.NUM_CLIPS`` / ``NUM_CROPS``."""
    if len(cfg.INPUT.CROP_AREA) != 2:
        raise ConfigError(f"INPUT.CROP_AREA must be [lo, hi], got {list(cfg.INPUT.CROP_AREA)}")
    if cfg.INPUT.SHORT_SIDE_TEST and cfg.INPUT.SHORT_SIDE_TEST < cfg.INPUT.CROP_SIZE:
        raise ConfigError(f"INPUT.SHORT_SIDE_TEST={cfg.INPUT.SHORT_SIDE_TEST} is smaller than INPUT.CROP_SIZE="
                          f"{cfg.INPUT.CROP_SIZE}: the test crops are cut from frames resized to it (0: the crop size)")
    if cfg.TEST.NUM_CROPS not in (1, 3) or cfg.TEST.NUM_CLIPS < 1:
        raise ConfigError(f"TEST.NUM_CROPS must be 1 or 3 and TEST.NUM_CLIPS at least 1, got {cfg.TEST.NUM_CROPS} "
                          f"and {cfg.TEST.NUM_CLIPS}")
    common = dict(clip_length=cfg.INPUT.CLIP_LENGTH, clip_stride=cfg.INPUT.CLIP_STRIDE, crop_size=cfg.INPUT.CROP_SIZE,
                  modality=build_modality(cfg, data_root(cfg)))
    try:
        train_set = TrainVideoDataset(train, crop_area=tuple(cfg.INPUT.CROP_AREA), hflip_prob=cfg.INPUT.HFLIP_PROB,
                                      brightness=cfg.INPUT.BRIGHTNESS, contrast=cfg.INPUT.CONTRAST,
                                      saturation=cfg.INPUT.SATURATION, hue=cfg.INPUT.HUE, seed=cfg.SEED, **common)
        test_set = TestVideoDataset(test, short_side=cfg.INPUT.SHORT_SIDE_TEST or None, num_clips=cfg.TEST.NUM_CLIPS,
                                    num_crops=cfg.TEST.NUM_CROPS, **common)
    except ValueError as e:  # the datasets' argument checks, in the config's words
        raise ConfigError(f"INPUT / TEST keys: {e}") from None
    if cfg.INPUT.HFLIP_PROB and not train.hflip:
        logger.warning("%s: no horizontal flips (its classes name left and right); INPUT.HFLIP_PROB is ignored",
                       train.dataset)
    return train_set, test_set


def build_classifier(cfg, num_classes: int) -> VideoClassifier:
    """``VideoClassifier.from_config`` with its weights: ``MODEL.WEIGHTS_3D`` (a converted file, or a
    ``weights_3d.pth`` of ours) fills the backbone and its input convention, and the head stays new (fine-tuning
    to other classes); ``MODEL.WEIGHTS`` (our training checkpoint) fills everything."""
    model = VideoClassifier.from_config(cfg, num_classes)
    if cfg.MODEL.WEIGHTS_3D:  # the same check of its input convention against an explicit preset as the detector's
        load_weights_3d(model.backbone, cfg)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
    return model


def classify_views(model: VideoClassifier, dataset: TestVideoDataset, *, batch_size: int, device: torch.device,
                   num_workers: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Logits of every view of ``dataset`` (with several processes each takes every world_size-th item and all
    get every row): ((N_views, K) float32, (N_views,) video index)."""
    items = list(range(get_rank(), len(dataset), get_world_size()))
    loader = DataLoader(torch.utils.data.Subset(dataset, items), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=view_batches)
    logits: List[np.ndarray] = []
    videos: List[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            out = model(batch["clips"].to(device)).float().cpu().numpy()
            logits.append(out)
            videos.append(np.repeat(batch["videos"].numpy(), batch["views_per_item"]))
    gathered = all_gather((np.concatenate(logits) if logits else np.zeros((0, 0), np.float32),
                           np.concatenate(videos) if videos else np.zeros(0, np.int64)))
    parts = [(lg, v) for lg, v in gathered if len(v)]
    return np.concatenate([lg for lg, _ in parts]), np.concatenate([v for _, v in parts])


def _views(dataset: TestVideoDataset) -> str:
    """"10 clips x 3 crops", "1 clip x 1 crop": the multi-view protocol in words."""
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 's'}"

    return f"{count(dataset.num_clips, 'clip')} x {count(dataset.num_crops, 'crop')}"


def evaluate_classifier(model: VideoClassifier, dataset: TestVideoDataset, *, batch_size: int, device: torch.device,
                        num_workers: int = 0, output_dir: Optional[str] = None) -> Dict[str, float]:
    """Top-1, top-5 and mean class accuracy (percent) of the multi-view protocol on ``dataset``. With
    ``output_dir`` the main process writes there ``cls_results.json`` (every metric, per class), ``per_class.txt``
    and ``confusion.png``."""
    logits, videos = classify_views(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers)
    records = dataset.videos.records
    probs = aggregate_views(logits, videos, len(records))
    labels = np.array([r.label for r in records])
    result = classification_metrics(probs, labels, dataset.classes)
    if output_dir and is_main_process():
        write_json(os.path.join(output_dir, "cls_results.json"),
                   {"dataset": dataset.videos.dataset, "views": _views(dataset), **result.to_dict()})
        with atomic_write(os.path.join(output_dir, "per_class.txt"), ".txt") as tmp:
            with open(tmp, "w") as f:
                f.write(format_per_class_table(result) + "\n")
        plot_confusion(result, os.path.join(output_dir, "confusion.png"))
    return {"top1": result.top1, "top5": result.top5, "mean_class_accuracy": result.mean_class_accuracy}


def _frame_counts(dataset: TestVideoDataset) -> List[int]:
    """Each video's frame count as ``dataset`` samples its clips (for flow: its flow frames + 1)."""
    counts = []
    for index in range(len(dataset.videos.records)):
        source = dataset._source(index)
        try:
            counts.append(int(source.num_frames))
        finally:
            source.close()
    return counts


def evaluate_two_stream(models: Tuple[VideoClassifier, VideoClassifier],
                        datasets: Tuple[TestVideoDataset, TestVideoDataset], *, method: str,
                        weights: Tuple[float, float], batch_size: int, device: torch.device, num_workers: int = 0,
                        output_dir: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """The RGB and flow classifiers (``models``) on the same test videos and views (``datasets``: RGB and flow),
    and their fusion (``modeling.two_stream.fuse_class_scores``, ``method`` and ``weights``): {"rgb", "flow",
    "fused"} -> top-1, top-5, mean class accuracy (percent). With ``output_dir`` the main process writes there
    ``cls_results.json`` (the fused result, per class, and each stream's metrics under "streams"), the fused
    ``per_class.txt`` and ``confusion.png``."""
    rgb_set, flow_set = datasets
    if [r.video for r in rgb_set.videos.records] != [r.video for r in flow_set.videos.records] or \
            rgb_set.num_views != flow_set.num_views:
        raise ValueError("the two streams' test sets differ in videos or views")
    # each test set places its clips by its own frame count: the views pair up only when the counts agree
    for index, (n_rgb, n_flow) in enumerate(zip(_frame_counts(rgb_set), _frame_counts(flow_set))):
        if n_rgb != n_flow:
            video = rgb_set.videos.records[index].video
            raise ValueError(f"video {video!r}: {n_rgb} frames, but its flow is for {n_flow}: the two streams' clips "
                             "would not be the same frames (compute the flow from the frames the RGB stream reads, "
                             "e.g. extract the frames with tools/prepare_data.py frames first)")
    views = [classify_views(m, d, batch_size=batch_size, device=device, num_workers=num_workers)
             for m, d in zip(models, datasets)]
    (logits_rgb, videos), (logits_flow, videos_flow) = views
    if not np.array_equal(videos, videos_flow):
        raise ValueError("the two streams' views came in different orders")
    records = rgb_set.videos.records
    labels = np.array([r.label for r in records])
    probs = {"rgb": aggregate_views(logits_rgb, videos, len(records)),
             "flow": aggregate_views(logits_flow, videos, len(records))}
    if method == "logits":  # I3D: each view's weighted logit sum, its softmax averaged over the views
        fused = fuse_class_scores(logits_rgb, logits_flow, method="logits", weights=weights)
        probs["fused"] = aggregate_views(fused, videos, len(records))
    else:
        probs["fused"] = fuse_class_scores(probs["rgb"], probs["flow"], method="softmax", weights=weights)
    results = {name: classification_metrics(p, labels, rgb_set.classes) for name, p in probs.items()}
    summary = {name: {"top1": r.top1, "top5": r.top5, "mean_class_accuracy": r.mean_class_accuracy}
               for name, r in results.items()}
    if output_dir and is_main_process():
        write_json(os.path.join(output_dir, "cls_results.json"),
                   {"dataset": rgb_set.videos.dataset, "views": _views(rgb_set), "fusion": method,
                    "fusion_weights": list(weights), **results["fused"].to_dict(),
                    "streams": {name: summary[name] for name in ("rgb", "flow")}})
        with atomic_write(os.path.join(output_dir, "per_class.txt"), ".txt") as tmp:
            with open(tmp, "w") as f:
                f.write(format_per_class_table(results["fused"]) + "\n")
        plot_confusion(results["fused"], os.path.join(output_dir, "confusion.png"))
    return summary


def config_digest(cfg) -> str:
    """A short hash of the config's dump: what ``pretrained_weights_3d`` compares to reuse a file."""
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]


def export_weights_3d(model: VideoClassifier, path: str, *, cfg, classes: List[str]) -> None:
    """Writes the classifier as ``tools/convert_weights.py`` writes a converted file (``{"state_dict", "meta"}``,
    keys ``backbone.*`` and ``head.*``, the input convention in ``backbone.input_norm``), atomically; its meta
    also names the classes and the config that trained it."""
    node = cfg.MODEL.BACKBONE_3D
    meta = {"source": "s3d_det", "preset": node.PRESET, "variant": node.VARIANT, "width": node.WIDTH,
            "has_head": True, "classes": list(classes), "dataset": cfg.DATASETS.NAME, "config": cfg.dump(),
            "config_digest": config_digest(cfg)}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path, ".pth") as tmp:
        with open(tmp, "wb") as f:
            torch.save({"state_dict": state, "meta": meta}, f)


def train_classifier(cfg, *, resume: bool = False, eval_only: bool = False, config_file: str = "",
                     opts: Sequence[str] = ()) -> str:
    """Trains (or with ``eval_only`` evaluates ``MODEL.WEIGHTS``) the classifier ``cfg`` describes; returns the
    path of ``OUTPUT_DIR/weights_3d.pth`` (written after training). Every process of a DDP job calls it. With
    ``eval_only`` and ``MODEL.TWO_STREAM.FLOW_CONFIG`` (relative to the folder of ``config_file``; ``opts``, the
    run's overrides, see ``flow_stream``) it evaluates the two streams and their fusion (``evaluate_two_stream``)."""
    if eval_only and cfg.MODEL.TWO_STREAM.FLOW_CONFIG:
        return _evaluate_two_stream_config(cfg, config_file, opts)
    write_config(cfg)
    seed_all(cfg.SEED)
    device = resolve_device(cfg.MODEL.DEVICE)
    governor = cpu_threads(cfg) if device.type == "cpu" else None
    train, test = build_video_lists(cfg, make_synthetic=is_main_process())
    for videos in (train, test):
        if videos.missing and is_main_process():
            path = os.path.join(cfg.OUTPUT_DIR, f"missing_{videos.subset}.txt")
            with atomic_write(path, ".txt") as tmp:
                with open(tmp, "w") as f:
                    f.writelines(v + "\n" for v in videos.missing)
            logger.warning("%s %s: %d listed videos are not on disk and are left out (listed in %s)",
                           videos.dataset, videos.subset, len(videos.missing), path)
    train_set, test_set = build_cls_datasets(cfg, train, test)
    model = build_classifier(cfg, len(train.classes)).to(device)

    def evaluate(m: torch.nn.Module) -> Dict[str, float]:
        return evaluate_classifier(m, test_set, batch_size=cfg.TEST.BATCH_SIZE, device=device,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS, output_dir=cfg.OUTPUT_DIR)

    path = os.path.join(cfg.OUTPUT_DIR, WEIGHTS_3D_NAME)
    if eval_only:
        metrics = evaluate(model)
    else:
        trainer = build_trainer(cfg, model, train_set, device=device, eval_fn=evaluate, governor=governor,
                                lr_factors={"backbone": cfg.SOLVER.BACKBONE_LR_FACTOR})
        trainer.resume_or_load(resume=resume)
        if is_main_process() and trainer.resumed_from:
            print(f"resuming from {trainer.resumed_from} at iteration {trainer.start_iter}")
        trainer.train()
        if is_main_process():
            export_weights_3d(model, path, cfg=cfg, classes=train.classes)
        synchronize()
        with open(os.path.join(cfg.OUTPUT_DIR, "cls_results.json")) as f:
            metrics = json.load(f)
    if is_main_process():
        print(f"{train.dataset} {test.subset}, {_views(test_set)}: top-1 "
              f"{metrics['top1']:.2f}, top-5 {metrics['top5']:.2f}, mean class accuracy "
              f"{metrics['mean_class_accuracy']:.2f} -> {cfg.OUTPUT_DIR}")
    return path


def _evaluate_two_stream_config(cfg, config_file: str, opts: Sequence[str]) -> str:
    write_config(cfg)
    flow_cfg = flow_stream(cfg, config_file, opts, tool="tools/train_cls.py")
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("MODEL.TWO_STREAM: MODEL.WEIGHTS must name the RGB stream's trained weights")
    device = resolve_device(cfg.MODEL.DEVICE)
    if device.type == "cpu":
        cpu_threads(cfg)
    tests = []
    for stream_cfg in (cfg, flow_cfg):
        train, test = build_video_lists(stream_cfg, make_synthetic=False)
        tests.append(build_cls_datasets(stream_cfg, train, test)[1])
    models = tuple(build_classifier(c, len(tests[0].classes)).to(device) for c in (cfg, flow_cfg))
    node = cfg.MODEL.TWO_STREAM
    if node.CLS_FUSION not in CLS_FUSION_METHODS:
        raise ConfigError(f"MODEL.TWO_STREAM.CLS_FUSION must be one of {', '.join(CLS_FUSION_METHODS)}, got "
                          f"{node.CLS_FUSION!r}")
    summary = evaluate_two_stream(models, tuple(tests), method=node.CLS_FUSION, weights=tuple(node.WEIGHTS),
                                  batch_size=cfg.TEST.BATCH_SIZE, device=device,
                                  num_workers=cfg.DATALOADER.NUM_WORKERS, output_dir=cfg.OUTPUT_DIR)
    if is_main_process():
        for name, m in summary.items():
            print(f"{name:>5}: top-1 {m['top1']:.2f}, top-5 {m['top5']:.2f}, mean class accuracy "
                  f"{m['mean_class_accuracy']:.2f}")
        print(f"{tests[0].videos.dataset} {tests[0].videos.subset}, {_views(tests[0])}, {node.CLS_FUSION} fusion "
              f"{list(node.WEIGHTS)} -> {cfg.OUTPUT_DIR}")
    return os.path.join(cfg.OUTPUT_DIR, WEIGHTS_3D_NAME)


def pretrained_weights_3d(det_cfg, config_file: str) -> str:
    """The 3D weights of ``det_cfg.MODEL.BACKBONE_3D.PRETRAIN`` (a classification config, relative to the folder
    of ``config_file``): its ``OUTPUT_DIR/weights_3d.pth`` when that file was trained with exactly this config
    (its meta's digest), else the classifier is trained now (resuming an interrupted run) and exported. A file
    there from another config is a ConfigError: it is never overwritten."""
    pretrain = det_cfg.MODEL.BACKBONE_3D.PRETRAIN
    path = pretrain if os.path.isabs(pretrain) else os.path.join(os.path.dirname(os.path.abspath(config_file)),
                                                                 pretrain)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.BACKBONE_3D.PRETRAIN: no config {path}")
    cfg = load_config(path)
    weights = os.path.join(cfg.OUTPUT_DIR, WEIGHTS_3D_NAME)
    if os.path.isfile(weights):
        from s3d_det.checkpoint.video import load_converted

        _, meta = load_converted(weights)
        if meta.get("config_digest") == config_digest(cfg):
            if is_main_process():
                print(f"pretrained 3D network: {weights} (reused: trained with {path} as it is now)")
            return weights
        raise ConfigError(f"{weights} was not trained with {path} as it is now (the config differs): remove it (or "
                          f"the folder) to pretrain again, or set that config's OUTPUT_DIR to another folder")
    record = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    if last_checkpoint(cfg.OUTPUT_DIR) and os.path.isfile(record):
        with open(record) as f:
            if f.read() != cfg.dump():
                raise ConfigError(f"{cfg.OUTPUT_DIR} holds a checkpoint of a training of another config ({record} "
                                  f"differs from {path}): remove that folder to pretrain again, or set that config's "
                                  "OUTPUT_DIR to another folder")
    if is_main_process():
        print(f"pretraining the 3D network: {path} -> {weights}")
    return train_classifier(cfg, resume=True)
