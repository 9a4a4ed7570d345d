"""Detecting actions on a live stream: frames arrive one at a time (a camera, a network stream, a file read as a
stream), no frame count is known in advance, and each frame's detections come out a fixed ``delay`` of D frames
later.

``StreamingDetector`` is ``engine.inference.VideoDetector``'s shared mode run online, window of one clip: every
st-th frame (st the 3D feature layer's temporal stride) is an anchor whose clip goes through the 3D network once,
as soon as its last frame has arrived; a frame between two anchors takes their features mixed linearly, or the
earlier anchor's alone when D is too short to wait for the later one; the 2D detector and the head run on each
frame when frame f + D arrives. A ring of resized frames and a few anchors' features are held: memory does not
grow with the stream.

Where the keyframe sits in its clip follows from D (``clip_placement``): the clip ends at most D frames after the
keyframe, centred as in training when D allows (``centred_delay``: D = st - 1 + (T - 1 - T // 2) s for T
frames at stride s); D = 0 gives causal clips that end at the keyframe. With the same placement the detections
are those of ``VideoDetector(mode="shared", position=..., interpolation=...)`` on the whole video (up to float
rounding; the edges of the video by the same boundary rule: the end is known once the stream ends). Frames
before the first are mapped by ``boundary`` at once; with ``"reflect"`` that reads frames after the first, so the
first few frames may come out later than D.

The networks run in PyTorch, or from files ``tools/export.py --parts`` wrote (``ExportedParts``: the 3D part per
anchor, the frame part per frame; onnxruntime, a ``torch.export`` program or TorchScript), with the same
detections up to float rounding.

Nothing here times or draws: ``tools/demo.py`` reads the stream, draws and writes; ``StreamResult`` carries the
times a frame arrived and its detections came out.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from s3d_det.data.clips import map_boundary, resize_frame, resized_shape, to_tensor
from s3d_det.data.dataset import stack_padded
from s3d_det.evaluation.detections import FrameDetections
from s3d_det.modeling.two_stream import TwoStreamDetector

from .inference import VideoDetector

__all__ = ["FrameSizeChanged", "ClipPlacement", "clip_placement", "centred_delay", "StreamResult", "ExportedParts",
           "StreamingDetector"]

_UNKNOWN_END = 1 << 40  # the frame count used for the boundary rule until the stream ends


class FrameSizeChanged(ValueError):
    """A stream's frame of another size than its first (e.g. a camera switching resolution): the frame is not
    taken; the stream so far can still be finished."""


@dataclasses.dataclass(frozen=True)
class ClipPlacement:
    """Where a keyframe's clip lies, for a stream whose detections come ``delay`` frames late.

    Attributes:
        delay: D, frames between a frame's arrival and its detections.
        position: the keyframe's index in its clip (``clips.clip_frames``), 0..T - 1.
        interpolation: how a frame between anchors gets its features (``inference.INTERPOLATIONS``).
    """

    delay: int
    position: int
    interpolation: str


def centred_delay(*, clip_length: int, clip_stride: int, feature_stride: int) -> int:
    """The smallest delay (frames) at which every frame gets its training-time clip placement (centred) and the
    linear mix of its two anchors: the later anchor is up to st - 1 frames ahead and its clip reaches
    ``(T - 1 - T // 2) * s`` frames past it."""
    return feature_stride - 1 + (clip_length - 1 - clip_length // 2) * clip_stride


def clip_placement(delay: int, *, clip_length: int, clip_stride: int, feature_stride: int) -> ClipPlacement:
    """The placement a ``delay`` of D frames allows: with D >= st - 1 the linear mix of two anchors, the clip
    reaching (D - st + 1) // s positions past the keyframe; with less, the earlier anchor alone, the clip reaching
    D // s positions past it; never more than the centred clip (T - 1 - T // 2 positions past it)."""
    if not isinstance(delay, (int, np.integer)) or delay < 0:
        raise ValueError(f"the delay must be a whole number of frames >= 0, got {delay!r}")
    linear = delay >= feature_stride - 1
    after = (delay - (feature_stride - 1) if linear else delay) // clip_stride
    after = min(after, clip_length - 1 - clip_length // 2)
    return ClipPlacement(delay=int(delay), position=clip_length - 1 - after,
                         interpolation="linear" if linear else "previous")


class ExportedParts:
    """The two exported parts of a detector (``tools/export.py --format F --parts DIR``): ``DIR/clip_3d.<ext>``
    (clip (1, C, T, H, W), image_size (2,) -> features (1, C', T', h, w)) and ``DIR/frame.<ext>`` (keyframe
    (1, 3, H, W), features, image_size, scale (2,), orig_size (2,) -> boxes (K, 4) in original pixels, scores
    (K,), labels (K,)), run by ``deploy.runtime.load_exported`` (``threads``: onnxruntime's intra-op threads).
    ``check(...)`` refuses files exported from another clip, layer, padding or number of actions (those the meta
    JSON beside them records)."""

    def __init__(self, folder: str, *, threads: Optional[int] = None):
        from s3d_det.deploy.export import SUFFIXES
        from s3d_det.deploy.runtime import load_exported

        if not os.path.isdir(folder):
            raise FileNotFoundError(f"exported parts: no such folder: {folder} (tools/export.py --parts writes one)")
        found = {}
        for part in ("clip_3d", "frame"):
            paths = [os.path.join(folder, part + suffix) for suffix in SUFFIXES.values()]
            paths = [path for path in paths if os.path.isfile(path)]
            if len(paths) != 1:
                raise ValueError(f"{folder}: expected one {part}.onnx, .pt2 or .pt (tools/export.py --parts), found "
                                 f"{len(paths) or 'none'}")
            found[part] = load_exported(paths[0], threads=threads)
        self.folder = folder
        self.clip_3d, self.frame = found["clip_3d"], found["frame"]
        self.meta = self.frame.meta or {}
        self.backend = self.frame.backend

    def check(self, *, clip_length: int, clip_stride: int, feature_layer: str, size_divisible: int,
              num_classes: Optional[int] = None) -> None:
        have = {"clip_length": clip_length, "clip_stride": clip_stride, "feature_layer": feature_layer,
                "size_divisible": size_divisible}
        for key, value in have.items():
            if key in self.meta and self.meta[key] != value:
                raise ValueError(f"{self.folder}: exported with {key} {self.meta[key]!r}, the config has {value!r}")
        classes = len(self.meta.get("classes", ()))
        if num_classes is not None and classes and classes != num_classes:
            raise ValueError(f"{self.folder}: exported with {classes} actions, the model has {num_classes}")

    def features(self, clip: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
        return self.clip_3d(clip, image_size)[0]

    def detect(self, keyframe: torch.Tensor, features: torch.Tensor, image_size: torch.Tensor, scale: torch.Tensor,
               orig_size: torch.Tensor):
        return self.frame(keyframe, features, image_size, scale, orig_size)


@dataclasses.dataclass
class StreamResult:
    """One frame's detections. ``frame``: 1-based number in the stream; ``detections``: ``FrameDetections``
    (video index 0; boxes in pixels of the original frame); ``arrived`` and ``done``: ``time.perf_counter()``
    when the frame was pushed and when its detections were ready (seconds)."""

    frame: int
    detections: FrameDetections
    arrived: float
    done: float

    @property
    def latency(self) -> float:
        """Seconds from the frame's arrival to its detections (the D frames' wait included)."""
        return self.done - self.arrived


class StreamingDetector:
    """Runs an ``ActionDetector`` (RGB, ``MODEL.PROPOSALS rpn``) on frames pushed one at a time.

    Args:
        model (ActionDetector): the trained detector (BatchNorm folded into a copy, as ``VideoDetector``).
        clip_length, clip_stride, boundary, short_side, max_size, size_divisible, device, amp_dtype, fold_bn: as
            ``VideoDetector`` (its test input).
        delay (int, optional): D, frames between a frame's arrival and its detections (default
            ``centred_delay``: training's clip placement); the placement follows (``clip_placement``).
        parts (ExportedParts, optional): run these exported files instead of ``model``'s networks (``model``
            still gives the clip layout: build it from the same config).

    Use::

        stream = StreamingDetector.from_config(model, cfg, delay=0)
        for image in frames:                       # (H, W, 3) uint8 RGB, all of one size
            for result in stream.push(image):      # frame k - D once k >= D + 1 frames have arrived
                ...
        for result in stream.finish():             # the last D frames (the end of the stream known)
            ...

    ``stats`` holds ``frames`` (pushed), ``forwards_3d`` (3D network calls, one per anchor) and
    ``max_frames_held`` (the most resized frames held at once).
    """

    def __init__(self, model: torch.nn.Module, *, clip_length: int, clip_stride: int = 1, boundary: str = "repeat",
                 short_side: int = 240, max_size: Optional[int] = 1333, size_divisible: int = 32,
                 delay: Optional[int] = None, device="cpu", amp_dtype: Optional[torch.dtype] = None,
                 fold_bn: bool = True, parts: Optional[ExportedParts] = None):
        two_stream = isinstance(model, TwoStreamDetector)
        if two_stream or getattr(model, "proposals", None) != "rpn":
            raise ValueError("streaming takes an RGB detector that proposes its own boxes (MODEL.PROPOSALS rpn); "
                             f"this one is {'two-stream' if two_stream else repr(getattr(model, 'proposals', None))}")
        st = model.backbone_3d.feature_info[model.feature_3d].stride[0]  # clip positions per feature step
        if delay is None:
            delay = centred_delay(clip_length=clip_length, clip_stride=clip_stride, feature_stride=st)
        self.placement = clip_placement(delay, clip_length=clip_length, clip_stride=clip_stride, feature_stride=st)
        self.detector = VideoDetector(model, clip_length=clip_length, clip_stride=clip_stride, boundary=boundary,
                                      short_side=short_side, max_size=max_size, size_divisible=size_divisible,
                                      device=device, amp_dtype=amp_dtype, fold_bn=fold_bn,
                                      position=self.placement.position,
                                      interpolation=self.placement.interpolation)
        self.delay = self.placement.delay
        self.parts = parts
        if parts is not None:
            parts.check(clip_length=clip_length, clip_stride=clip_stride, feature_layer=model.feature_3d,
                        size_divisible=size_divisible, num_classes=model.roi_head.num_classes)
        self.reset()

    @classmethod
    def from_config(cls, model: torch.nn.Module, cfg, **kwargs) -> "StreamingDetector":
        """The stream detector with ``cfg``'s test input (``VideoDetector.from_config``'s keys but the batch,
        window, smoothing and read-ahead, which a stream has no use for); ``kwargs`` override any argument."""
        from .defaults import resolve_device

        if cfg.INPUT.MODALITY != "rgb":
            raise ValueError(f"streaming takes an RGB detector; the config's INPUT.MODALITY is {cfg.INPUT.MODALITY!r}")
        device = resolve_device(cfg.MODEL.DEVICE)
        amp = getattr(torch, cfg.SOLVER.AMP_DTYPE) if cfg.SOLVER.AMP_DTYPE and device.type == "cuda" else None
        args = dict(clip_length=cfg.INPUT.CLIP_LENGTH, clip_stride=cfg.INPUT.CLIP_STRIDE, boundary=cfg.INPUT.BOUNDARY,
                    short_side=cfg.INPUT.SHORT_SIDE_TEST, max_size=cfg.INPUT.MAX_SIZE,
                    size_divisible=cfg.INPUT.SIZE_DIVISIBLE or 1, device=device, amp_dtype=amp)
        args.update(kwargs)
        return cls(model, **args)

    def reset(self) -> None:
        """Forgets the stream: the next frame pushed is frame 1 of a new one."""
        self.count = 0  # frames pushed
        self.next_frame = 1  # the next frame whose detections come out
        self.finished = False
        self.size: Optional[tuple] = None  # (h, w) of the stream's frames
        self._frames: Dict[int, np.ndarray] = {}  # resized frames by number
        self._arrived: Dict[int, float] = {}
        self._anchors: Dict[int, torch.Tensor] = {}  # anchor m's features (C', T', h, w)
        self._ready: List[StreamResult] = []  # results not yet returned (kept when a call is interrupted)
        self.stats = {"frames": 0, "forwards_3d": 0, "max_frames_held": 0}

    # -- the stream ----------------------------------------------------------------------------------------------
    def push(self, image: np.ndarray) -> List[StreamResult]:
        """Takes the next frame, (H, W, 3) uint8 RGB, the size of the first; returns the results that became
        ready (frame k - D, once k > D)."""
        if self.finished:
            raise ValueError("the stream has ended (finish() was called): reset() before pushing a new one")
        image = np.asarray(image)
        frame = self.count + 1
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"stream frame {frame}: expected (H, W, 3) uint8 RGB, got {image.dtype} "
                             f"{tuple(image.shape)}")
        if self.size is None:
            self.size = tuple(int(v) for v in image.shape[:2])
            self._resized = resized_shape(*self.size, self.detector.short_side, self.detector.max_size)
        elif tuple(image.shape[:2]) != self.size:
            raise FrameSizeChanged(f"stream frame {frame} is {image.shape[0]}x{image.shape[1]} (h x w), the first "
                                   f"{self.size[0]}x{self.size[1]}: all frames of a stream must have one size")
        self._arrived[frame] = time.perf_counter()
        self._frames[frame] = resize_frame(image, self._resized)
        self.count = self.stats["frames"] = frame
        self.stats["max_frames_held"] = max(self.stats["max_frames_held"], len(self._frames))
        return self._advance()

    def finish(self) -> List[StreamResult]:
        """Ends the stream (its length is now known, the clips past its end map by ``boundary``); returns the
        frames still owed."""
        self.finished = True
        return self._advance()

    # -- internals -----------------------------------------------------------------------------------------------
    def _advance(self) -> List[StreamResult]:
        """The results ready now. Each is queued as soon as it is made, so a call interrupted (Ctrl-C inside a
        forward) loses none: the next call, ``finish()`` included, returns them."""
        self._run()
        ready, self._ready = self._ready, []
        return ready

    @torch.no_grad()
    def _run(self) -> None:
        st = self.detector.stride
        while self.next_frame <= self.count and (self.finished or self.count >= self.next_frame + self.delay):
            f = self.next_frame
            m, r = divmod(f - 1, st)
            needed = [m] + ([m + 1] if r and self.placement.interpolation == "linear" else [])
            if not all(self._anchor(a) for a in needed):
                break  # a reflected clip start still waits for a frame
            features = self._anchors[m] if len(needed) == 1 else torch.lerp(self._anchors[m], self._anchors[m + 1],
                                                                            r / st)
            detections = self._detect(f, features)
            self._ready.append(StreamResult(frame=f, detections=detections, arrived=self._arrived.pop(f),
                                            done=time.perf_counter()))
            self.next_frame += 1
            self._forget()

    def _clip(self, anchor: int) -> np.ndarray:
        """The frame numbers of anchor ``anchor``'s clip, mapped by the boundary rule (the end once known)."""
        d = self.detector
        start = 1 + anchor * d.stride + (np.arange(d.clip_length) - d.position) * d.clip_stride
        return map_boundary(start, self.count if self.finished else _UNKNOWN_END, d.boundary)

    def _anchor(self, anchor: int) -> bool:
        """Computes anchor ``anchor``'s features if its frames have all arrived; whether they are there."""
        if anchor in self._anchors:
            return True
        clip = self._clip(anchor)
        if clip.max() > self.count:
            return False
        d = self.detector
        tensor = d._clips([clip], self._frames).to(d.device)
        if self.parts is not None:
            self._anchors[anchor] = self.parts.features(tensor, torch.tensor(self._resized))[0]
            self.stats["forwards_3d"] += 1
            return True
        with torch.autocast(d.device.type, dtype=d.amp_dtype or torch.bfloat16, enabled=d.amp_dtype is not None):
            features = d.model.backbone_3d(tensor, [self._resized])[d.model.feature_3d]
        self._anchors[anchor] = features[0]
        self.stats["forwards_3d"] += 1
        return True

    def _detect(self, frame: int, features: torch.Tensor) -> FrameDetections:
        d = self.detector
        if self.parts is not None:
            h, w = self._resized
            keyframe = stack_padded([to_tensor(self._frames[frame])], d.size_divisible)
            boxes, scores, labels = self.parts.detect(
                keyframe, features[None].contiguous(), torch.tensor([h, w]),
                torch.tensor([h / self.size[0], w / self.size[1]], dtype=torch.float32), torch.tensor(self.size))
            n = len(scores)
            return FrameDetections(video=np.zeros(n, np.int64), frame=np.full(n, frame), label=labels.numpy(),
                                   score=scores.numpy(), boxes=boxes.numpy().reshape(n, 4))
        with torch.autocast(d.device.type, dtype=d.amp_dtype or torch.bfloat16, enabled=d.amp_dtype is not None):
            return d._detect([frame], self._frames, None, [features[None]], 0, self.size)

    def _forget(self) -> None:
        """Drops the frames and anchors no later frame needs."""
        d = self.detector
        first_anchor = (self.next_frame - 1) // d.stride
        for m in [m for m in self._anchors if m < first_anchor]:
            del self._anchors[m]
        oldest = min(int(self._clip(first_anchor).min()), self.next_frame)
        # a clip past the end reflects back up to T s frames before its anchor: keep those once the end is near
        oldest -= d.clip_length * d.clip_stride + d.stride if d.boundary == "reflect" else 0
        for f in [f for f in self._frames if f < oldest]:
            del self._frames[f]
