"""Synthetic action-detection benchmark: stick figures whose action is defined only by their motion.

Writes the ACT on-disk layout (DESIGN.md, "Data")::

    DIR/Frames/<class>/<class>_<idx:04d>/00001.jpg ...   frames numbered from 1, JPEG quality 85
    DIR/synthetic-GT.pkl                                  ground truth in the ACT schema, one split
    DIR/meta.json                                         generator version and arguments; written last

Every actor is drawn from one appearance distribution (size, colours, resting pose) that does not depend
on its class, so a single frame cannot tell the classes apart: only the motion over time does (see
``MOTIONS``). Videos are untrimmed, as in UCF101-24: an actor idles (jitter of under a pixel, no class
motion) before and after its action, and only the action frames are annotated. Boxes are amodal (the
whole figure, also where the occluder bar or another actor hides part of it) and tight: x1, y1 are the
first column and row of the actor's pixels, x2, y2 the last (inclusive, like the JHMDB boxes made from
puppet masks; the ``act`` IoU adds one pixel).

The files are a function of the arguments alone (for one numpy and OpenCV build): each video draws from
its own ``np.random.SeedSequence(seed, spawn_key=(video_index, stream, ...))``, so neither the order of
generation nor anything else changes a byte. The dataset is built in a hidden folder beside ``DIR`` and
renamed onto it at the end, so a killed run never leaves a folder that looks complete.

Order variant (``classes="order"``, off by default): ``ORDER_CLASSES``, two pairs of classes that are each other's
time reversal (an arm raised or lowered; sitting down or standing up), one change between two holds. Every frame
of one class looks like a frame of its pair, and so does the set of frames: only the order of the frames tells
them apart (docs/experiments/order-classes.md).

Multi-label variant (``multi_label`` > 0, off by default): that fraction of the movers (move_left, move_right)
also does a second action (``COMBINED``: wave, jump or spin) over a stretch of its walk; on those frames the
actor's one box is in both labels' tubes, as the ACT schema stores a person doing two actions at once.

Command line::

    python -m s3d_det.data.synthetic --out DIR --num-videos 90 --seed 0 [--size 320x240]
        [--min-frames 32 --max-frames 64] [--test-fraction 1/3] [--multi-label 0.5] [--classes order] [--quiet]
"""
from __future__ import annotations

import argparse
import colorsys
import dataclasses
import glob
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from fractions import Fraction
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from s3d_det.data.annotations import load_gt, make_gt, save_gt
from s3d_det.utils.io import write_json

from .frames import frame_numbers

logger = logging.getLogger(__name__)

__all__ = [
    "CLASSES",
    "ORDER_CLASSES",
    "CLASS_SETS",
    "COMBINED",
    "MOTIONS",
    "VERSION",
    "Appearance",
    "Motion",
    "Actor",
    "VideoPlan",
    "sample_appearance",
    "plan_video",
    "render_frame",
    "generate_synthetic",
    "ensure_synthetic",
    "is_complete",
    "main",
]

VERSION = 2  # bump whenever a change alters any written byte
CLASSES = ("move_left", "move_right", "jump", "wave", "spin", "crouch")
MOTIONS = {
    "move_left": "walks left, 2.5-4 px/frame (at 240 px frame height), legs scissoring every 10-14 frames",
    "move_right": "the same, walking right",
    "jump": "bounces straight up and down, 30-40% of its height (the tallest less: it stays in the frame), "
            "8-12 frames a bounce",
    "wave": "swings one arm +-60-85 degrees about its resting angle, 8-12 frames a wave",
    "spin": "turns about its vertical axis (the figure narrows to 40%, mirrors, widens), 12-20 degrees/frame",
    "crouch": "squats down and up (hip lowers, knees bend outward), 12-20 frames a squat",
    "idle": "before and after the action (not annotated): +-0.75 px and +-2 degree jitter about its rest pose",
    "arm_up": "raises one arm from 61-80 degrees to its mirror angle 100-119 degrees (hand below the head top: the "
              "box is the same before and after), a 4-8 frame smoothstep between two holds of 11 frames or more",
    "arm_down": "the time reversal of arm_up: lowers one arm from 100-119 to 61-80 degrees",
    "sit_down": "squats from a crouch of 0-0.2 to 0.8-1 (the box top moves down), a 4-8 frame smoothstep between "
                "two holds of 11 frames or more",
    "stand_up": "the time reversal of sit_down: rises from a crouch of 0.8-1 to 0-0.2",
    "order_idle": "before and after the action (not annotated): the pose it starts from before, the pose it ends "
                  "in after, with +-0.75 px and +-2 degree jitter",
}
# Classes told apart only by the order of their frames: each pair is one change and its time reversal, with the
# same random numbers drawn in the same order for both, so a frame, or the set of a clip's frames, is distributed
# alike in both classes of a pair. The arm pair keeps the actor's box constant outside the change (the raised hand
# stays below the head top, and sin(180 - a) = sin a); sitting down moves the box top: a control for what the box
# alone tells a detector.
ORDER_CLASSES = ("arm_up", "arm_down", "sit_down", "stand_up")
CLASS_SETS = {"default": CLASSES, "order": ORDER_CLASSES}
ORDER_MARGIN = 4  # held frames annotated on each side of the change
ORDER_HOLD = 11  # held frames at least before and after the change (the 4 annotated ones included)
ORDER_RAMP = (4, 8)  # frames of the change, uniform over the whole numbers in this range
# The actions a mover can do while it walks (multi_label > 0): each drives a part of the pose the walk leaves alone
# (walk: x and the legs' swing; wave: one arm; jump: the height above the ground; spin: the turn about the vertical
# axis), so both motions show whole. Crouch is left out: it bends the legs the walk swings.
COMBINED = ("wave", "jump", "spin")
GT_NAME = "synthetic-GT.pkl"
META_NAME = "meta.json"
JPEG_QUALITY = 85

