"""Figures of evaluation results, and detections drawn on videos.

Figures (per-class AP bars, precision-recall curves) are drawn on matplotlib's Agg canvas directly (no pyplot, no
change to the global backend), so this works without a display and does not disturb a caller's matplotlib state.

Videos: ``render_video`` draws detections (box, action name and score, one colour per linked tube), optionally the
ground truth (white dashed boxes, "GT" and the action under the box) and the frame number on every frame of a
``FrameSource`` and writes an MP4 (or AVI) at the given frame rate, optionally a GIF and a contact sheet PNG of
evenly spaced frames. It streams: one frame in memory at a time (plus the sheet's and the GIF's reduced copies).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from s3d_det.data.frames import MAX_FPS, usable_fps
from s3d_det.evaluation.detections import TUBE_BOX_BOX, TUBE_BOX_FRAME, TUBE_BOX_TUBE, TUBE_LABEL, FrameDetections
from s3d_det.evaluation.linking import LinkingConfig, link_tubes
from s3d_det.utils.io import atomic_write

__all__ = ["plot_per_class_ap", "plot_pr_curves", "plot_frame_ap_errors", "TUBE_COLORS", "tube_ids", "draw_frame",
           "draw_caption", "contact_sheet", "render_video"]

# RGB colours of tubes 0, 1, 2, ... (matplotlib's tab10, repeated).
TUBE_COLORS: Tuple[Tuple[int, int, int], ...] = tuple(
    tuple(int(round(255 * c)) for c in rgb) for rgb in colormaps["tab10"].colors)
_GT_COLOR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}

logger = logging.getLogger(__name__)


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    with atomic_write(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_per_class_ap(ap: Mapping[str, float], path: str, mean: Optional[float] = None, title: str = "AP") -> None:
    """Horizontal bar chart of per-class AP (percent, one bar a class, in the order of ``ap``), with ``mean``
    drawn as a dashed line when given; written to ``path`` as PNG, atomically."""
    names = list(ap)
    values = np.array([ap[n] for n in names], dtype=np.float64)
    fig = Figure(figsize=(7, 1.5 + 0.3 * max(len(names), 1)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    for yi, v in zip(y, values):
        ax.text(min(v + 1, 88), yi, f"{v:.1f}", va="center", fontsize=8)
    if mean is not None:
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.2f}")
        ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def plot_pr_curves(
    precision: Mapping[str, np.ndarray],
    recall: Mapping[str, np.ndarray],
    path: str,
    ap: Optional[Mapping[str, float]] = None,
    title: str = "precision-recall",
) -> None:
    """One small precision-recall panel per class (recall on x, precision on y, both in [0, 1]), in a grid;
    the panel title carries the class name and, with ``ap`` (percent), its AP. Written to ``path`` as PNG,
    atomically."""
    names = list(precision)
    cols = max(1, math.ceil(math.sqrt(len(names))))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows + 0.4))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(np.asarray(recall[name]), np.asarray(precision[name]), color="tab:blue", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} ({ap[name]:.1f})" if ap is not None else name, fontsize=8)
        ax.tick_params(labelsize=6)
        if i % cols == 0:
            ax.set_ylabel("precision", fontsize=7)
        if i >= len(names) - cols:
            ax.set_xlabel("recall", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_frame_ap_errors(errors, path: str, title: str = "frame-AP error analysis") -> None:
    """ACT's error table as stacked horizontal bars, one a class and one for the mean: AP, then the AP lost to
    localisation, classification, time, other and missed detections (percent; a bar sums to 100).
    ``errors``: a :class:`s3d_det.evaluation.errors.FrameAPErrors`. Written to ``path`` as PNG, atomically."""
    parts = ("AP", "localisation", "classification", "time", "other", "missed")
    colors = ("tab:green", "tab:orange", "tab:red", "tab:purple", "tab:gray", "tab:blue")
    names = list(errors.classes) + ["mean"]
    values = np.array([[errors.ap[n]] + [errors.lost[n][p] for p in parts[1:]] for n in errors.classes]
                      + [[errors.mean[p] for p in parts]], dtype=np.float64).reshape(len(names), len(parts))
    fig = Figure(figsize=(8, 1.8 + 0.3 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for j, (part, color) in enumerate(zip(parts, colors)):
        ax.barh(y, values[:, j], left=left, color=color, label=part)
        left += values[:, j]
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("percent (AP + AP lost to each error type + missed = 100)")
    ax.set_title(title)
    fig.legend(loc="lower center", ncol=len(parts), fontsize=7)
    fig.tight_layout(rect=(0, 0.3 / (1.8 + 0.3 * len(names)), 1, 1))
    _save(fig, path)


def tube_ids(frame_dets) -> np.ndarray:
    """(N,) int64: the tube each detection of ``frame_dets`` (``FrameDetections`` or rows (N, 8), one video)
    belongs to, linked per action by ``link_tubes`` keeping every detection (no NMS, no minimum length or score,
    no smoothing), for colouring."""
    dets = FrameDetections.of(frame_dets)
    if len(dets) == 0:
        return np.zeros(0, dtype=np.int64)
    dets = dataclasses.replace(dets, video=np.zeros(len(dets), dtype=np.int64))
    config = LinkingConfig(top_k=len(dets), nms_iou=None, min_length=1, min_score=-math.inf, tube_nms=None)
    tubes, boxes = link_tubes(["video"], dets, config)
    tube = boxes[:, TUBE_BOX_TUBE].astype(np.int64)
    held = np.column_stack([tubes[tube, TUBE_LABEL], boxes[:, TUBE_BOX_FRAME], boxes[:, TUBE_BOX_BOX]])
    owner: Dict[tuple, List[int]] = {}  # (label, frame, box) -> tubes holding it; a kept detection's box is exact
    for t, key in zip(tube.tolist(), held.tolist()):
        owner.setdefault(tuple(key), []).append(t)
    mine = np.column_stack([dets.label, dets.frame, dets.boxes]).astype(np.float64)
    return np.array([owner[tuple(key)].pop() for key in mine.tolist()], dtype=np.int64)


def _text(image: np.ndarray, text: str, x: int, y: int, color, *, below: bool = False) -> int:
    """``text`` on a filled box of ``color`` whose bottom-left (top-left if ``below``) is (x, y), kept inside the
    image; returns the box's height in pixels."""
    scale = max(0.35, image.shape[0] / 700)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    h = th + base + 2
    top = y if below else y - h
    top = min(max(top, 0), image.shape[0] - h)
    x = min(max(x, 0), max(image.shape[1] - tw - 2, 0))
    cv2.rectangle(image, (x, top), (x + tw + 2, top + h), color, -1)
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), _FONT, scale, ink, 1, cv2.LINE_AA)
    return h


