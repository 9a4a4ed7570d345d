"""Clip-classification datasets over a ``VideoList``: random clips for training, the multi-view test protocol.

Training (``TrainVideoDataset``): one clip of each video per item, its first frame drawn uniformly (a random
temporal crop of ``clip_length`` frames ``clip_stride`` apart), then a random resized crop (torchvision's
``RandomResizedCrop``: an area fraction and an aspect ratio drawn, the same box on every frame), a horizontal
flip where the dataset allows one (``VideoList.hflip``), and colour jitter.

Testing (``TestVideoDataset``), the standard multi-view protocol of PySlowFast and MMAction2: ``num_clips``
clips spread evenly over each video, each resized to ``short_side`` and cut into ``num_crops`` squares of
``crop_size`` (1: the centre; 3: both ends and the centre of the longer side); one item per (video, clip), holding
its crops. The softmax scores of a video's views are averaged (``s3d_det.evaluation.classification``).

Clips are raw frames, RGB in [0, 255], channels first (``clips.to_tensor``): each network normalises its input.
"""
from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .clips import color_jitter, map_boundary, read_clip, resized_shape, sample_color_factors, to_tensor
from .frames import FrameSource, ImageFolderSource, VideoFileSource
from .modality import Modality
from .video_lists import VideoList

__all__ = ["TrainVideoDataset", "TestVideoDataset", "temporal_views", "spatial_crops", "random_resized_box",
           "open_video"]


def open_video(path: str) -> FrameSource:
    """The frame source of a ``VideoRecord.path``: a folder of numbered images, or a video file."""
    return ImageFolderSource(path) if os.path.isdir(path) else VideoFileSource(path)


def _clip_indices(start: int, num_frames: int, length: int, stride: int) -> List[int]:
    """Frames start+1, start+1+stride, ... (1-based; ``start`` 0-based, may be negative), clamped into the video."""
    return [int(f) for f in map_boundary(start + 1 + stride * np.arange(length), num_frames, "repeat")]