_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel motion
_SWING = math.radians(25)  # leg swing amplitude of the walk, and the range of the resting swing
_MOVERS = ("move_left", "move_right")


@dataclasses.dataclass(frozen=True)
class Appearance:
    """What a single frame shows of an actor; drawn without knowing its class. Lengths in pixels, angles in
    radians. ``colors`` (BGR): rim (near black), limbs, torso, head. Resting pose: ``arms`` (left, right)
    measured from hanging down towards the outside, ``stance`` leg spread, ``swing`` leg swing, ``crouch``
    depth in [0, 1], ``yaw`` turn about the vertical axis."""

    height: float
    thickness: float
    head: float
    colors: Tuple[Tuple[int, int, int], ...]
    arms: Tuple[float, float]
    stance: float
    swing: float
    crouch: float
    yaw: float


@dataclasses.dataclass(frozen=True)
class Motion:
    """An actor's action: frames ``start``..``end`` (1-based, inclusive) are annotated with ``label``.
    ``x`` (body axis) and ``ground`` (feet) place it, in pixels, before the action. ``speed``: px/frame
    (movers) or rad/frame (spin); ``amplitude``: px (jump) or rad (wave); ``period``: frames per cycle;
    ``direction``: +-1; ``arm``: 0 left, 1 right (wave, arm_up/down). ``kind``: the class name (its set's
    ``label``). Order classes (``ORDER_CLASSES``): the changing part of the pose (arm angle, rad, or crouch depth)
    goes from ``pose`` to ``target`` over frames start + ``ORDER_MARGIN`` .. end - ``ORDER_MARGIN``."""

    label: int
    start: int
    end: int
    x: float
    ground: float
    speed: float = 0.0
    amplitude: float = 0.0
    period: float = 1.0
    direction: int = 1
    arm: int = 0
    kind: str = ""
    pose: float = 0.0
    target: float = 0.0


@dataclasses.dataclass(frozen=True)
class Actor:
    """One stick figure. ``jitter`` (nframes, 4): per-frame dx, dy (px) and left/right arm angle (rad).
    ``second``: None, or (multi-label variant) an action of ``COMBINED`` done at the same time as the mover
    ``motion``, over frames within its own."""

    appearance: Appearance
    motion: Motion
    jitter: np.ndarray
    second: Optional[Motion] = None


@dataclasses.dataclass(frozen=True)
class VideoPlan:
    """Everything needed to draw one video. ``background`` (h + pad_y, w + pad_x, 3) uint8 BGR texture,
    ``offsets`` (nframes, 2) int: its (row, column) crop origin per frame. ``occluder``: None or a
    horizontal bar (thickness px, BGR colour, top rows (nframes,) int px)."""

    name: str
    nframes: int
    size: Tuple[int, int]
    actors: Tuple[Actor, ...]
    background: np.ndarray
    offsets: np.ndarray
    occluder: Optional[Tuple[int, Tuple[int, int, int], np.ndarray]]


def _jitter_scale(scale: float) -> np.ndarray:
    """Idle jitter bounds: dx, dy (px, 0.75 at 240 px frame height), left and right arm angle (2 degrees)."""
    return np.array([0.75 * scale, 0.75 * scale, math.radians(2), math.radians(2)])


def _rng(seed: int, index: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, *stream)))


def _bgr(h: float, s: float, v: float) -> Tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (round(b * 255), round(g * 255), round(r * 255))


def sample_appearance(rng: np.random.Generator, *, size: Tuple[int, int]) -> Appearance:
    """An actor's look and resting pose for frames of ``size`` (h, w); takes no class on purpose."""
    height = rng.uniform(80, 130) * size[0] / 240
    colors = (_bgr(rng.uniform(), rng.uniform(), rng.uniform(0, 0.15)),) + tuple(
        _bgr(rng.uniform(), rng.uniform(0.65, 1), rng.uniform(0.75, 1)) for _ in range(3)
    )
    return Appearance(
        height=height,
        thickness=rng.uniform(0.065, 0.09) * height,
        head=rng.uniform(0.08, 0.11) * height,
        colors=colors,
        arms=tuple(np.radians(rng.uniform(10, 170, 2)).tolist()),
        stance=math.radians(rng.uniform(5, 15)),
        swing=rng.uniform(-_SWING, _SWING),
        crouch=rng.uniform(),
        yaw=rng.uniform(0, 2 * math.pi),
    )


def _half_width(app: Appearance) -> float:
    """Half the widest pose (arm 0.4 h and hand, plus line and rim), px."""
    return 0.4 * app.height + 0.6 * app.head + app.thickness + 2


def _feet_range(app: Appearance, size) -> Tuple[float, float]:
    """(highest, lowest) row of the feet of the standing ``app`` that keeps the whole figure in the frame, px."""
    lowest = size[0] - app.thickness - 2
    top = 1.2 * app.height + 0.6 * app.head + app.thickness + 2
    return top, lowest