def _dashed_rectangle(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, color, dash: int = 5) -> None:
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length + 1, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(image, p, q, color, 1)


def draw_frame(image: np.ndarray, frame: int, dets, tubes: Sequence[int], names: Sequence[str],
               gt: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with the frame number (top left), the ground truth ``gt`` (boxes
    (G, 4), labels (G,), original pixels) as white dashed boxes labelled "GT <action>" under them, and the
    detections ``dets`` of this frame (``FrameDetections`` or rows (K, 8)), each box in its tube's colour
    (``tubes`` (K,)) labelled "<action> <score>" above it. A box with several actions (a multi-label head's
    detections, or the same ground-truth box in several labels' tubes) gets its labels stacked, one a line."""
    dets = FrameDetections.of(dets)
    out = np.ascontiguousarray(image).copy()
    thick = max(2, round(min(out.shape[:2]) / 160))
    lines: dict = {}  # (box, side) -> height of the labels drawn there so far
    for box, label, score, tube in zip(dets.boxes.tolist(), dets.label.tolist(), dets.score.tolist(), tubes):
        color = TUBE_COLORS[int(tube) % len(TUBE_COLORS)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        key = (x1, y1, x2, y2, "above")
        lines[key] = lines.get(key, 0) + _text(out, f"{names[label]} {score:.2f}", x1 - thick // 2,
                                               y1 - thick // 2 - lines.get(key, 0), color)
    if gt is not None:  # on top: the dashes stay visible on a detection's edge
        for box, label in zip(*gt):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            _dashed_rectangle(out, x1, y1, x2, y2, _GT_COLOR)
            key = (x1, y1, x2, y2, "below")
            lines[key] = lines.get(key, 0) + _text(out, f"GT {names[int(label)]}", x1, y2 + thick + lines.get(key, 0),
                                                   _GT_COLOR, below=True)
    _text(out, f"frame {frame}", 0, 0, (0, 0, 0), below=True)
    return out


def draw_caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``text`` on a black box at its top right (drawn in place; returned)."""
    scale = max(0.35, image.shape[0] / 700)
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    _text(image, text, image.shape[1] - tw - 2, 0, (0, 0, 0), below=True)
    return image


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4) -> np.ndarray:
    """Images (H, W, 3) of one size tiled row by row, ``columns`` a row, black where the last row is short."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return sheet


def _shrunk(image: np.ndarray, width: int) -> np.ndarray:
    if image.shape[1] <= width:
        return image
    h = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)


def _check_video(path: str, output: str, num_frames: int) -> None:
    """Raises OSError naming ``output`` unless the video at ``path`` (its temporary) opens and ``num_frames`` frames
    decode from it: OpenCV's writer fails silently, e.g. on a full disk, leaving an empty or truncated file."""
    capture = cv2.VideoCapture(path)
    decoded = 0
    try:
        if capture.isOpened():
            while decoded < num_frames + 1 and capture.grab():
                decoded += 1
    finally:
        capture.release()
    if decoded != num_frames:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise OSError(f"{output}: the video OpenCV wrote does not read back ({decoded} of {num_frames} frames decode "
                      f"from its {size} bytes; is the disk full?); {output} is left as it was")


def render_video(source, frame_dets, names: Sequence[str], *, output: str, fps: float,
                 score_thresh: float = 0.5, gt: Optional[Mapping[int, Tuple[np.ndarray, np.ndarray]]] = None,
                 gif: Optional[str] = None, sheet: Optional[str] = None, sheet_frames: int = 12,
                 gif_frames: int = 100, gif_width: int = 320,
                 progress: bool = True) -> Tuple[FrameDetections, np.ndarray]:
    """Draws every frame of ``source`` (a ``FrameSource``) with ``draw_frame`` and writes the video ``output``
    (``.mp4``, MPEG-4 Part 2, or ``.avi``, MJPG) at ``fps``, atomically. Both writers silently drop the last
    row or column of an odd-sized frame (63x47 comes back 62x46): such a video is written padded to even sizes (the
    edge pixels repeated on the right and at the bottom, a one-line warning), so no pixel is lost and box
    coordinates keep their meaning. The GIF and the sheet keep the original size.

    Args:
        frame_dets: the video's detections, ``FrameDetections`` or rows (N, 8) (the video index is ignored; frames
            1-based, original pixels); those scoring at least ``score_thresh`` are drawn, coloured by their tube
            (``tube_ids``).
        names: action names by label.
        gt: ground-truth boxes and labels by frame (``annotations.keyframe_boxes``), drawn dashed.
        gif: also a GIF there, at most ``gif_frames`` evenly spaced frames (every k-th), at most ``gif_width`` wide.
        sheet: also a contact sheet PNG there: ``sheet_frames`` evenly spaced frames, 4 a row, at most 480 wide each.

    Returns the drawn detections (K), by frame, and their tubes (K,). A frame of another size than the first, or one
    that cannot be decoded, is a ValueError naming it.
    """
    ext = output[output.rfind("."):].lower() if "." in output else ""
    if usable_fps(fps) is None:
        raise ValueError(f"{output}: frame rate {fps} is not a usable one (expected 0 < fps <= {MAX_FPS:g})")
    if ext not in _VIDEO_CODECS:
        raise ValueError(f"{output}: the video must end in {' or '.join(_VIDEO_CODECS)}")
    n = source.num_frames
    dets = FrameDetections.of(frame_dets)
    if len(dets) and dets.frame.max() > n:
        raise ValueError(f"detections on frame {int(dets.frame.max())}, but {source.path} has {n} frames")
    dets = dets.select(dets.score >= score_thresh)
    dets = dets.select(np.argsort(dets.frame, kind="stable"))
    tubes = tube_ids(dets)
    bounds = np.searchsorted(dets.frame, np.arange(1, n + 2))
    h, w = (int(v) for v in source.size)
    pad_h, pad_w = h % 2, w % 2  # the writers need even sizes
    if pad_h or pad_w:
        logger.warning("%s: %s is %dx%d (w x h), an odd size the video writers crop: writing it padded to %dx%d",
                       output, source.path, w, h, w + pad_w, h + pad_h)
    sheet_at = set(np.unique(np.linspace(1, n, min(sheet_frames, n)).round().astype(int)).tolist()) if sheet else set()
    gif_step = -(-n // gif_frames)
    tiles: List[np.ndarray] = []
    gif_images: List[np.ndarray] = []
    with atomic_write(output, ext) as tmp:
        size = (w + pad_w, h + pad_h)
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*_VIDEO_CODECS[ext]), float(fps), size)
        if not writer.isOpened():
            raise ValueError(f"OpenCV cannot write the video {output} ({_VIDEO_CODECS[ext]}, {size[0]}x{size[1]}, "
                             f"{fps} fps)")
        try:
            for f in tqdm(range(1, n + 1), desc="draw", unit="frame", disable=not progress, leave=False):
                image = source.read([f])[f]
                if image.shape[:2] != (h, w):
                    raise ValueError(f"{source.frame_name(f)} is {image.shape[0]}x{image.shape[1]} (h x w), the "
                                     f"video's first frame {h}x{w}: all frames of a video must have one size")
                a, b = bounds[f - 1], bounds[f]
                here = dets.select(slice(a, b))
                drawn = draw_frame(image, f, here, tubes[a:b], names, gt.get(f) if gt else None)
                bgr = cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
                if pad_h or pad_w:
                    bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
                writer.write(bgr)
                if f in sheet_at:
                    tiles.append(_shrunk(drawn, 480))
                if gif and (f - 1) % gif_step == 0:
                    gif_images.append(_shrunk(drawn, gif_width))
        finally:
            writer.release()
        _check_video(tmp, output, n)  # cv2.VideoWriter reports no write errors (a full disk): read it back
    if sheet:
        with atomic_write(sheet, ".png") as tmp:
            if not cv2.imwrite(tmp, cv2.cvtColor(contact_sheet(tiles), cv2.COLOR_RGB2BGR)):
                raise ValueError(f"OpenCV cannot write the contact sheet {sheet}")
    if gif:
        from PIL import Image  # Pillow comes with matplotlib

        frames = [Image.fromarray(image) for image in gif_images]
        with atomic_write(gif, ".gif") as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                           duration=max(20, round(1000 * gif_step / fps)))
    return dets, tubes
