"""Running a detector over every frame of the test videos, and scoring what it finds.

Each keyframe is one clip forward (the per-keyframe mode). With several processes each takes every
world_size-th keyframe and rank 0 gathers the rows.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from s3d_det.evaluation import Detections, FrameDetections, frame_ap, save_detections
from s3d_det.evaluation.video_map import video_map
from s3d_det.modeling.detector import detections_to_rows
from s3d_det.utils.io import write_json

from .distributed import all_gather, get_rank, get_world_size, is_main_process
from .smoothing import smooth_detections
from .trainer import to_device

__all__ = ["detect_videos", "score_detections", "evaluate_detector"]


@torch.no_grad()
def detect_videos(model: torch.nn.Module, dataset, *, batch_size: int = 4, num_workers: int = 0,
                  collate_fn=None, device="cpu", progress: bool = True, smooth_frames: int = 0) -> Detections:
    """Detections of ``model`` (in eval mode) on every sample of ``dataset`` (a ``TestClipDataset``):
    ``Detections(videos=dataset.videos, frame_dets (N, 8))`` in original frame pixels, on every process, rows by
    video, frame, then score. ``smooth_frames`` > 0 smooths the scores over that many frames to each side
    (``smoothing.smooth_detections``) once every frame is detected."""
    rank, world = get_rank(), get_world_size()
    shard = Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn)
    index = {video: i for i, video in enumerate(dataset.videos)}
    was_training = model.training
    model.eval()
    parts = []
    for batch in tqdm(loader, desc="detect", disable=not (progress and is_main_process()), leave=False):
        outputs = model(to_device(batch, device))
        rows = detections_to_rows([{k: v.cpu() for k, v in o.items()} for o in outputs], batch, index)
        parts.append(FrameDetections.from_rows(rows))
    model.train(was_training)
    dets = FrameDetections.concat(parts)
    if world > 1:
        dets = FrameDetections.concat(all_gather(dets))
    if smooth_frames:
        dets = smooth_detections(dets, {i: dataset.nframes[v] for i, v in enumerate(dataset.videos)},
                                 window=smooth_frames)
    # by video, frame, score: the same order for any shard count
    return Detections(videos=list(dataset.videos), frame_dets=dets.sorted_by_frame())


def score_detections(gt: Mapping, dets: Detections, *, protocol: str = "act", iou: float = 0.5,
                     with_video_map: bool = False) -> Dict:
    """``{"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP"}`` in percent (the ``--json`` format of
    ``tools/eval_jhmdb.py``); ``video_mAP`` is None unless asked for."""
    result = frame_ap(gt, dets.videos, dets.frame_dets, protocol=protocol, iou=iou).to_dict()
    result["video_mAP"] = video_map(gt, dets.videos, frame_dets=dets.frame_dets) if with_video_map else None
    return result


def evaluate_detector(model: torch.nn.Module, dataset, gt: Mapping, *, output_dir: Optional[str] = None,
                      protocol: str = "act", iou: float = 0.5, with_video_map: bool = False,
                      batch_size: int = 4, num_workers: int = 0, collate_fn=None, device="cpu",
                      progress: bool = True, smooth_frames: int = 0) -> Dict:
    """Detects on ``dataset`` (``detect_videos``, with ``smooth_frames``) and scores it against ``gt``. With
    ``output_dir``, rank 0 writes ``detections.npz`` and ``frame_map.json`` there (atomically). Returns the
    scores on every process."""
    dets = detect_videos(model, dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn,
                         device=device, progress=progress, smooth_frames=smooth_frames)
    result = score_detections(gt, dets, protocol=protocol, iou=iou, with_video_map=with_video_map)
    if output_dir and is_main_process():
        save_detections(os.path.join(output_dir, "detections.npz"), dets)
        write_json(os.path.join(output_dir, "frame_map.json"), result)
    return result