def _sample_motion(rng, label: int, app: Appearance, *, size, nframes: int, taken: list, room: float = 0.0,
                   classes: Sequence[str] = CLASSES):
    """The action of one actor, ``classes[label]``. ``taken`` holds (x per frame, half width) of the actors placed
    before: of 16 random places, the one overlapping them least (summed over frames) is taken, and appended.
    ``room``: px to keep free above the figure (as far as the frame allows) for a second action's jump."""
    h, w = size
    scale = h / 240
    name = classes[label]
    if name in ORDER_CLASSES:
        return _sample_order_motion(rng, label, name, app, size=size, nframes=nframes, taken=taken)
    length = int(np.clip(round(nframes * rng.uniform(0.5, 0.8)), 3, nframes - 2))
    half = _half_width(app)
    kw = {}
    if name in _MOVERS:
        kw = dict(speed=rng.uniform(2.5, 4.0) * scale, period=rng.uniform(10, 14),
                  direction=-1 if name == "move_left" else 1)
        length = max(3, min(length, int((w - 2 * half) / kw["speed"])))
    elif name == "jump":
        kw = dict(amplitude=rng.uniform(0.3, 0.4) * app.height, period=rng.uniform(8, 12))
    elif name == "wave":
        kw = dict(amplitude=math.radians(rng.uniform(60, 85)), period=rng.uniform(8, 12), arm=int(rng.integers(2)))
    elif name == "spin":
        kw = dict(speed=math.radians(rng.uniform(12, 20)), direction=int(rng.choice([-1, 1])))
    else:  # crouch
        kw = dict(period=rng.uniform(12, 20))
    if name not in _MOVERS and name != "spin":  # a whole number of cycles: the action ends in the rest pose
        kw["period"] = length / max(1, round(length / kw["period"]))
    start = int(rng.integers(2, nframes - length + 1))  # at least one idle frame before and after

    step = kw["speed"] * kw["direction"] if name in _MOVERS else 0.0
    x = _place(rng, half, w=w, step=step, start=start, length=length, nframes=nframes, taken=taken)
    top, lowest = _feet_range(app, size)  # the feet's highest row standing, and lowest row
    if room:
        top += min(room, lowest - top)
    if name == "jump":  # the tallest actors jump a little lower, so that the whole jump stays in the frame
        kw["amplitude"] = min(kw["amplitude"], lowest - top)
        top += kw["amplitude"]
    ground = rng.uniform(top, lowest)
    return Motion(label=label, start=start, end=start + length - 1, x=x, ground=ground, kind=name, **kw)


def _place(rng, half: float, *, w: int, step: float, start: int, length: int, nframes: int, taken: list) -> float:
    """The body axis x (px, before the action) of an actor ``2 half`` px wide moving ``step`` px a frame over frames
    start..start + length - 1: of 16 random places the one overlapping the actors in ``taken`` least; its path
    is appended to ``taken``."""
    travel = step * length
    xs = rng.uniform(half + max(0.0, -travel), w - half - max(0.0, travel), 16)
    paths = xs[:, None] + step * np.clip(np.arange(1, nframes + 1) - start + 1, 0, length)  # (16, nframes)
    overlap = sum(np.maximum(0.0, half + other_half - np.abs(paths - other)).sum(1) for other, other_half in taken)
    best = int(np.argmin(overlap)) if taken else 0
    taken.append((paths[best], half))
    return float(xs[best])


def _sample_order_motion(rng, label: int, name: str, app: Appearance, *, size, nframes: int, taken: list) -> Motion:
    """An action of ``ORDER_CLASSES``: a change of ``d`` frames (``ORDER_RAMP``) starting at frame ``t0``, uniform
    over the places that leave ``ORDER_HOLD`` held frames or more on each side (so the holds before and after have
    one law), annotated with ``ORDER_MARGIN`` held frames on each side. Both classes of a pair draw the same
    numbers in the same order; only ``pose`` and ``target`` swap."""
    d = int(rng.integers(ORDER_RAMP[0], ORDER_RAMP[1] + 1))
    t0 = int(rng.integers(ORDER_HOLD + 1, nframes - ORDER_HOLD - d + 2))
    if name in ("arm_up", "arm_down"):
        # the raised hand (angle 180 - a) stays below the head top: 0.4 h cos a + 0.6 head < neck + 2 head
        lowest = math.degrees(math.acos((0.05 * app.height + 1.4 * app.head) / (0.4 * app.height))) + 2
        low = math.radians(rng.uniform(lowest, lowest + 12))
        ends = (low, math.pi - low)
    else:  # sit_down, stand_up: crouch depth
        ends = (rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0))
    arm = int(rng.integers(2))
    pose, target = ends if name in ("arm_up", "sit_down") else ends[::-1]
    start, end = t0 - ORDER_MARGIN, t0 + d - 1 + ORDER_MARGIN
    x = _place(rng, _half_width(app), w=size[1], step=0.0, start=start, length=end - start + 1, nframes=nframes,
               taken=taken)
    top, lowest_feet = _feet_range(app, size)
    return Motion(label=label, start=start, end=end, x=x, ground=rng.uniform(top, lowest_feet), arm=arm, kind=name,
                  pose=pose, target=target)


def _sample_second(rng, label: int, app: Appearance, *, size, within: Motion) -> Motion:
    """A second action (``COMBINED``) of the mover ``within``: 50-100% of its frames, inside them; parameters
    drawn as for a single action (wave and jump: a whole number of cycles, ending in the rest pose). A jump
    is at most as high as the room above ``within.ground`` (``_sample_motion``'s ``room``)."""
    name = CLASSES[label]
    span = within.end - within.start + 1
    length = int(np.clip(round(span * rng.uniform(0.5, 1.0)), min(3, span), span))
    start = within.start + int(rng.integers(0, span - length + 1))
    if name == "wave":
        kw = dict(amplitude=math.radians(rng.uniform(60, 85)), period=rng.uniform(8, 12), arm=int(rng.integers(2)))
    elif name == "jump":
        top, _ = _feet_range(app, size)
        kw = dict(amplitude=min(rng.uniform(0.3, 0.4) * app.height, within.ground - top), period=rng.uniform(8, 12))
    elif name == "spin":
        kw = dict(speed=math.radians(rng.uniform(12, 20)), direction=int(rng.choice([-1, 1])))
    else:
        raise ValueError(f"{name!r} is not an action a mover can do while walking; expected one of {COMBINED}")
    if name != "spin":
        kw["period"] = length / max(1, round(length / kw["period"]))
    return Motion(label=label, start=start, end=start + length - 1, x=within.x, ground=within.ground, kind=name, **kw)


