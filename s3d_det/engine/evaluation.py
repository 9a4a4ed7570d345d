"""Scoring a detector on the test videos: ``evaluate_detector`` runs the one inference path
(``inference.VideoDetector`` over the test dataset, ``inference.detect_dataset``: with several processes each takes
every world_size-th video and every process gets all the rows) and scores what it finds.

``detect_videos``, the DataLoader path of earlier releases (one ``TestClipDataset`` sample per keyframe, batched
by ``collate``), is gone: ``VideoDetector(mode="per_keyframe")`` gives the same detections (the same clip frames,
resize and padding), and ``read_ahead`` takes the place of its loading workers.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

from s3d_det.evaluation import Detections, frame_ap, save_detections
from s3d_det.evaluation.frame_map import PROTOCOLS
from s3d_det.evaluation.video_map import video_map
from s3d_det.utils.io import write_json

from .distributed import is_main_process
from .inference import VideoDetector, detect_dataset

__all__ = ["score_detections", "evaluate_detector"]


# The frame-AP protocols of TEST.PROTOCOL: those of ``frame_map`` and AVA's (``s3d_det.evaluation.ava``).
EVAL_PROTOCOLS = PROTOCOLS + ("ava",)


def score_detections(gt: Mapping, dets: Detections, *, protocol: str = "act", iou: float = 0.5,
                     with_video_map: bool = False) -> Dict:
    """``{"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP"}`` in percent (the ``--json`` format of
    ``tools/eval_jhmdb.py``); ``video_mAP`` is None unless asked for. ``protocol`` "ava": AVA's frame-AP on the
    keyframes of ``gt``'s test videos (``s3d_det.data.ava_gt.score_ava``: the ground truth's ``"ava"`` key, or
    keyframes every 30 frames and action ids 1..C for a GT without it)."""
    if protocol == "ava":
        from s3d_det.data.ava_gt import score_ava

        test = set(dets.videos)
        split = next((k for k, videos in enumerate(gt["test_videos"], start=1) if test <= set(videos)), None)
        if split is None:
            raise ValueError(f"TEST.PROTOCOL ava: the {len(test)} evaluated videos are not all in one split's test "
                             "list of the ground truth")
        result = score_ava(gt, dets, split=split, iou=iou).to_dict()
        result["video_mAP"] = None  # keyframes one second apart: no tubes to score
        return result
    result = frame_ap(gt, dets.videos, dets.frame_dets, protocol=protocol, iou=iou).to_dict()
    result["video_mAP"] = video_map(gt, dets.videos, frame_dets=dets.frame_dets) if with_video_map else None
    return result


def keyframes_to_detect(gt: Mapping, protocol: str) -> Optional[Dict[str, list]]:
    """The frames an evaluation in ``protocol`` scores, per video, when not every frame: AVA's keyframes
    (``s3d_det.data.ava_gt.ava_info``); None for the other protocols (every frame)."""
    if protocol != "ava":
        return None
    from s3d_det.data.ava_gt import ava_info

    return {video: list(frames) for video, frames in ava_info(gt)["keyframes"].items()}


def evaluate_detector(detector: VideoDetector, dataset, gt: Mapping, *, output_dir: Optional[str] = None,
                      protocol: str = "act", iou: float = 0.5, with_video_map: bool = False,
                      progress: bool = True) -> Dict:
    """Detects with ``detector`` on every frame of ``dataset`` (a ``TestClipDataset``; ``detect_dataset``: the
    detector's clip and resize must be the dataset's, e.g. ``VideoDetector.for_dataset`` or ``from_config`` with
    the dataset's config) and scores it against ``gt``; for ``protocol`` "ava" on its keyframes only (AVA scores
    nothing else: ``ava_gt.ava_info``). With ``output_dir``, rank 0 writes ``detections.npz`` and
    ``frame_map.json`` there (atomically). Returns the scores on every process."""
    dets = detect_dataset(detector, dataset, progress=progress, frames=keyframes_to_detect(gt, protocol))
    result = score_detections(gt, dets, protocol=protocol, iou=iou, with_video_map=with_video_map)
    if output_dir and is_main_process():
        save_detections(os.path.join(output_dir, "detections.npz"), dets)
        write_json(os.path.join(output_dir, "frame_map.json"), result)
    return result
