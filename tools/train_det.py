#!/usr/bin/env python
"""Trains (or, with --eval-only, evaluates) the action detector a config describes.

    python tools/train_det.py --config-file configs/synthetic/s3dg_tiny.yaml [--resume] [--eval-only]
                              [--num-gpus N] [KEY VALUE ...]

Checkpoints, metrics.json, TensorBoard events, the final detections.npz and frame_map.json (the --json format
of tools/eval_jhmdb.py) go to OUTPUT_DIR; on the synthetic set also visualization/<video>.mp4 and
<video>_sheet.png, the final detections drawn on the first test video (tools/visualize_video.py draws others).
The synthetic dataset is made on first use. --num-gpus N starts N processes on this machine (gloo on CPU, nccl on
CUDA); under torchrun the environment decides.
"""
from __future__ import annotations

import json
import os
import time

import torch

from s3d_det.checkpoint.training import last_checkpoint
from s3d_det.config import ConfigError, load_config
from s3d_det.engine import Trainer, is_main_process, seed_all
from s3d_det.engine.defaults import (
    batch_collate,
    build_datasets,
    build_model,
    build_two_stream_detector,
    cpu_threads,
    default_argument_parser,
    flow_stream,
    launch_tool,
    load_dataset_gt,
    model_changes,
    resolve_device,
    with_modality_of,
    write_config,
)
from s3d_det.engine.defaults import build_trainer as build_cfg_trainer
from s3d_det.engine.evaluation import evaluate_detector
from s3d_det.engine.inference import VideoDetector


def show_example(cfg, gt: dict, root: str) -> None:
    """Draws the final detections (score >= 0.5) and the ground truth on the first test video: an MP4 and a contact
    sheet in OUTPUT_DIR/visualization; prints where they are."""
    from s3d_det.data.annotations import keyframe_boxes
    from s3d_det.data.frames import open_frames
    from s3d_det.evaluation.detections import load_detections
    from s3d_det.vis import render_video

    dets = load_detections(os.path.join(cfg.OUTPUT_DIR, "detections.npz"))
    video = dets.videos[0]
    base = os.path.join(cfg.OUTPUT_DIR, "visualization", video.replace("/", "_"))
    per_frame = dets.per_frame
    render_video(open_frames(root, video), per_frame.select(per_frame.video == 0), gt["labels"],
                 output=base + ".mp4", fps=25, gt=keyframe_boxes(gt, video), sheet=base + "_sheet.png", progress=False)
    print(f"detections on test video {video} (score >= 0.5; ground truth dashed): {base}.mp4, {base}_sheet.png")


def build_trainer(cfg, model, train_set, *, device, eval_fn, governor) -> Trainer:
    """The detector's ``Trainer`` (``defaults.build_trainer``), after the checks of its data options."""
    if cfg.DATALOADER.BACKGROUND_FRAMES and cfg.MODEL.PROPOSALS == "gt" and cfg.DATALOADER.IDLE_HOLD != -1:
        raise ConfigError("DATALOADER.BACKGROUND_FRAMES needs RoIs on frames without boxes: use MODEL.PROPOSALS "
                          "rpn or given, not gt (or DATALOADER.IDLE_HOLD -1, which boxes every person)")
    return build_cfg_trainer(cfg, model, train_set, device=device, eval_fn=eval_fn, governor=governor,
                             collate_fn=batch_collate(cfg), model_changes=model_changes(cfg),
                             lr_factors={"backbone_3d": cfg.SOLVER.BACKBONE_LR_FACTOR})


def with_pretrained_3d(cfg, args):
    """``cfg`` with ``MODEL.WEIGHTS_3D`` set to the weights of ``MODEL.BACKBONE_3D.PRETRAIN`` (trained now, or
    reused: ``engine.classification.pretrained_weights_3d``) when that is set and no weights are given; an
    evaluation, a run that starts from ``MODEL.WEIGHTS``, or a ``--resume`` with a checkpoint in OUTPUT_DIR (it
    holds every weight) needs no pretraining."""
    if not cfg.MODEL.BACKBONE_3D.PRETRAIN or cfg.MODEL.WEIGHTS_3D or cfg.MODEL.WEIGHTS or args.eval_only:
        return cfg
    if args.resume and last_checkpoint(cfg.OUTPUT_DIR):
        return cfg
    from s3d_det.engine.classification import pretrained_weights_3d

    weights = pretrained_weights_3d(cfg, args.config_file)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS_3D = weights
    cfg.freeze()
    return cfg


def main(args) -> None:
    cfg = with_pretrained_3d(load_config(args.config_file, args.opts), args)
    write_config(cfg)
    seed_all(cfg.SEED)
    device = resolve_device(cfg.MODEL.DEVICE)
    governor = cpu_threads(cfg) if device.type == "cpu" else None
    gt, root = load_dataset_gt(cfg, make_synthetic=is_main_process())
    # --eval-only of a two-stream config (MODEL.TWO_STREAM) evaluates ACT's fusion of this config's detector and the
    # flow stream's, on the RGB frames and the flow stream's flow
    flow_cfg = flow_stream(cfg, args.config_file, args.opts) if args.eval_only else None
    data_cfg = with_modality_of(cfg, flow_cfg) if flow_cfg else cfg
    train_set, test_set = build_datasets(data_cfg, gt, root)
    num_classes = len(gt["labels"])
    model = (build_two_stream_detector(cfg, flow_cfg, num_classes) if flow_cfg
             else build_model(cfg, num_classes=num_classes)).to(device)

    def evaluate(m: torch.nn.Module) -> dict:
        # the one inference path (tools/eval_jhmdb.py's): one clip per keyframe, float32 as the scores of earlier
        # releases, BatchNorm folded into a copy of the current weights
        detector = VideoDetector.from_config(m, data_cfg, mode="per_keyframe", device=device, amp_dtype=None)
        result = evaluate_detector(detector, test_set, gt, output_dir=cfg.OUTPUT_DIR, protocol=cfg.TEST.PROTOCOL,
                                   iou=cfg.TEST.IOU, with_video_map=cfg.TEST.VIDEO_MAP)
        metrics = {"frame_mAP": result["frame_mAP"]}
        if result["video_mAP"]:
            metrics.update({f"video_mAP@{k}": v for k, v in result["video_mAP"].items()})
        return metrics

    if args.eval_only:
        evaluate(model)
    else:
        trainer = build_trainer(cfg, model, train_set, device=device, eval_fn=evaluate, governor=governor)
        trainer.resume_or_load(resume=args.resume)  # a --resume without a checkpoint warns and starts at 0
        if is_main_process() and trainer.resumed_from:
            print(f"resuming from {trainer.resumed_from} at iteration {trainer.start_iter}")
        start = time.perf_counter()
        trainer.train()  # evaluates at the end (and every TEST.EVAL_PERIOD)
        if is_main_process():
            print(f"training took {time.perf_counter() - start:.0f} s")
    if is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "frame_map.json")
        with open(path) as f:
            result = json.load(f)
        print(f"frame-mAP ({result['protocol']}, IoU {result['iou']}): {result['frame_mAP']:.2f}  -> {path}")
        if cfg.DATASETS.NAME == "synthetic":
            show_example(cfg, gt, root)


if __name__ == "__main__":
    launch_tool(main, default_argument_parser(__doc__.split("\n\n")[0]).parse_args())