def _background(rng, *, size, nframes: int):
    """A scrolling texture (blurred noise mixed with stripes, two low-saturation colours) and its crop
    origins per frame."""
    h, w = size
    scale = h / 240
    speed, angle = rng.uniform(0.25, 1.0) * scale, rng.uniform(0, 2 * math.pi)
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    pad_x, pad_y = math.ceil(abs(vx) * (nframes - 1)) + 1, math.ceil(abs(vy) * (nframes - 1)) + 1
    th, tw = h + pad_y, w + pad_x
    noise = cv2.GaussianBlur(rng.standard_normal((th, tw)).astype(np.float32), (0, 0), rng.uniform(2, 6) * scale)
    noise = 0.5 + 0.5 * np.tanh(noise / noise.std())
    yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
    theta, period = rng.uniform(0, math.pi), rng.uniform(12, 40) * scale
    stripes = 0.5 + 0.5 * np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period))
    mix = rng.uniform(0.2, 0.8)
    texture = (mix * stripes + (1 - mix) * noise)[..., None]
    c1, c2 = (np.array(_bgr(rng.uniform(), rng.uniform(0, 0.3), rng.uniform(0.3, 0.75)), np.float32)
              for _ in range(2))
    image = np.round(c1 + (c2 - c1) * texture).astype(np.uint8)
    t = np.arange(nframes)
    cols = np.round((pad_x - 1 if vx < 0 else 0) + vx * t)
    rows = np.round((pad_y - 1 if vy < 0 else 0) + vy * t)
    offsets = np.clip(np.stack([rows, cols], 1), 0, [pad_y, pad_x]).astype(np.int64)
    return image, offsets


def _occluder(rng, *, size, nframes: int):
    """A horizontal bar crossing the frame up or down, wrapping around; thinner than any actor is tall, so
    it never hides one whole."""
    h = size[0]
    width = max(2, round(rng.uniform(0.05, 0.09) * h))
    color = _bgr(rng.uniform(), rng.uniform(0, 0.3), rng.uniform(0.25, 0.8))
    speed = rng.uniform(1.0, 2.5) * h / 240 * rng.choice([-1, 1])
    tops = np.floor((rng.uniform(0, h) + speed * np.arange(nframes)) % (h + width)).astype(np.int64) - width
    return width, color, tops


def plan_video(*, seed: int, index: int, size: Tuple[int, int] = (240, 320), min_frames: int = 32,
               max_frames: int = 64, label: Optional[int] = None, multi_label: float = 0.0,
               classes: str = "default") -> VideoPlan:
    """Draws the random content of video ``index``: length, 1-2 actors, background, occluder.

    ``classes``: the class set (``CLASS_SETS``: "default", the six of ``CLASSES``, or "order", ``ORDER_CLASSES``).
    ``label`` (default ``index % len(classes)``) is the class of the first actor, which names the video.
    Appearances come from their own random streams, so ``label`` changes no actor's appearance.
    ``multi_label``: the chance of each mover to also do one of ``COMBINED`` (drawn from a stream of its own:
    at 0 the plan is that of the single-label set, and every actor looks and moves as there except for the
    second action it is given).
    """
    names = CLASS_SETS[classes]
    if multi_label and classes != "default":
        raise ValueError(f"multi_label needs the default classes (its movers); got classes {classes!r}")
    label = index % len(names) if label is None else label
    layout = _rng(seed, index, 0)
    nframes = int(layout.integers(min_frames, max_frames + 1))
    count = int(layout.choice([1, 2], p=[0.6, 0.4]))
    labels = [label] + layout.integers(0, len(names), count - 1).tolist()
    occluded = layout.uniform() < 0.35
    scale = size[0] / 240
    actors, taken = [], []
    for k, actor_label in enumerate(labels):
        app = sample_appearance(_rng(seed, index, 1, k), size=size)
        second_label, second, room = None, None, 0.0
        if multi_label and CLASSES[actor_label] in _MOVERS:
            extra = _rng(seed, index, 6, k)  # the second action's own stream: no other draw changes
            if extra.uniform() < multi_label:
                second_label = CLASSES.index(COMBINED[int(extra.integers(len(COMBINED)))])
                room = 0.4 * app.height if CLASSES[second_label] == "jump" else 0.0
        motion = _sample_motion(_rng(seed, index, 2, k), actor_label, app, size=size, nframes=nframes, taken=taken,
                                room=room, classes=names)
        if second_label is not None:
            second = _sample_second(extra, second_label, app, size=size, within=motion)
        jitter = _rng(seed, index, 3, k).uniform(-1, 1, (nframes, 4)) * _jitter_scale(scale)
        actors.append(Actor(appearance=app, motion=motion, jitter=jitter, second=second))
    background, offsets = _background(_rng(seed, index, 4), size=size, nframes=nframes)
    occluder = _occluder(_rng(seed, index, 5), size=size, nframes=nframes) if occluded else None
    name = names[label]
    return VideoPlan(name=f"{name}/{name}_{index // len(names):04d}", nframes=nframes, size=tuple(size),
                     actors=tuple(actors), background=background, offsets=offsets, occluder=occluder)