def temporal_views(num_frames: int, *, length: int, stride: int, num_clips: int) -> List[List[int]]:
    """The frame numbers (1-based) of ``num_clips`` clips spread evenly over a video of ``num_frames`` frames.

    A clip spans ``(length - 1) * stride + 1`` frames; clip k starts at ``round(k * (n - span) / (num_clips - 1))``
    (0-based; one clip: the middle), as PySlowFast's ``get_start_end_idx``. A video shorter than a span gives
    clips centred on it, their ends repeating the first and last frame."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be at least 1, got {num_clips}")
    span = (length - 1) * stride + 1
    delta = num_frames - span
    starts = [delta / 2] if num_clips == 1 else [k * delta / (num_clips - 1) for k in range(num_clips)]
    if delta < 0:
        starts = [delta / 2] * num_clips
    return [_clip_indices(int(math.floor(s + 0.5)), num_frames, length, stride) for s in starts]


def spatial_crops(size: Tuple[int, int], crop: int, num_crops: int) -> List[Tuple[int, int]]:
    """(y0, x0) of ``num_crops`` (1 or 3) ``crop``-pixel squares in an (h, w) frame: 1, the centre; 3, the start,
    centre and end of the longer side (PySlowFast's ``uniform_crop`` spatial indices 0, 1, 2)."""
    h, w = size
    if crop > min(h, w):
        raise ValueError(f"crop {crop} is larger than the resized frame {h}x{w}")
    centre = ((h - crop) // 2, (w - crop) // 2)
    if num_crops == 1:
        return [centre]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if w >= h:
        return [(centre[0], 0), centre, (centre[0], w - crop)]
    return [(0, centre[1]), centre, (h - crop, centre[1])]


def random_resized_box(rng: np.random.Generator, size: Tuple[int, int], *, area: Tuple[float, float],
                       ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
    """(y0, x0, h, w) of torchvision's ``RandomResizedCrop.get_params``: up to 10 draws of an area fraction
    (uniform in ``area``) and an aspect ratio w/h (log-uniform in ``ratio``) until the box fits the (h, w)
    frame; else the largest centred box within ``ratio``."""
    height, width = size
    total = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = total * rng.uniform(area[0], area[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class _VideoDataset(Dataset):
    def __init__(self, videos: VideoList, *, clip_length: int, clip_stride: int, crop_size: int,
                 modality: Modality = Modality()):
        if clip_length < 1 or clip_stride < 1:
            raise ValueError(f"clip length and stride must be at least 1, got {clip_length}, {clip_stride}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be at least 1 pixel, got {crop_size}")
        if not videos.records:
            raise ValueError(f"{videos.dataset} {videos.subset}: no videos ({', '.join(videos.sources)})")
        self.videos = videos
        self.clip_length, self.clip_stride, self.crop_size = clip_length, clip_stride, crop_size
        self.modality = modality
        if modality.is_flow:
            missing = [r.video for r in videos.records if not os.path.isdir(modality.flow_path(r.video))]
            if missing:
                raise FileNotFoundError(f"{videos.dataset} {videos.subset}: no flow for {len(missing)} of "
                                        f"{len(videos.records)} videos, e.g. {missing[0]!r}: expected the folder "
                                        f"{modality.flow_path(missing[0])} (tools/prepare_data.py flow)")

    @property
    def classes(self) -> List[str]:
        return self.videos.classes

    def _source(self, index: int) -> FrameSource:
        """Video ``index``'s frames, or with a flow modality its flow (frame k: flow k -> k+1, the last repeated)."""
        record = self.videos.records[index]
        return self.modality.open_flow(record.video) if self.modality.is_flow else open_video(record.path)


class TrainVideoDataset(_VideoDataset):
    """Random training clips: item i is a clip of video i (see the module docstring).

    Args:
        videos: the training split.
        clip_length, clip_stride: T frames, ``clip_stride`` apart.
        crop_size: side of the square crop, pixels.
        crop_area: (lo, hi) fraction of the frame's area the random crop covers before resizing.
        crop_ratio: (lo, hi) range of its aspect ratio w/h.
        hflip_prob: probability of a horizontal flip; 0 where ``videos.hflip`` is False.
        brightness, contrast, saturation, hue: colour-jitter strengths (``clips.sample_color_factors``).
        seed: the random choices of item i in epoch e come from ``np.random.default_rng([seed, e, i])``.
        modality: RGB frames or optical flow (``modality.Modality``); flow gets no colour jitter, and a flip
            mirrors it (x -> 255 - x).

    Item: {"clip": (C, T, crop_size, crop_size) float32 in [0, 255] (RGB; flow JPEG values), "label": int,
    "video": i}.
    """

    def __init__(self, videos: VideoList, *, clip_length: int = 16, clip_stride: int = 1, crop_size: int = 224,
                 crop_area: Tuple[float, float] = (0.08, 1.0), crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 hflip_prob: float = 0.5, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, seed: int = 0, modality: Modality = Modality()):
        super().__init__(videos, clip_length=clip_length, clip_stride=clip_stride, crop_size=crop_size,
                         modality=modality)
        if not 0 < crop_area[0] <= crop_area[1] <= 1:
            raise ValueError(f"crop_area must be (lo, hi) with 0 < lo <= hi <= 1, got {tuple(crop_area)}")
        if not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"crop_ratio must be (lo, hi) with 0 < lo <= hi, got {tuple(crop_ratio)}")
        if not 0 <= hflip_prob <= 1:
            raise ValueError(f"hflip_prob must lie in [0, 1], got {hflip_prob}")
        self.crop_area, self.crop_ratio = tuple(crop_area), tuple(crop_ratio)
        self.hflip_prob = hflip_prob if videos.hflip else 0.0
        self.jitter = (brightness, contrast, saturation, hue)
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.videos.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        source = self._source(index)
        try:
            n = source.num_frames
            span = (self.clip_length - 1) * self.clip_stride + 1
            start = int(rng.integers(min(0, n - span), max(0, n - span) + 1)) if n >= span else (n - span) // 2
            clip = read_clip(source, _clip_indices(start, n, self.clip_length, self.clip_stride))
        finally:
            source.close()
        y0, x0, h, w = random_resized_box(rng, clip.shape[1:3], area=self.crop_area, ratio=self.crop_ratio)
        s = self.crop_size
        out = np.empty((len(clip), s, s, clip.shape[-1]), np.uint8)
        for t, frame in enumerate(clip):
            out[t] = cv2.resize(frame[y0:y0 + h, x0:x0 + w], (s, s), interpolation=cv2.INTER_LINEAR).reshape(s, s, -1)
        if self.hflip_prob and rng.random() < self.hflip_prob:
            out = np.ascontiguousarray(out[:, :, ::-1])
            if self.modality.is_flow:
                out[..., self.modality.flow_x] = 255 - out[..., self.modality.flow_x]
        factors = sample_color_factors(rng, *self.jitter)
        jitter = factors != (1.0, 1.0, 1.0, 0.0) and not self.modality.is_flow
        pixels = color_jitter(out, factors) if jitter else out
        return {"clip": to_tensor(pixels), "label": self.videos.records[index].label, "video": index}


class TestVideoDataset(_VideoDataset):
    """The multi-view test protocol: item ``i * num_clips + k`` is temporal clip k of video i, in
    ``num_crops`` spatial crops (see the module docstring).

    Args:
        videos: the test split.
        clip_length, clip_stride: T frames, ``clip_stride`` apart.
        crop_size: side of the square crops, pixels.
        short_side: the frames' shorter side is resized to this first (None: ``crop_size``, as PySlowFast).
        num_clips: temporal clips per video; num_crops: 1 or 3 spatial crops per clip.
        modality: RGB frames or optical flow (``modality.Modality``).

    Item: {"clips": (num_crops, C, T, crop_size, crop_size) float32 in [0, 255] (RGB; flow JPEG values), "label":
    int, "video": i}.
    """

    def __init__(self, videos: VideoList, *, clip_length: int = 16, clip_stride: int = 1, crop_size: int = 224,
                 short_side: Optional[int] = None, num_clips: int = 10, num_crops: int = 3,
                 modality: Modality = Modality()):
        super().__init__(videos, clip_length=clip_length, clip_stride=clip_stride, crop_size=crop_size,
                         modality=modality)
        if num_clips < 1 or num_crops not in (1, 3):
            raise ValueError(f"num_clips must be at least 1 and num_crops 1 or 3, got {num_clips}, {num_crops}")
        self.short_side = short_side or crop_size
        if self.short_side < crop_size:
            raise ValueError(f"short_side {self.short_side} is smaller than crop_size {crop_size}")
        self.num_clips, self.num_crops = num_clips, num_crops

    def __len__(self) -> int:
        return len(self.videos.records) * self.num_clips

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __getitem__(self, index: int) -> dict:
        video, k = divmod(index, self.num_clips)
        source = self._source(video)
        try:
            frames = temporal_views(source.num_frames, length=self.clip_length, stride=self.clip_stride,
                                    num_clips=self.num_clips)[k]
            clip = read_clip(source, frames)
        finally:
            source.close()
        h, w = resized_shape(*clip.shape[1:3], self.short_side)
        if (h, w) != clip.shape[1:3]:
            clip = np.stack([cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
                             for frame in clip])
        s = self.crop_size
        crops = [to_tensor(clip[:, y0:y0 + s, x0:x0 + s]) for y0, x0 in spatial_crops((h, w), s, self.num_crops)]
        return {"clips": torch.stack(crops), "label": self.videos.records[video].label, "video": video}


def view_batches(samples: Sequence[dict]) -> dict:
    """Collates ``TestVideoDataset`` items: {"clips": (B * num_crops, 3, T, S, S), "labels": (B,), "videos":
    (B,), "views_per_item": num_crops}."""
    clips = torch.cat([s["clips"] for s in samples])
    return {"clips": clips, "labels": torch.tensor([s["label"] for s in samples]),
            "videos": torch.tensor([s["video"] for s in samples]), "views_per_item": samples[0]["clips"].shape[0]}
