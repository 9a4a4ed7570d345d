"""Keyframe-centred clips and their transforms.

A clip is T frames at a stride around a keyframe (``clip_frames``), decoded once per distinct frame
(``read_clip``). ``ClipTransform`` resizes, flips and colour-jitters every frame of a clip and the
keyframe's boxes identically, drawing its random choices from an explicit ``np.random.Generator``.
``to_tensor`` turns the result into the raw form the networks take (RGB in [0, 255], channels first): each
network normalises it itself (``s3d_det.modeling.normalize``).

Box convention: (N,4) float32 x1,y1,x2,y2 in continuous pixel coordinates, the image spanning [0, W] x
[0, H]; resizing multiplies x by W'/W and y by H'/H, a horizontal flip maps x1' = W - x2, x2' = W - x1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from .frames import FrameSource

__all__ = ["BOUNDARY_MODES", "clip_frames", "map_boundary", "read_clip", "resized_shape", "resize_frame",
           "scale_boxes", "resize_clip", "hflip_clip", "sample_color_factors", "color_jitter", "ClipTransform",
           "TransformedClip", "TransformParams", "to_tensor"]

BOUNDARY_MODES = ("repeat", "reflect")


def clip_frames(keyframe: int, num_frames: int, length: int, stride: int = 1,
                boundary: str = "repeat", position: Optional[int] = None) -> List[int]:
    """Frame numbers (1-based) of the ``length``-frame clip centred on ``keyframe``.

    Position i of the clip holds ``keyframe + (i - length // 2) * stride``: the keyframe sits at index
    ``length // 2`` (for even T the later of the two middle positions: T=4, stride 1 -> k-2, k-1, k, k+1).
    ``position`` puts it at another index instead (0..length - 1; ``length - 1``: the clip ends at the keyframe,
    as a causal stream needs, ``engine.streaming``).
    Positions outside 1..num_frames are mapped back by ``boundary``:
    ``"repeat"`` clamps to the edge frame (0 -> 1, n+1 -> n); ``"reflect"`` mirrors about the edge frame
    without repeating it (0 -> 2, -1 -> 3, n+1 -> n-1), as numpy's ``pad(mode="reflect")``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not 1 <= keyframe <= num_frames:
        raise ValueError(f"keyframe {keyframe} outside the video's frames 1..{num_frames}")
    if length < 1 or stride < 1:
        raise ValueError(f"clip length and stride must be at least 1, got length={length}, stride={stride}")
    position = length // 2 if position is None else position
    if not 0 <= position < length:
        raise ValueError(f"the keyframe's position in a clip of {length} frames must be in 0..{length - 1}, "
                         f"got {position}")
    return [int(f) for f in map_boundary(keyframe + (np.arange(length) - position) * stride, num_frames, boundary)]


def map_boundary(frames: np.ndarray, num_frames: int, boundary: str = "repeat") -> np.ndarray:
    """Frame numbers (1-based, any integers) mapped into 1..num_frames by ``boundary`` (see ``clip_frames``):
    ``"repeat"`` clamps, ``"reflect"`` mirrors about the edge frames. Returns an int64 array of the same shape."""
    if boundary not in BOUNDARY_MODES:
        raise ValueError(f"unknown boundary mode {boundary!r}; expected one of {', '.join(BOUNDARY_MODES)}")
    index = np.asarray(frames, dtype=np.int64) - 1  # 0-based, may fall outside
    if boundary == "repeat" or num_frames == 1:
        index = np.clip(index, 0, num_frames - 1)
    else:
        period = 2 * (num_frames - 1)
        index = np.mod(index, period)
        index = np.where(index >= num_frames, period - index, index)
    return index + 1


def read_clip(source: FrameSource, frames: Sequence[int]) -> np.ndarray:
    """(T,H,W,3) uint8 RGB frames ``frames`` of ``source``; each distinct frame is decoded once."""
    decoded = source.read(frames)
    return np.stack([decoded[int(f)] for f in frames])


def resized_shape(h: int, w: int, short_side: int, max_size: Optional[int] = None) -> Tuple[int, int]:
    """(h', w') with the shorter side ``short_side``, shrunk further so the longer side is at most
    ``max_size``; aspect ratio kept, sides rounded to the nearest pixel."""
    scale = short_side / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def resize_frame(image: np.ndarray, size: Tuple[int, int], dst: Optional[np.ndarray] = None) -> np.ndarray:
    """``image`` (H,W,3) resized bilinearly (OpenCV's ``INTER_LINEAR``) to ``size`` (h', w'); the same array when
    it already has that size. The test resize of every frame: in ``ClipTransform`` (``resize_clip``) and in video
    inference (``VideoDetector``)."""
    if image.shape[:2] == tuple(size) and dst is None:
        return image
    return cv2.resize(image, (size[1], size[0]), dst=dst, interpolation=cv2.INTER_LINEAR)


def scale_boxes(boxes: np.ndarray, size: Tuple[int, int], new_size: Tuple[int, int]) -> np.ndarray:
    """Boxes (N,4) float32 in pixels of a ``size`` (h, w) frame -> in pixels of it resized to ``new_size``
    (x times w'/w, y times h'/h), float32."""
    (h, w), (nh, nw) = size, new_size
    scale = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    return (boxes * scale).astype(np.float32)


def resize_clip(clip: np.ndarray, boxes: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear resize of every frame of ``clip`` (T,H,W,C) to ``size`` (h', w') (``resize_frame``); boxes (N,4)
    scaled by w'/W along x and h'/H along y (``scale_boxes``). Returns new arrays."""
    t, h, w, c = clip.shape
    nh, nw = size
    out = np.empty((t, nh, nw, c), clip.dtype)
    for i in range(t):
        resize_frame(clip[i], size, dst=out[i])
    return out, scale_boxes(boxes, (h, w), size)


def hflip_clip(clip: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirrors every frame of ``clip`` (T,H,W,C) left-right (the values unchanged: see ``ClipTransform.apply`` for
    flow); boxes: x1' = W - x2, x2' = W - x1."""
    w = clip.shape[2]
    flipped = boxes.copy()
    flipped[:, 0] = w - boxes[:, 2]
    flipped[:, 2] = w - boxes[:, 0]
    return np.ascontiguousarray(clip[:, :, ::-1]), flipped


def sample_color_factors(rng: np.random.Generator, brightness: float, contrast: float,
                         saturation: float, hue: float = 0.0) -> Tuple[float, float, float, float]:
    """(b, c, s, h): b, c, s each uniform in [max(0, 1 - v), 1 + v] for its strength v (1.0 when v is 0); h, the
    hue shift in turns, uniform in [-hue, hue] (0.0 when hue is 0; torchvision's ``ColorJitter(hue=)``)."""
    factors = tuple(float(rng.uniform(max(0.0, 1 - v), 1 + v)) if v > 0 else 1.0
                    for v in (brightness, contrast, saturation))
    return factors + (float(rng.uniform(-hue, hue)) if hue > 0 else 0.0,)


_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def color_jitter(clip: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """Brightness, then contrast, then saturation, then hue, the same on every frame; (T,H,W,3) RGB in 0..255
    -> float32 in [0, 255].

    ``factors`` (b, c, s) or (b, c, s, h). Brightness b: x * b; contrast c: m + c (x - m), m the mean grey level
    of the whole clip (one value, so every frame gets the same map); saturation s: g + s (x - g), g each
    pixel's grey level; hue h (turns, in [-0.5, 0.5]): each pixel's HSV hue rotated by h (OpenCV's HSV; 1/3
    turns red into green). Each step clamps to [0, 255].

    Every step runs in place on one float copy of the clip (saturation as OpenCV's 3x3 colour transform
    s I + (1 - s) 1 g^T): fresh clip-sized arrays cost page faults, which took most of the time of the plain
    numpy expressions.
    """
    if len(factors) not in (3, 4):
        raise ValueError(f"factors must be (b, c, s) or (b, c, s, h), got {tuple(factors)}")
    b, c, s = factors[:3]
    h = factors[3] if len(factors) == 4 else 0.0
    if not -0.5 <= h <= 0.5:
        raise ValueError(f"the hue shift must lie in [-0.5, 0.5] turns, got {h}")
    x = np.asarray(clip).astype(np.float32)  # a copy: every step below works in place on it
    planes = x.reshape(-1, x.shape[-2], 3)  # the frames stacked into one tall image, for OpenCV
    if b != 1.0:
        x *= b
        np.clip(x, 0, 255, out=x)
    if c != 1.0:
        m = float(np.dot(cv2.mean(planes)[:3], _GRAY))  # the mean grey level: the grey of the channel means
        x -= m
        x *= c
        x += m
        np.clip(x, 0, 255, out=x)
    if s != 1.0:
        matrix = (s * np.eye(3) + (1 - s) * np.outer(np.ones(3), _GRAY)).astype(np.float32)
        cv2.transform(planes, matrix, dst=planes)
        np.clip(x, 0, 255, out=x)
    if h != 0.0:
        cv2.cvtColor(planes, cv2.COLOR_RGB2HSV, dst=planes)  # float: H in degrees, S in [0, 1], V as the input
        hue = planes[..., 0]
        hue += 360.0 * h  # now in [-180, 540): back into [0, 360) with one subtraction or addition
        if h > 0:
            np.subtract(hue, 360.0, out=hue, where=hue >= 360.0)
        else:
            np.add(hue, 360.0, out=hue, where=hue < 0.0)
        cv2.cvtColor(planes, cv2.COLOR_HSV2RGB, dst=planes)
        np.clip(x, 0, 255, out=x)
    return x


@dataclass(frozen=True)
class TransformedClip:
    """clip: (T,H',W',3) RGB, uint8 or float32 in [0, 255]; boxes: (N,4) float32 in pixels of the
    resized frame; scale: (sy, sx) = (H'/H, W'/W), so original = resized / scale (before the flip);
    flipped: whether it was mirrored."""

    clip: np.ndarray
    boxes: np.ndarray
    scale: Tuple[float, float]
    flipped: bool


@dataclass(frozen=True)
class ClipTransform:
    """Resize, flip and colour jitter, applied identically to every frame of a clip and to its boxes.

    Attributes:
        short_side: the resized shorter side; a sequence means one is drawn uniformly per clip
            (scale jitter).
        short_side_range: (lo, hi) inclusive: the shorter side drawn uniformly among these integers
            instead (overrides ``short_side``).
        max_size: cap on the resized longer side (None: no cap).
        hflip_prob: probability of a horizontal flip.
        brightness, contrast, saturation, hue: jitter strengths (0: off), see ``sample_color_factors``; hue
            at most 0.5 (turns).
    """

    short_side: Union[int, Sequence[int]] = 240
    short_side_range: Optional[Tuple[int, int]] = None
    max_size: Optional[int] = 1333
    hflip_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        sides = [self.short_side] if isinstance(self.short_side, int) else list(self.short_side)
        if not sides or min(sides) < 1:
            raise ValueError(f"short_side must be a positive int or a non-empty list of them, got {self.short_side!r}")
        if self.short_side_range is not None and not 1 <= self.short_side_range[0] <= self.short_side_range[1]:
            raise ValueError(f"short_side_range must be (lo, hi) with 1 <= lo <= hi, got {self.short_side_range!r}")
        if not 0 <= self.hflip_prob <= 1 or min(self.brightness, self.contrast, self.saturation) < 0:
            raise ValueError("hflip_prob must lie in [0, 1] and the jitter strengths be >= 0")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (turns), got {self.hue}")

    @property
    def is_random(self) -> bool:
        multi = not isinstance(self.short_side, int) and len(self.short_side) > 1
        jitter = self.brightness > 0 or self.contrast > 0 or self.saturation > 0 or self.hue > 0
        return multi or self.short_side_range is not None or self.hflip_prob > 0 or jitter

    def _short_side(self, rng: Optional[np.random.Generator]) -> int:
        if self.short_side_range is not None:
            lo, hi = self.short_side_range
            return int(rng.integers(lo, hi + 1))
        if isinstance(self.short_side, int):
            return self.short_side
        if len(self.short_side) == 1:
            return int(self.short_side[0])
        return int(self.short_side[rng.integers(len(self.short_side))])

    def draw(self, size: Tuple[int, int], rng: Optional[np.random.Generator] = None) -> "TransformParams":
        """The random choices for a clip of frames of ``size`` (h, w): the resized size, the flip and the colour
        factors, drawn from ``rng`` in that order (required when any is random; never global random state)."""
        if rng is None and self.is_random:
            raise ValueError("this ClipTransform is random: pass rng=np.random.Generator")
        h, w = size
        new_size = resized_shape(h, w, self._short_side(rng), self.max_size)
        flipped = self.hflip_prob > 0 and rng.random() < self.hflip_prob
        factors = sample_color_factors(rng, self.brightness, self.contrast, self.saturation, self.hue) \
            if rng is not None else (1.0, 1.0, 1.0, 0.0)
        return TransformParams(size=(h, w), new_size=new_size, flipped=bool(flipped), factors=factors)

    def apply(self, clip: np.ndarray, boxes: np.ndarray, params: "TransformParams", *,
              flow_x: Optional[int] = None) -> TransformedClip:
        """``clip`` (T,H,W,C) uint8 and boxes (N,4) in its pixels, transformed as ``params`` say.

        ``flow_x``: the clip is optical flow stored as JPEG values (``s3d_det.data.flow``), channel ``flow_x``
        holding the x component: it gets no colour jitter, and a flip also mirrors the flow, x -> 255 - x (the
        JPEG mapping is symmetric about 127.5). Flow is resized like an image, its values unchanged, as the
        community feeds flow JPEGs (MMAction2, ACT)."""
        _, h, w, _ = clip.shape
        if (h, w) != params.size:
            raise ValueError(f"frames of {h}x{w} (h x w), but the transform was drawn for {params.size}")
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if params.new_size != (h, w):
            clip, boxes = resize_clip(clip, boxes, params.new_size)
        if params.flipped:
            clip, boxes = hflip_clip(clip, boxes)
            if flow_x is not None:
                clip[..., flow_x] = 255 - clip[..., flow_x]
        if flow_x is None and params.factors != (1.0, 1.0, 1.0, 0.0):
            clip = color_jitter(clip, params.factors)
        h2, w2 = params.new_size
        return TransformedClip(clip=clip, boxes=boxes, scale=(h2 / h, w2 / w), flipped=params.flipped)

    def __call__(self, clip: np.ndarray, boxes: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> TransformedClip:
        """clip (T,H,W,3) uint8 RGB, boxes (N,4) in its pixels; ``rng`` draws every random choice and
        is required when any is random (this never touches global random state)."""
        return self.apply(clip, boxes, self.draw(clip.shape[1:3], rng))


@dataclass(frozen=True)
class TransformParams:
    """One draw of a ``ClipTransform``: size (h, w) of the input frames, new_size (h', w') after the resize,
    flipped, and the colour factors (b, c, s, h) (``sample_color_factors``; (1, 1, 1, 0): none)."""

    size: Tuple[int, int]
    new_size: Tuple[int, int]
    flipped: bool
    factors: Tuple[float, ...]


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Frames (T,H,W,C) or a frame (H,W,C), in [0, 255] (uint8 or float; RGB, or flow JPEG values) -> the raw form
    the networks take (``s3d_det.modeling.normalize``): float32 (C,T,H,W) or (C,H,W), values unchanged. Each
    network normalises its input itself, with the convention of its weights."""
    out = np.empty((pixels.shape[-1], *pixels.shape[:-1]), np.float32)
    for c in range(pixels.shape[-1]):  # one plane at a time: faster than one strided transpose of the whole array
        out[c] = pixels[..., c]
    return torch.from_numpy(out)