def _skeleton(actor: Actor, t: int):
    """Pose of ``actor`` at frame ``t`` (1-based) in frame pixels: (limb segments, torso segment, head
    centre, head radius). Motion runs over frames start..end: tau counts its frames, held before and after. A
    ``second`` action (its own frames and tau) changes the part of the pose the mover leaves alone."""
    a, m = actor.appearance, actor.motion
    jx, jy, ja0, ja1 = actor.jitter[t - 1]
    x, lift = m.x, 0.0
    arms = [a.arms[0] + ja0, a.arms[1] + ja1]
    swing, crouch, yaw = a.swing, a.crouch, a.yaw
    for step in (m,) if actor.second is None else (m, actor.second):
        length = step.end - step.start + 1
        tau = min(max(t - step.start + 1, 0), length)
        name = step.kind or CLASSES[step.label]
        if name in ORDER_CLASSES:  # hold, smoothstep over the middle length - 2 margin frames, hold
            r = min(max((tau - ORDER_MARGIN) / (length - 2 * ORDER_MARGIN + 1), 0.0), 1.0)
            value = step.pose + (step.target - step.pose) * r * r * (3 - 2 * r)
            if name in ("arm_up", "arm_down"):
                arms[step.arm] = value + (ja0, ja1)[step.arm]
            else:
                crouch = value
        elif name in _MOVERS:
            x += step.direction * step.speed * tau
            swing = _SWING * math.sin(2 * math.pi * tau / step.period + math.asin(a.swing / _SWING))
        elif name == "jump":
            lift = step.amplitude * abs(math.sin(math.pi * tau / step.period))
        elif name == "wave":
            arms[step.arm] += step.amplitude * math.sin(2 * math.pi * tau / step.period)
        elif name == "spin":
            yaw += step.direction * step.speed * tau
        else:  # crouch: towards the farther end of [0, 1] and back
            crouch += ((1.0 if crouch < 0.5 else 0.0) - crouch) * math.sin(math.pi * tau / step.period) ** 2

    h = a.height
    leg, arm, neck = 0.46 * h, 0.40 * h, 0.05 * h
    torso = h - leg - neck - 2 * a.head
    reach = leg * (1 - 0.6 * crouch)  # hip to foot
    bend = math.sqrt(max(0.0, (leg / 2) ** 2 - (reach / 2) ** 2))
    segments, feet = [], []
    for side, theta in ((-1, -a.stance + swing), (1, a.stance - swing)):
        ux, uy = math.sin(theta), math.cos(theta)
        foot = (reach * ux, reach * uy)
        knee = (reach * ux / 2 + bend * side * uy, reach * uy / 2 - bend * side * ux)
        segments += [((0.0, 0.0), knee), (knee, foot)]
        feet.append(foot[1])
    for side, angle in ((-1, arms[0]), (1, arms[1])):
        segments.append(((0.0, -torso), (side * arm * math.sin(angle), -torso + arm * math.cos(angle))))

    cos_yaw = math.copysign(0.4 + 0.6 * abs(math.cos(yaw)), math.cos(yaw))  # side views stay 40% wide
    x0, y0 = x + jx, m.ground - lift + jy - max(feet)

    def place(p):
        return (x0 + p[0] * cos_yaw, y0 + p[1])

    limbs = [(place(p), place(q)) for p, q in segments]
    body = (place((0.0, 0.0)), place((0.0, -torso - neck)))
    return limbs, body, place((0.0, -torso - neck - a.head)), a.head


def _fixed(p) -> Tuple[int, int]:
    return (round(p[0] * (1 << _SHIFT)), round(p[1] * (1 << _SHIFT)))


def _draw_actor(image: np.ndarray, actor: Actor, t: int):
    """Draws ``actor`` (rimmed legs, torso, arms, head and hands) at frame ``t`` onto ``image`` (in place);
    returns its tight box (x1, y1, x2, y2), inclusive pixel indices, or None when none of it is in the frame."""
    limbs, body, head, radius = _skeleton(actor, t)
    a = actor.appearance
    limb, trunk = max(2, round(a.thickness)), max(3, round(1.4 * a.thickness))
    rim = max(1, round(0.25 * a.thickness))
    parts = np.zeros(image.shape[:2], np.uint8)  # 0 none, 1 rim, 2 limbs, 3 torso, 4 head and hands
    for value, grow in ((1, rim), (0, 0)):  # the rim of every part first, then legs, torso, arms, head, hands
        for p, q in limbs[:4]:
            cv2.line(parts, _fixed(p), _fixed(q), value or 2, limb + 2 * grow, cv2.LINE_8, _SHIFT)
        cv2.line(parts, _fixed(body[0]), _fixed(body[1]), value or 3, trunk + 2 * grow, cv2.LINE_8, _SHIFT)
        for p, q in limbs[4:]:
            cv2.line(parts, _fixed(p), _fixed(q), value or 2, limb + 2 * grow, cv2.LINE_8, _SHIFT)
        for centre, r in ((head, radius), (limbs[4][1], 0.6 * radius), (limbs[5][1], 0.6 * radius)):  # head, hands
            cv2.circle(parts, _fixed(centre), round((r + grow) * (1 << _SHIFT)), value or 4, -1, cv2.LINE_8, _SHIFT)
    rows, cols = np.flatnonzero(parts.any(1)), np.flatnonzero(parts.any(0))
    if len(rows) == 0:
        return None
    y1, y2, x1, x2 = rows[0], rows[-1], cols[0], cols[-1]
    crop, where = image[y1:y2 + 1, x1:x2 + 1], parts[y1:y2 + 1, x1:x2 + 1]
    for value, color in enumerate(a.colors, start=1):
        crop[where == value] = color
    return np.array([x1, y1, x2, y2], np.float64)


