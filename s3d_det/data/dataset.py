"""Torch Datasets of keyframe-centred clips, and their collate function.

A sample is a dict::

    clip       (C,T,H,W) float32   the clip, raw: RGB in [0, 255] (the networks normalise it themselves), or with
                                   a flow modality (``modality.Modality``) the flow JPEG values, C = 2 or 3
    keyframe   (3,H,W) float32     the clip's frame at index T // 2, raw RGB (also with a flow modality)
    boxes      (N,4) float32       x1,y1,x2,y2 in pixels of the resized (and flipped) keyframe
    labels     (N,) int64          0-based class indices; -1: a person doing none of the actions (idle boxes);
                                   -2: a person the action head ignores (idle, but the clip still shows the action)
    video      str                 "<class>/<video>"
    frame      int                 the keyframe, 1-based
    orig_size  (h, w)              the video's frame size
    scale      (sy, sx)            resized / original size: original pixels = resized pixels / scale
    flipped    bool                mirrored left-right (then un-flip with x -> W - x before un-scaling)

Frame sources are opened on first use in each process (at most ``max_open_sources`` kept), and dropped
when the Dataset is pickled, so it works with DataLoader workers under any start method.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .annotations import idle_people, keyframe_boxes, split_videos
from .clips import ClipTransform, clip_frames, read_clip, to_tensor
from .errors import DataError
from .frames import FrameCache, FrameSource, find_frames, open_frames
from .modality import Modality

__all__ = ["ClipDataset", "TrainClipDataset", "TestClipDataset", "collate", "stack_padded"]

_NO_BOXES = (np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))


class ClipDataset(Dataset):
    """Samples (video, keyframe) pairs of ``samples``; the subclasses choose the pairs.

    Args:
        gt: ground truth in the ACT schema (``s3d_det.data.annotations``).
        frames_root: folder holding ``Frames/<video>/{:05d}.jpg|png`` or ``Videos/<video>.avi|mp4``.
        videos: the videos it may read; each must be in ``gt`` and have frames on disk.
        clip_length, clip_stride, boundary: the clip around each keyframe (``clips.clip_frames``).
        transform: resize/flip/jitter (``clips.ClipTransform``); its random choices for sample i come
            from ``np.random.default_rng([seed, epoch, i])``, so they are the same in any worker.
        seed: base seed of every random choice.
        max_open_sources: frame sources kept open per process (least recently used closed first).
        flip_labels: pairs of 0-based labels that a horizontal flip turns into each other (a mirrored
            "move_left" is a "move_right"); the labels of a flipped sample are swapped accordingly. Classes
            not named keep their label, so a dataset without directional classes needs none.
        frame_cache_mb: keep up to this many MiB of decoded frames in memory (``frames.FrameCache``; 0: none),
            per process: a clip of T frames decodes each frame anew otherwise, so an epoch decodes every
            frame about T times. A 320x240 frame takes 0.22 MiB.
    """

    def __init__(self, *, gt: Mapping, frames_root: str, videos: Sequence[str], clip_length: int = 16,
                 clip_stride: int = 1, boundary: str = "repeat", transform: ClipTransform = ClipTransform(),
                 seed: int = 0,
                 max_open_sources: int = 16, flip_labels: Sequence[Tuple[int, int]] = (),
                 frame_cache_mb: float = 0, modality: Modality = Modality()):
        self.frames_root = frames_root
        self.modality = modality
        self.videos = list(videos)
        self.clip_length, self.clip_stride, self.boundary = clip_length, clip_stride, boundary
        self.transform = transform
        self.seed, self.epoch = seed, 0
        self.max_open_sources = max_open_sources
        if frame_cache_mb < 0:
            raise ValueError(f"frame_cache_mb must be at least 0 (0: no cache), got {frame_cache_mb}")
        self.frame_cache = FrameCache(int(frame_cache_mb * 2 ** 20)) if frame_cache_mb > 0 else None
        num_labels = len(gt["labels"])
        self.flip_map = np.arange(num_labels)
        for pair in flip_labels:
            if len(pair) != 2 or not all(0 <= int(c) < num_labels for c in pair) or pair[0] == pair[1]:
                raise ValueError(f"flip_labels: {pair!r} is not a pair of two labels in 0..{num_labels - 1}")
            a, b = int(pair[0]), int(pair[1])
            if self.flip_map[a] != a or self.flip_map[b] != b:
                raise ValueError(f"flip_labels: label {a if self.flip_map[a] != a else b} is in two pairs")
            self.flip_map[a], self.flip_map[b] = b, a
        clip_frames(1, 1, clip_length, clip_stride, boundary)  # checks the clip arguments now
        self.nframes: Dict[str, int] = {}
        self.resolution: Dict[str, Tuple[int, int]] = {}
        self.annotations: Dict[str, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
        for video in self.videos:
            for key in ("nframes", "resolution", "gttubes"):
                if video not in gt[key]:
                    raise ValueError(f"video {video!r} has no entry in the ground truth's {key!r}")
            path, tried = find_frames(frames_root, video)
            if path is None:
                raise FileNotFoundError(f"frames of video {video!r} are missing: looked for {' and '.join(tried)}")
            if modality.is_flow and not os.path.isdir(modality.flow_path(video)):
                raise FileNotFoundError(f"flow of video {video!r} is missing: no folder {modality.flow_path(video)} "
                                        f"(make it with tools/prepare_data.py flow)")
            self.nframes[video] = int(gt["nframes"][video])
            self.resolution[video] = (int(gt["resolution"][video][0]), int(gt["resolution"][video][1]))
            self.annotations[video] = keyframe_boxes(gt, video)
        self.samples: List[Tuple[str, int]] = []
        self._sources: Optional[OrderedDict] = None

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Makes the random choices of epoch ``epoch`` (call before iterating a DataLoader over it; its
        workers, unless persistent, copy the dataset at the start of each iteration)."""
        self.epoch = int(epoch)

    def source(self, video: str, flow: bool = False) -> FrameSource:
        """The frame source of ``video`` in this process (with ``flow``, its flow source), opened and checked
        against the GT on first use."""
        if self._sources is None:
            self._sources = OrderedDict()
        key = (video, flow)
        src = self._sources.get(key)
        if src is None:
            src = self.modality.open_flow(video) if flow else open_frames(self.frames_root, video)
            # more frames on disk than annotated is common (extractions differ by a frame or two) and harmless;
            # fewer means frames the ground truth refers to are missing
            if src.num_frames < self.nframes[video]:
                raise ValueError(f"video {video!r}: {src.path} has {src.num_frames} frames, the ground truth "
                                 f"needs {self.nframes[video]}")
            src.expect_size(self.resolution[video], f"the ground truth's resolution of video {video!r}")
            src.cache = self.frame_cache
            self._sources[key] = src
            while len(self._sources) > self.max_open_sources:
                self._sources.popitem(last=False)[1].close()
        self._sources.move_to_end(key)
        return src

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sources"] = None
        return state

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)}")
        index %= len(self)
        video, frame = self.samples[index]
        frames = clip_frames(frame, self.nframes[video], self.clip_length, self.clip_stride, self.boundary)
        flow = self.modality.is_flow
        clip = read_clip(self.source(video, flow=flow), frames)
        keyframe = read_clip(self.source(video), [frame]) if flow else None
        for what, array in (("flow frames" if flow else "frames", clip), ("frames", keyframe)):
            if array is not None and array.shape[1:3] != self.resolution[video]:
                raise ValueError(f"video {video!r}: {what} are {array.shape[1]}x{array.shape[2]} (h x w), the "
                                 f"ground truth's resolution is "
                                 f"{self.resolution[video][0]}x{self.resolution[video][1]}")
        boxes, labels = self.annotations[video].get(frame, _NO_BOXES)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.transform.is_random else None
        params = self.transform.draw(clip.shape[1:3], rng)
        out = self.transform.apply(keyframe if flow else clip, boxes, params)
        if out.flipped:
            labels = np.where(labels >= 0, self.flip_map[np.maximum(labels, 0)], labels)
        if flow:
            keyframe = to_tensor(out.clip)[:, 0]
            clip = to_tensor(self.transform.apply(clip, _NO_BOXES[0], params, flow_x=self.modality.flow_x).clip)
        else:
            clip = to_tensor(out.clip)
            keyframe = clip[:, self.clip_length // 2]
        return {
            "clip": clip,
            "keyframe": keyframe,
            "boxes": torch.from_numpy(out.boxes),
            "labels": torch.from_numpy(labels.copy()),
            "video": video,
            "frame": frame,
            "orig_size": self.resolution[video],
            "scale": out.scale,
            "flipped": out.flipped,
        }


class TrainClipDataset(ClipDataset):
    """One sample per annotated keyframe (a frame with at least one box) of the train videos of ``split``.

    With ``keyframes_per_video=K``, each video gives instead min(K, its candidate frames) keyframes, drawn
    without replacement anew for each epoch from ``np.random.default_rng([seed, epoch])``
    (``set_epoch``). With ``background_frames=True`` every frame of a train video is a candidate, also
    those without a box: in untrimmed videos they show the people before and after their actions, which
    the detector must learn to leave undetected (as frame-mAP counts any detection there as false).

    ``idle_hold`` (frames; 0: off, None: to the video's ends) adds, on every frame outside a tube, that tube's
    nearest box held for at most this many frames (``annotations.idle_boxes``) with label -1: a person doing
    none of the actions. The RPN then still learns these people as persons, and the action head learns them as
    background, where a frame without their box would teach the RPN that they are not people at all.
    ``idle_margin`` (frames; 0: off) labels the idle boxes at most this many frames from their tube -2 instead:
    still persons for the RPN, but ignored by the action head, since a clip around such a keyframe still shows
    part of the action (a clip of T frames at stride s reaches T * s // 2 frames to each side).
    ``idle_keyframes=True`` (needs ``idle_hold``) also makes keyframes of the frames where nobody acts but an
    idle box lies beyond ``idle_margin``: action-head negatives whose clip, with a margin of at least T * s // 2,
    shows none of the action. Unlike ``background_frames``, no keyframe is drawn on which the head learns
    nothing.
    A box of the train videos without width or height (x1 == x2 or y1 == y2, which the ground truth admits) is a
    ``DataError``: the box regression takes the log of its width, and the first step would make the losses NaN.
    Other keyword arguments: see ``ClipDataset``.
    """

    def __init__(self, *, gt: Mapping, frames_root: str, split: int = 1,
                 keyframes_per_video: Optional[int] = None, background_frames: bool = False,
                 idle_hold: Optional[int] = 0, idle_margin: int = 0, idle_keyframes: bool = False, **kwargs):
        super().__init__(gt=gt, frames_root=frames_root, videos=split_videos(gt, split, "train"), **kwargs)
        if keyframes_per_video is not None and keyframes_per_video < 1:
            raise ValueError(f"keyframes_per_video must be at least 1 or None, got {keyframes_per_video}")
        if idle_hold is not None and idle_hold < 0:
            raise ValueError(f"idle_hold must be None or at least 0, got {idle_hold}")
        if idle_margin < 0 or (idle_margin and idle_hold == 0):
            raise ValueError(f"idle_margin must be at least 0, and needs idle_hold (not 0); got idle_margin "
                             f"{idle_margin}, idle_hold {idle_hold}")
        if idle_keyframes and idle_hold == 0:
            raise ValueError("idle_keyframes needs idle_hold (None or above 0): without idle boxes there are no "
                             "idle keyframes")
        for video in self.videos:  # the box regression takes log(width): an empty box makes the losses NaN
            for label, tubes in gt["gttubes"][video].items():
                for tube in tubes:
                    tube = np.asarray(tube)
                    flat = np.flatnonzero((tube[:, 3] <= tube[:, 1]) | (tube[:, 4] <= tube[:, 2]))
                    if len(flat):
                        box = ", ".join(f"{v:g}" for v in tube[flat[0], 1:])
                        raise DataError(f"video {video!r}, frame {tube[flat[0], 0]:g}: box [{box}] of label {label} "
                                        f"has no width or height; training needs x1 < x2 and y1 < y2")
        self.keyframes_per_video = keyframes_per_video
        self.idle_keyframes = bool(idle_keyframes)
        self.background_frames = bool(background_frames)
        self.idle_hold, self.idle_margin = idle_hold, int(idle_margin)
        if idle_hold != 0:
            for video in self.videos:
                acting = self.annotations[video]
                for frame, (idle, gaps) in idle_people(gt, video, idle_hold).items():
                    boxes, labels = acting.get(frame, _NO_BOXES)
                    acting[frame] = (np.concatenate([boxes, idle]),
                                     np.concatenate([labels, np.where(gaps <= self.idle_margin, -2, -1)]))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        k = self.keyframes_per_video
        rng = np.random.default_rng([self.seed, self.epoch])
        self.samples = []
        for video in self.videos:
            if self.background_frames:
                frames = range(1, self.nframes[video] + 1)
            else:  # frames where someone acts; with idle_keyframes also those with an idle box beyond the margin
                lowest = -1 if self.idle_keyframes else 0
                frames = sorted(f for f, (_, labels) in self.annotations[video].items() if (labels >= lowest).any())
            if k is not None and k < len(frames):
                frames = sorted(int(f) for f in rng.choice(frames, size=k, replace=False))
            self.samples.extend((video, f) for f in frames)


class TestClipDataset(ClipDataset):
    """Every frame of every test video of ``split``, in order, with that frame's boxes (or none).
    Keyword arguments: see ``ClipDataset`` (the transform should not be random here)."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, gt: Mapping, frames_root: str, split: int = 1, **kwargs):
        super().__init__(gt=gt, frames_root=frames_root, videos=split_videos(gt, split, "test"), **kwargs)
        self.samples = [(video, f) for video in self.videos for f in range(1, self.nframes[video] + 1)]


def stack_padded(tensors: Sequence[torch.Tensor], size_divisible: int = 1) -> torch.Tensor:
    """(B, *lead, H, W): each tensor (*lead, h_i, w_i) at the top left, zeros at the bottom and right, H and W the
    largest h_i and w_i rounded up to a multiple of ``size_divisible`` (0 or 1: not rounded). The padding of
    every batch of frames, in ``collate`` and in video inference (``VideoDetector``). Written once; in a
    DataLoader worker straight into shared memory, as torch's default_collate does (saves a copy)."""
    if not tensors:
        raise ValueError("stack_padded got no tensors")
    d = max(1, int(size_divisible))
    h = -(-max(t.shape[-2] for t in tensors) // d) * d
    w = -(-max(t.shape[-1] for t in tensors) // d) * d
    shape = (len(tensors), *tensors[0].shape[:-2], h, w)
    if get_worker_info() is not None:
        storage = tensors[0]._typed_storage()._new_shared(math.prod(shape), device=tensors[0].device)
        out = tensors[0].new(storage).view(shape)
    else:
        out = tensors[0].new_empty(shape)
    for i, t in enumerate(tensors):
        th, tw = t.shape[-2:]
        out[i, ..., :th, :tw] = t
        out[i, ..., th:, :] = 0
        out[i, ..., :th, tw:] = 0
    return out


def collate(samples: Sequence[dict], size_divisible: int = 1) -> dict:
    """Batches samples of ``ClipDataset``.

    ``clip`` -> (B,3,T,H,W) and ``keyframe`` -> (B,3,H,W), zero-padded at the bottom and right to the
    largest H, W of the batch rounded up to a multiple of ``size_divisible`` (``stack_padded``); ``image_sizes``
    lists each sample's true (h, w). Every other key becomes a list (boxes and labels stay per-sample tensors).
    Use ``functools.partial(collate, size_divisible=32)`` for a DataLoader.
    """
    if not samples:
        raise ValueError("collate got an empty batch")
    lengths = {s["clip"].shape[1] for s in samples}
    if len(lengths) > 1:
        raise ValueError(f"clips of different lengths in one batch: {sorted(lengths)}")
    sizes = [tuple(s["keyframe"].shape[1:]) for s in samples]
    clip = stack_padded([s["clip"] for s in samples], size_divisible)
    keyframe = stack_padded([s["keyframe"] for s in samples], size_divisible)
    batch = {"clip": clip, "keyframe": keyframe, "image_sizes": sizes}
    for key in samples[0]:
        if key not in batch:
            batch[key] = [s[key] for s in samples]
    return batch