def render_frame(plan: VideoPlan, t: int, *, actors: Optional[Sequence[int]] = None, occluder: bool = True):
    """Draws frame ``t`` (1-based) of ``plan``.

    actors: indices into ``plan.actors`` to draw (default all); they are drawn back to front (higher feet
    first). occluder: whether to draw the occluder bar (last, over the actors).
    Returns (image (h, w, 3) uint8 BGR, boxes): boxes[k] is actor k's amodal box (4,) float64 x1, y1, x2, y2
    in inclusive pixel indices of the frame, or None where actor k was not drawn.
    """
    h, w = plan.size
    row, col = plan.offsets[t - 1]
    image = plan.background[row:row + h, col:col + w].copy()
    boxes: List[Optional[np.ndarray]] = [None] * len(plan.actors)
    chosen = range(len(plan.actors)) if actors is None else actors
    for k in sorted(chosen, key=lambda k: plan.actors[k].motion.ground):
        boxes[k] = _draw_actor(image, plan.actors[k], t)
    if occluder and plan.occluder is not None:
        width, color, tops = plan.occluder
        image[max(0, tops[t - 1]):max(0, tops[t - 1] + width)] = color
    return image, boxes


def _check_params(num_videos, seed, size, min_frames, max_frames, test_fraction, multi_label=0.0,
                  classes="default") -> dict:
    """The arguments, checked, as meta.json records them; ``multi_label`` only where it is not 0 and ``classes``
    only where it is not "default", so the params of a default set are those recorded before the variants
    existed."""
    def integer(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not integer(num_videos) or num_videos < 2:
        raise ValueError(f"num_videos must be an integer >= 2 (one train and one test video at least), "
                         f"got {num_videos!r}")
    if not integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(integer(s) for s in size)):
        raise ValueError(f"size must be (height, width) in pixels, got {size!r}")
    if size[0] < 64 or size[1] < size[0]:
        raise ValueError(f"size (height, width) must have height >= 64 and width >= height, got {tuple(size)}")
    if not (integer(min_frames) and integer(max_frames) and 8 <= min_frames <= max_frames):
        raise ValueError(f"frame counts must be integers with 8 <= min_frames <= max_frames, got "
                         f"min_frames={min_frames!r}, max_frames={max_frames!r}")
    if not (isinstance(test_fraction, (int, float, Fraction)) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    number = isinstance(multi_label, (int, float, Fraction, np.integer, np.floating))
    number = number and not isinstance(multi_label, bool)
    if not (number and 0 <= multi_label <= 1):
        raise ValueError(f"multi_label (the share of movers that also do a second action) must be a number in "
                         f"[0, 1], got {multi_label!r}")
    if not isinstance(classes, str) or classes not in CLASS_SETS:
        raise ValueError(f"classes must be one of {sorted(CLASS_SETS)}, got {classes!r}")
    if classes != "default" and multi_label:
        raise ValueError(f"multi_label needs the default classes (its movers walk while doing a second action); "
                         f"got multi_label {multi_label!r} with classes {classes!r}")
    shortest = 2 * ORDER_HOLD + ORDER_RAMP[1]
    if classes == "order" and min_frames < shortest:
        raise ValueError(f"the order classes need min_frames >= {shortest} ({ORDER_HOLD} held frames on each side "
                         f"of a change of up to {ORDER_RAMP[1]}), got min_frames={min_frames!r}")
    params = {"num_videos": int(num_videos), "seed": int(seed), "size": [int(size[0]), int(size[1])],
              "min_frames": int(min_frames), "max_frames": int(max_frames), "test_fraction": float(test_fraction)}
    if multi_label:
        params["multi_label"] = float(multi_label)
    if classes != "default":
        params["classes"] = classes
    return params


def _write_dataset(root: str, params: dict, progress: bool) -> None:
    """Writes frames, GT and (last) meta.json of the dataset ``params`` describe into ``root``."""
    size = tuple(params["size"])
    classes = CLASS_SETS[params.get("classes", "default")]
    names, nframes, gttubes = [], {}, {}
    frames_total = 0
    for index in tqdm(range(params["num_videos"]), desc="synthetic videos", disable=not progress):
        plan = plan_video(seed=params["seed"], index=index, size=size, min_frames=params["min_frames"],
                          max_frames=params["max_frames"], multi_label=params.get("multi_label", 0.0),
                          classes=params.get("classes", "default"))
        folder = os.path.join(root, "Frames", plan.name)
        os.makedirs(folder)
        rows: List[list] = [[] for _ in plan.actors]
        for t in range(1, plan.nframes + 1):
            image, boxes = render_frame(plan, t)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode frame {t} of {plan.name} as JPEG")
            with open(os.path.join(folder, f"{t:05d}.jpg"), "wb") as f:
                f.write(jpeg.tobytes())
            for k, actor in enumerate(plan.actors):
                if actor.motion.start <= t <= actor.motion.end:
                    if boxes[k] is None:
                        raise RuntimeError(f"{plan.name}: actor {k} is outside the frame at annotated frame {t}")
                    rows[k].append([t, *boxes[k]])
        labelled = [(actor.motion.label, np.array(tube, np.float32)) for actor, tube in zip(plan.actors, rows)]
        for actor, tube in zip(plan.actors, labelled):  # the same boxes, on the second action's frames
            if actor.second is not None:
                frames = tube[1][:, 0]
                labelled.append((actor.second.label, tube[1][(frames >= actor.second.start)
                                                             & (frames <= actor.second.end)]))
        tubes = {}
        for label, tube in sorted(labelled, key=lambda pair: pair[0]):
            tubes.setdefault(label, []).append(tube)
        names.append(plan.name)
        nframes[plan.name] = plan.nframes
        gttubes[plan.name] = tubes
        frames_total += plan.nframes

    num_test = min(len(names) - 1, max(1, round(len(names) * params["test_fraction"])))
    train, test = names[:len(names) - num_test], names[len(names) - num_test:]
    gt = make_gt(labels=classes, nframes=nframes, resolution={v: size for v in names}, gttubes=gttubes,
                 train_videos=[train], test_videos=[test])
    save_gt(gt, os.path.join(root, GT_NAME))
    write_json(os.path.join(root, META_NAME), {
        "generator": "s3d_det.data.synthetic",
        "version": VERSION,
        "params": params,
        "built_with": {"numpy": np.__version__, "opencv": cv2.__version__},
        "classes": {name: MOTIONS[name] for name in classes},
        "idle": MOTIONS["order_idle" if classes == ORDER_CLASSES else "idle"],
        **({"combined": f"{params['multi_label']:g} of the movers also do one of {', '.join(COMBINED)} over "
                        "50-100% of their walk; those frames' box is in both labels' tubes"}
           if "multi_label" in params else {}),
        "videos": {"train": len(train), "test": len(test)},
        "frames": frames_total,
        "tubes": sum(len(t) for per_label in gttubes.values() for t in per_label.values()),
        "ground_truth": GT_NAME,
    })


def is_complete(out_dir: str, *, params: dict) -> bool:
    """Whether ``out_dir`` holds the finished dataset of ``params`` (as :func:`_check_params` returns them):
    meta.json (written last) names this version and these arguments, and every frame the GT lists exists."""
    try:
        with open(os.path.join(out_dir, META_NAME)) as f:
            meta = json.load(f)
        if meta.get("version") != VERSION or meta.get("params") != params:
            return False
        gt = load_gt(os.path.join(out_dir, GT_NAME))
    except (OSError, ValueError):
        return False
    for video, n in gt["nframes"].items():
        folder = os.path.join(out_dir, "Frames", video)
        expected = [f"{t:05d}.jpg" for t in range(1, n + 1)]
        if not os.path.isdir(folder) or sorted(os.listdir(folder)) != expected:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(parent: str, base: str) -> None:
    """Removes the build folders of killed runs (their process is gone) for the dataset ``base``."""
    for path in glob.glob(os.path.join(parent, f".{glob.escape(base)}.*-*-*")):
        found = re.fullmatch(rf"\.{re.escape(base)}\.(tmp|old)-(\d+)-\w+", os.path.basename(path))
        if found and not _pid_alive(int(found.group(2))):
            shutil.rmtree(path, ignore_errors=True)


def _check_replaceable(out_dir: str) -> None:
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir} exists and is not a folder; choose another output folder")
    foreign = sorted(set(os.listdir(out_dir)) - {"Frames", GT_NAME, META_NAME})
    if foreign:
        raise ValueError(f"{out_dir} exists and holds {foreign[:5]}, which the synthetic generator does not "
                         "write; refusing to replace it: choose another output folder or remove it")


def generate_synthetic(out_dir: str, *, num_videos: int = 90, seed: int = 0, size: Tuple[int, int] = (240, 320),
                       min_frames: int = 32, max_frames: int = 64, test_fraction: float = 1 / 3,
                       multi_label: float = 0.0, classes: str = "default", progress: bool = True) -> str:
    """Writes the synthetic dataset to ``out_dir`` (replacing a previous synthetic dataset there) and returns
    the path of its GT pickle.

    num_videos: videos in all; video i has ``CLASSES[i % 6]`` (or, classes "order", ``ORDER_CLASSES[i % 4]``) as
    its first actor's class. The last
    ``round(num_videos * test_fraction)`` videos (at least one, at most num_videos - 1) are the test split.
    size: (height, width) of the frames, pixels. min_frames, max_frames: range of video lengths.
    multi_label: the share (in [0, 1]) of the movers that also do one of ``COMBINED`` while walking (default 0:
    the single-label set, byte for byte as before the option existed).
    classes: "default" (``CLASSES``) or "order" (``ORDER_CLASSES``, min_frames >= 30, no multi_label).
    Raises ValueError for bad arguments, or when ``out_dir`` holds files the generator did not write.
    """
    params = _check_params(num_videos, seed, size, min_frames, max_frames, test_fraction, multi_label, classes)
    out_dir = os.path.abspath(out_dir)
    build_and_replace(out_dir, lambda build: _write_dataset(build, params, progress),
                      check=lambda: _check_replaceable(out_dir), complete=lambda: is_complete(out_dir, params=params))
    return os.path.join(out_dir, GT_NAME)


def build_and_replace(out_dir: str, write: Callable[[str], None], *, check: Callable[[], None],
                      complete: Callable[[], bool]) -> None:
    """Writes a generated dataset into ``out_dir`` without ever leaving a half-written one there: ``write(folder)``
    fills a hidden folder beside it (``.<name>.tmp-<pid>-*``; those of killed runs are removed first), which is then
    renamed onto ``out_dir``, replacing what was there (the previous folder is moved aside and removed after).
    ``check()`` raises where ``out_dir`` holds something that must not be replaced (called before and after
    writing); ``complete()`` tells whether another process renamed the same finished dataset there first."""
    check()
    parent, base = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temps(parent, base)
    build = tempfile.mkdtemp(dir=parent, prefix=f".{base}.tmp-{os.getpid()}-")
    try:
        write(build)
        if os.path.exists(out_dir):
            check()
            old = tempfile.mkdtemp(dir=parent, prefix=f".{base}.old-{os.getpid()}-")
            os.replace(out_dir, old)
            os.replace(build, out_dir)
            shutil.rmtree(old)
        else:
            try:
                os.rename(build, out_dir)
            except OSError:  # another process finished the same dataset first
                if not complete():
                    raise
    finally:
        shutil.rmtree(build, ignore_errors=True)


def ensure_synthetic(out_dir: str, **kwargs) -> str:
    """Returns the GT path of the synthetic dataset in ``out_dir``; never overwrites a set a user made.

    It generates the dataset (arguments as :func:`generate_synthetic`) only when ``out_dir`` is absent or empty, or
    holds a set this generator made with exactly these arguments (its meta.json says so) that is incomplete or of
    an older version. Anything else there is kept: a complete set (ground truth ``synthetic-GT.pkl`` whose every
    frame exists), e.g. one the user generated with other arguments or edited, is used as it is, with a warning
    saying how it differs; an incomplete one is a ValueError saying what is there and how to proceed.
    """
    progress = kwargs.pop("progress", True)
    defaults = dict(num_videos=90, seed=0, size=(240, 320), min_frames=32, max_frames=64, test_fraction=1 / 3,
                    multi_label=0.0, classes="default")
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"ensure_synthetic() got unexpected arguments {unknown}")
    args = {**defaults, **kwargs}
    params = _check_params(**args)
    gt_path = os.path.join(os.path.abspath(out_dir), GT_NAME)
    if is_complete(out_dir, params=params):
        return gt_path
    if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
        return generate_synthetic(out_dir, progress=progress, **args)
    meta = read_meta(out_dir)
    if meta is not None and meta.get("generator") == "s3d_det.data.synthetic" and meta.get("params") == params:
        return generate_synthetic(out_dir, progress=progress, **args)  # ours, these arguments: incomplete or older
    problem = _incomplete(out_dir)
    how = ("move it away (or remove it) to have the configured set made there, or set $S3D_DET_DATASETS / "
           "DATASETS.ROOT to another folder")
    if problem is None:
        if meta is None or "params" not in meta:
            made = "a dataset without the generator's meta.json (not made by it, or edited)"
        else:
            differ = param_differences(params, meta["params"] if isinstance(meta["params"], dict) else {})
            there = ", ".join(f"{k} {theirs!r}" for k, theirs, _ in differ)
            asked = ", ".join(f"{k} {wanted!r}" for k, _, wanted in differ)
            made = (f"a synthetic set made with other arguments ({there}; the config asks for {asked})" if differ
                    else f"a synthetic set of generator version {meta.get('version')!r} (this is {VERSION})")
        logger.warning("%s holds %s: using it as it is, not replacing it; to use the configured set, %s",
                       out_dir, made, how)
        return gt_path
    raise ValueError(f"{out_dir} holds {sorted(os.listdir(out_dir))[:5]}, not the synthetic set of these arguments "
                     f"and not a complete dataset ({problem}); refusing to overwrite it: {how}")


IMPLICIT_PARAMS = {"multi_label": 0.0, "classes": "default"}  # params meta.json records only where not these


def param_differences(asked: dict, recorded: dict) -> List[Tuple[str, object, object]]:
    """(key, recorded value, asked value) of every key where a set's recorded params and the asked ones differ, in
    key order; a key missing from either reads as its ``IMPLICIT_PARAMS`` default (else None)."""
    def value(params, key):
        return params.get(key, IMPLICIT_PARAMS.get(key))

    return [(k, value(recorded, k), value(asked, k)) for k in sorted(set(asked) | set(recorded))
            if value(recorded, k) != value(asked, k)]


def read_meta(out_dir: str) -> Optional[dict]:
    """``out_dir/meta.json`` as a dict, or None where it is missing, unreadable or not a JSON object."""
    try:
        with open(os.path.join(out_dir, META_NAME)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _incomplete(out_dir: str) -> Optional[str]:
    """Why ``out_dir`` is not a complete dataset in the synthetic layout (``synthetic-GT.pkl``, every frame it lists
    under ``Frames/<video>/{:05d}.jpg|png``), or None when it is one."""
    if not os.path.isdir(out_dir):
        return "not a folder"
    try:
        gt = load_gt(os.path.join(out_dir, GT_NAME))
    except (OSError, ValueError) as e:
        return " ".join(str(e).split())
    for video, n in gt["nframes"].items():
        folder = os.path.join(out_dir, "Frames", video)
        found = frame_numbers(folder) if os.path.isdir(folder) else {}
        if not any(sorted(numbers) == list(range(1, n + 1)) for numbers in found.values()):
            return f"{folder} does not hold frames 00001..{n:05d} (.jpg or .png) of video {video!r}"
    return None


def _parse_size(text: str) -> Tuple[int, int]:
    found = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 320x240, got {text!r}")
    return int(found.group(2)), int(found.group(1))


def _parse_fraction(text: str) -> float:
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a fraction such as 1/3 or 0.25, got {text!r}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s3d_det.data.synthetic",
        description="Write the synthetic action-detection dataset (frames + ACT-schema GT pickle).")
    parser.add_argument("--out", required=True, help="output folder (replaced if it holds a synthetic dataset)")
    parser.add_argument("--num-videos", type=int, default=90, help="videos in all (default 90)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=_parse_size, default=(240, 320), help="WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--min-frames", type=int, default=32, help="shortest video, frames (default 32)")
    parser.add_argument("--max-frames", type=int, default=64, help="longest video, frames (default 64)")
    parser.add_argument("--test-fraction", type=_parse_fraction, default=1 / 3,
                        help="share of the videos in the test split (default 1/3)")
    parser.add_argument("--multi-label", type=_parse_fraction, default=0.0,
                        help="share of the movers that also wave, jump or spin while walking (default 0)")
    parser.add_argument("--classes", choices=sorted(CLASS_SETS), default="default",
                        help="class set: the six motions (default) or 'order', four told apart only by the order "
                             "of their frames")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        path = generate_synthetic(args.out, num_videos=args.num_videos, seed=args.seed, size=args.size,
                                  min_frames=args.min_frames, max_frames=args.max_frames,
                                  test_fraction=args.test_fraction, multi_label=args.multi_label,
                                  classes=args.classes, progress=not args.quiet)
    except ValueError as e:
        parser.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
