"""Ground truth in the ACT-detector schema: safe loading, saving, validation and small accessors.

The schema (the community's ``JHMDB-GT.pkl`` and ``UCF101v2-GT.pkl`` load as they are)::

    {
      "labels":       list[str],                   # class names; a label index is a position in it
      "train_videos": list[list[str]],             # one list of video names per split
      "test_videos":  list[list[str]],
      "nframes":      {video: int},                # frames are numbered 1..nframes
      "resolution":   {video: (h, w)},             # pixels
      "gttubes":      {video: {label: [tube, ...]}},
    }

A video name is ``"<class>/<video>"``. A tube is an array (n, 5): ``frame (1-based), x1, y1, x2, y2`` in pixels
of the original frame, one row per frame, frames consecutive.

Pickles from the internet are untrusted. :func:`safe_pickle_load` admits only dicts, lists, tuples, numbers,
strings and numpy arrays; a pickle asking for anything else (a function, a class, ``os.system``) is refused
before anything in it runs.
"""
from __future__ import annotations

import os
import pickle
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from s3d_det.checkpoint.io import safe_pickle_load
from s3d_det.utils.io import atomic_write

from .errors import DataError
from .frames import frame_numbers, image_file_problem

__all__ = [
    "GT_KEYS",
    "OPTIONAL_KEYS",
    "load_gt",
    "check_gt",
    "BOX_TOLERANCE",
    "save_gt",
    "make_gt",
    "validate_gt",
    "split_videos",
    "keyframe_boxes",
    "idle_boxes",
    "idle_people",
    "duplicate_tubes",
    "drop_duplicate_tubes",
]

GT_KEYS = ("labels", "train_videos", "test_videos", "nframes", "resolution", "gttubes")
# Optional keys a GT may carry and save_gt keeps: "ava" (s3d_det.data.ava_gt: AVA action ids, keyframes, person ids).
OPTIONAL_KEYS = ("ava",)

def load_gt(path: str, check_boxes: bool = True) -> dict:
    """Loads a ground-truth pickle in the ACT schema with :func:`safe_pickle_load` and checks its structure
    (keys, types, tube shapes) and, unless ``check_boxes=False``, its labels, frames and boxes
    (:func:`check_gt`); errors name the file and the key, or the video, tube and frame. :func:`validate_gt`
    lists every problem (``tools/prepare_data.py check``, which loads with ``check_boxes=False``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ground truth file not found: {path}")
    gt = safe_pickle_load(path)
    _check_structure(gt, path)
    if "ava" in gt:  # the optional AVA key (s3d_det.data.ava_gt): checked here, so that no tool meets a bad one later
        from .ava_gt import check_ava_info

        check_ava_info(gt, path)
    if check_boxes:
        check_gt(gt, path)
    return gt


# Pixels a ground-truth box may stick out of its frame. The real UCF101-24 (finalAnnots.mat, pyannot) and JHMDB
# (YOWO's label files) boxes all lie inside their 320x240 frames (x1, y1 >= 1, x2 <= 320, y2 <= 240); a pixel of
# tolerance admits 1-based conventions (x2 = x + w with x counted from 1 reaches W + 1) and the -1 of 0-based ones.
BOX_TOLERANCE = 1.0


def _tubes_of(gt: Mapping, videos: Sequence[str], source: str, name) -> Tuple[List[np.ndarray], List[Tuple]]:
    """Every tube of ``gt`` (n, 5) and its owner ``(video position, label, tube index)``; a label outside the
    label list or an empty tube is a DataError (``name(video, label, index)`` names the tube)."""
    labels = gt["labels"]
    parts: List[np.ndarray] = []
    owners: List[Tuple[int, int, int]] = []
    for v, video in enumerate(videos):
        for label, tubes in gt["gttubes"][video].items():
            if not 0 <= int(label) < len(labels):
                raise DataError(f"{source}: video {video!r}: label {label} outside 0..{len(labels) - 1} (the "
                                f"{len(labels)} labels); expected a position in the label list")
            for index, tube in enumerate(tubes):
                if len(tube) == 0:
                    raise DataError(f"{name(video, int(label), index)}: empty; expected at least one row "
                                    f"frame, x1, y1, x2, y2")
                parts.append(tube)
                owners.append((v, int(label), index))
    return parts, owners


def check_gt(gt: Mapping, source: str = "ground truth") -> None:
    """Raises ``DataError`` on the first bad label, tube or box of ``gt`` (structure already checked), naming
    ``source``, the video, the tube (index and label) and the frame, and what was expected: label keys in
    0..len(labels)-1, tubes with at least one row, finite values, whole frame numbers in 1..nframes, x1 <= x2,
    y1 <= y2 (x1 == x2 is a one-pixel box where the last pixel counts, as in the ``act`` and ``yowo`` protocols),
    boxes inside the (w, h) of ``resolution`` within ``BOX_TOLERANCE`` pixels. Videos without an ``nframes`` or
    ``resolution`` entry skip those checks (:func:`validate_gt` reports them). Vectorised over all boxes: UCF101-24's
    574k take about 0.1 s."""
    labels = gt["labels"]
    videos = list(gt["gttubes"])

    def name(video: str, label: int, index: int) -> str:
        return f"{source}: video {video!r}, tube {index} of label {label} ({labels[label]})"

    parts, owners = _tubes_of(gt, videos, source, name)
    if not parts:
        return
    rows = np.concatenate(parts).astype(np.float64, copy=False)
    tube_of_row = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    per_video = np.array([(gt["nframes"].get(video, np.nan), *gt["resolution"].get(video, (np.nan, np.nan)))
                          for video in videos], dtype=np.float64).reshape(-1, 3)
    nframes, height, width = per_video[np.array([o[0] for o in owners])[tube_of_row]].T
    frame, x1, y1, x2, y2 = rows.T
    tol = BOX_TOLERANCE
    with np.errstate(invalid="ignore"):
        checks = [
            (~np.isfinite(rows).all(axis=1), "non-finite value in box {box}", "finite numbers"),
            (frame != np.round(frame), "frame {frame} is not a whole number", "whole frame numbers"),
            ((frame < 1) | (frame > nframes), "frame {frame} outside the video's frames 1..{n}",
             "frames within 1..nframes"),
            (x2 < x1, "x2 < x1 in box {box}", "x1 <= x2"),
            (y2 < y1, "y2 < y1 in box {box}", "y1 <= y2"),
            ((x1 < -tol) | (y1 < -tol) | (x2 > width + tol) | (y2 > height + tol),
             "box {box} outside the {w}x{h} frame",
             "0 <= x1, x2 <= {w}, 0 <= y1, y2 <= {h} ({tol:g} pixel of tolerance)"),
        ]
    bad = np.zeros(len(rows), dtype=bool)
    for mask, _, _ in checks:
        bad |= mask
    for mask, what, expected in checks:
        hits = np.flatnonzero(mask)
        if len(hits):
            row = int(hits[0])
            v, label, index = owners[tube_of_row[row]]
            values = dict(box="[" + ", ".join(f"{x:g}" for x in rows[row, 1:]) + "]", frame=f"{frame[row]:g}",
                          n=f"{nframes[row]:g}", w=f"{width[row]:g}", h=f"{height[row]:g}", tol=tol)
            count = int(bad.sum())
            raise DataError(f"{name(videos[v], label, index)}, frame {frame[row]:g}: {what.format(**values)}; "
                            f"expected {expected.format(**values)} ({count} bad row{'s' if count > 1 else ''} in "
                            f"all; tools/prepare_data.py check lists every problem)")


def save_gt(gt: Mapping, path: str) -> None:
    """Writes ``gt`` (checked like :func:`load_gt` does) as a pickle, atomically: the keys of the schema and those of
    ``OPTIONAL_KEYS`` it has (other keys are not written)."""
    _check_structure(gt, path)
    payload = {key: gt[key] for key in GT_KEYS + tuple(k for k in OPTIONAL_KEYS if k in gt)}
    with atomic_write(path, ".pkl") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=4)


def make_gt(
    *,
    labels: Sequence[str],
    nframes: Mapping[str, int],
    resolution: Mapping[str, Tuple[int, int]],
    gttubes: Mapping[str, Mapping[int, Sequence]],
    train_videos: Sequence,
    test_videos: Sequence,
) -> dict:
    """Builds a GT dict in the schema with normalised types: tubes become float32 arrays (n, 5), frame counts
    ints, resolutions (h, w) tuples of ints, label keys ints. ``train_videos`` / ``test_videos`` are either one
    list of names (a single split) or a list of such lists (one per split)."""

    def splits(videos: Sequence, key: str) -> List[List[str]]:
        videos = list(videos)
        if all(isinstance(v, str) for v in videos):
            return [videos]
        if all(isinstance(v, (list, tuple)) for v in videos):
            return [list(v) for v in videos]
        raise ValueError(f"{key}: expected a list of video names or a list of such lists (one per split)")

    gt = {
        "labels": [str(label) for label in labels],
        "train_videos": splits(train_videos, "train_videos"),
        "test_videos": splits(test_videos, "test_videos"),
        "nframes": {v: int(n) for v, n in nframes.items()},
        "resolution": {v: (int(r[0]), int(r[1])) for v, r in resolution.items()},
        "gttubes": {
            v: {int(label): [np.asarray(t, dtype=np.float32).reshape(-1, 5) for t in tubes]
                for label, tubes in per_label.items()}
            for v, per_label in gttubes.items()
        },
    }
    _check_structure(gt, "make_gt")
    return gt


def _check_structure(gt, source: str) -> None:
    def fail(key: str, expected: str):
        raise ValueError(f"{source}: ground truth key {key!r}: expected {expected}")

    if not isinstance(gt, Mapping):
        raise ValueError(f"{source}: expected a dict with keys {list(GT_KEYS)}, got {type(gt).__name__}")
    missing = [k for k in GT_KEYS if k not in gt]
    if missing:
        raise ValueError(f"{source}: not a ground truth in the ACT schema: missing keys {missing}")
    if not isinstance(gt["labels"], (list, tuple)) or not all(isinstance(x, str) for x in gt["labels"]):
        fail("labels", "a list of class names")
    for key in ("train_videos", "test_videos"):
        value = gt[key]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(split, (list, tuple)) and all(isinstance(v, str) for v in split) for split in value
        ):
            fail(key, "a list with one list of video names per split")
    for key in ("nframes", "resolution", "gttubes"):
        if not isinstance(gt[key], Mapping):
            fail(key, "a dict keyed by video name")
    for video, n in gt["nframes"].items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            fail(f"nframes/{video}", f"an integer frame count, got {n!r}")
    for video, res in gt["resolution"].items():
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            fail(f"resolution/{video}", f"(height, width), got {res!r}")
    for video, per_label in gt["gttubes"].items():
        if not isinstance(per_label, Mapping):
            fail(f"gttubes/{video}", "a dict label -> list of tubes")
        for label, tubes in per_label.items():
            if not isinstance(label, (int, np.integer)):
                fail(f"gttubes/{video}/{label!r}", "an integer label index as key")
            if not isinstance(tubes, (list, tuple)):
                fail(f"gttubes/{video}/{label}", "a list of tube arrays")
            for i, tube in enumerate(tubes):
                if not (isinstance(tube, np.ndarray) and tube.ndim == 2 and tube.shape[1] == 5):
                    shape = getattr(tube, "shape", type(tube).__name__)
                    fail(f"gttubes/{video}/{label}[{i}]", f"an array (n, 5) frame,x1,y1,x2,y2, got {shape}")


def split_videos(gt: Mapping, split: int = 1, subset: str = "test") -> List[str]:
    """The video names of one split (1-based, as in the dataset papers); ``subset`` is "train" or "test"."""
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    lists = gt[f"{subset}_videos"]
    if not 1 <= split <= len(lists):
        raise ValueError(f"split {split} does not exist: this ground truth has splits 1..{len(lists)}")
    return list(lists[split - 1])


def keyframe_boxes(gt: Mapping, video: str) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """All annotated frames of ``video``: frame (1-based) -> (boxes (n,4) float32 x1,y1,x2,y2 in original
    pixels, labels (n,) int64 0-based), boxes in the order of ``gttubes[video]`` (label, then tube)."""
    if video not in gt["gttubes"]:
        raise KeyError(f"video {video!r} has no entry in gttubes")
    frames: Dict[int, Tuple[list, list]] = {}
    for label, tubes in gt["gttubes"][video].items():
        for tube in tubes:
            for row in np.asarray(tube):
                boxes, labels = frames.setdefault(int(row[0]), ([], []))
                boxes.append(row[1:5])
                labels.append(int(label))
    return {
        frame: (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64))
        for frame, (boxes, labels) in sorted(frames.items())
    }


def idle_boxes(gt: Mapping, video: str, hold: Optional[int] = None) -> Dict[int, np.ndarray]:
    """Where the people of ``video`` are on the frames their tubes do not cover: frame (1-based) -> boxes (n, 4)
    float32 x1,y1,x2,y2 in original pixels, each tube's first box held on the frames before it and its last box
    on the frames after it, for at most ``hold`` frames (None: to the video's ends). In untrimmed videos
    (UCF101-24, the synthetic set) these are the actors before and after their actions: people doing none of the
    actions, which a detector may learn as persons that are background. Boxes in the order of ``gttubes[video]``.
    ``idle_people`` also gives each box's distance from its tube.
    """
    return {frame: boxes for frame, (boxes, _) in idle_people(gt, video, hold).items()}


def idle_people(gt: Mapping, video: str, hold: Optional[int] = None) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """``idle_boxes`` with each box's distance from its tube: frame (1-based) -> (boxes (n, 4) float32 in original
    pixels, gaps (n,) int64), the gap being how many frames lie between that frame and the tube's nearest
    annotated frame, counting the frame itself (1: the frame next to the tube). A clip of ``T`` frames at stride
    ``s`` around a keyframe reaches ``T * s // 2`` frames to each side: up to that gap it still shows part of
    the action."""
    if video not in gt["gttubes"]:
        raise KeyError(f"video {video!r} has no entry in gttubes")
    if hold is not None and hold < 0:
        raise ValueError(f"hold must be None or at least 0, got {hold}")
    nframes = int(gt["nframes"][video])
    frames: Dict[int, list] = {}
    for label, tubes in gt["gttubes"][video].items():
        for tube in tubes:
            tube = np.asarray(tube)
            first, last = int(tube[0, 0]), int(tube[-1, 0])
            before = range(1 if hold is None else max(1, first - hold), first)
            after = range(last + 1, nframes + 1 if hold is None else min(nframes, last + hold) + 1)
            for frame in before:
                frames.setdefault(frame, []).append((tube[0, 1:5], first - frame))
            for frame in after:
                frames.setdefault(frame, []).append((tube[-1, 1:5], frame - last))
    return {frame: (np.asarray([b for b, _ in people], dtype=np.float32).reshape(-1, 4),
                    np.asarray([g for _, g in people], dtype=np.int64))
            for frame, people in sorted(frames.items())}


def duplicate_tubes(gt: Mapping) -> List[Tuple[str, int, int, int]]:
    """Tubes that repeat an earlier tube of the same video and label exactly (same frames, same boxes):
    a list of ``(video, label, index, index of the earlier tube)``. UCF101-24's corrected annotations hold two
    (``CliffDiving/v_CliffDiving_g13_c02``, ``CricketBowling/v_CricketBowling_g02_c04``); under the ``voc`` and
    ``yowo`` protocols such a copy can never be matched, so even perfect detections score below 100 on its
    class."""
    found = []
    for video, per_label in gt["gttubes"].items():
        for label, tubes in per_label.items():
            for j, tube in enumerate(tubes):
                for i in range(j):
                    if np.array_equal(np.asarray(tubes[i]), np.asarray(tube)):
                        found.append((video, int(label), j, i))
                        break
    return found


def drop_duplicate_tubes(gt: Mapping) -> Tuple[dict, List[Tuple[str, int, int, int]]]:
    """A copy of ``gt`` without the tubes :func:`duplicate_tubes` finds, and the list of what was dropped."""
    dropped = duplicate_tubes(gt)
    skip = {(video, label, j) for video, label, j, _ in dropped}
    gttubes = {
        video: {label: [t for j, t in enumerate(tubes) if (video, int(label), j) not in skip]
                for label, tubes in per_label.items()}
        for video, per_label in gt["gttubes"].items()
    }
    out = {**{key: gt[key] for key in GT_KEYS}, "gttubes": gttubes}
    if "ava" in gt:  # its person ids go with the tubes kept
        persons = {video: {label: [p for j, p in enumerate(ids) if (video, int(label), j) not in skip]
                           for label, ids in per_label.items()}
                   for video, per_label in gt["ava"]["persons"].items()}
        out["ava"] = {**gt["ava"], "persons": persons}
    return out, dropped


def _ranges(frames: np.ndarray) -> str:
    """'3-7, 12' for frames [3,4,5,6,7,12]; long lists are cut after 8 ranges."""
    frames = np.unique(frames.astype(np.int64))
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    parts = [f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in np.split(frames, breaks)]
    return ", ".join(parts[:8]) + (f", ... ({len(parts) - 8} more ranges)" if len(parts) > 8 else "")


def _structure_problems(gt: Mapping) -> List[str]:
    """``validate_gt``'s problems of the label list and the splits."""
    problems: List[str] = []
    labels = gt["labels"]
    if len(set(labels)) != len(labels):
        problems.append(f"labels: duplicate class names {sorted({x for x in labels if labels.count(x) > 1})}")
    for video in gt["gttubes"]:
        for key in ("nframes", "resolution"):
            if video not in gt[key]:
                problems.append(f"{video}: annotated in gttubes but has no {key} entry")
    for subset in ("train", "test"):
        for k, videos in enumerate(gt[f"{subset}_videos"], start=1):
            for video in videos:
                if video not in gt["nframes"]:
                    problems.append(f"{video}: listed in {subset}_videos of split {k} but has no nframes entry")
    for k, (train, test) in enumerate(zip(gt["train_videos"], gt["test_videos"]), start=1):
        for video in sorted(set(train) & set(test)):
            problems.append(f"{video}: in both train_videos and test_videos of split {k}")
    return problems


def _tube_problems(tube: np.ndarray, where: str, nframes: Optional[int],
                   resolution: Optional[Tuple[int, int]]) -> List[str]:
    """``validate_gt``'s problems of one tube (n, 5) frame, x1, y1, x2, y2, named by ``where``."""
    if len(tube) == 0:
        return [f"{where} is empty"]
    bad = ~np.isfinite(tube).all(axis=1)
    if bad.any():
        return [f"{where}: non-finite values at rows {np.flatnonzero(bad)[:8].tolist()}"]
    problems = []
    frame, x1, y1, x2, y2 = tube.T
    if nframes is not None:
        outside = (frame < 1) | (frame > nframes) | (frame != np.round(frame))
        if outside.any():
            problems.append(f"{where}: frames {_ranges(frame[outside])} outside 1..{nframes}")
    if len(frame) > 1 and not (np.diff(frame) == 1).all():
        jumps = np.flatnonzero(np.diff(frame) != 1)
        pairs = ", ".join(f"{frame[j]:g}->{frame[j + 1]:g}" for j in jumps[:8])
        problems.append(f"{where}: frames not consecutive ({pairs})")
    for name, bad in (("x2 < x1", x2 < x1), ("y2 < y1", y2 < y1)):
        if bad.any():
            problems.append(f"{where}: {name} at frames {_ranges(frame[bad])}")
    if resolution is not None:
        (height, width), tol = resolution, BOX_TOLERANCE
        out = (x1 < -tol) | (y1 < -tol) | (x2 > width + tol) | (y2 > height + tol)
        if out.any():
            problems.append(f"{where}: box outside the {width}x{height} frame at frames {_ranges(frame[out])}")
    return problems


def validate_gt(gt: Mapping, frames_root: str | None = None) -> List[str]:
    """Every problem in ``gt``, one line each, naming the video (and the frames): split lists naming unknown
    videos or a video in both train and test of a split, unknown label indices, tube frames outside
    1..nframes or not consecutive, x2 < x1 or y2 < y1, non-finite values, boxes outside the frame (by more than
    ``BOX_TOLERANCE``), tubes that repeat another exactly, and, with
    ``frames_root``, frames missing from ``<frames_root>/Frames/<video>/`` or damaged there (empty, or a JPEG/PNG
    cut short: ``frames.image_file_problem``, which reads each file's first and last bytes). An empty list means
    clean."""
    problems = _structure_problems(gt)
    labels = gt["labels"]
    for video, per_label in gt["gttubes"].items():
        nframes = gt["nframes"].get(video)
        resolution = gt["resolution"].get(video)
        for label, tubes in per_label.items():
            if not 0 <= int(label) < len(labels):
                problems.append(f"{video}: label index {label} outside 0..{len(labels) - 1}")
            for i, tube in enumerate(tubes):
                problems += _tube_problems(np.asarray(tube, dtype=np.float64), f"{video}: tube {i} of label {label}",
                                           nframes, resolution)
    for video, label, j, i in duplicate_tubes(gt):
        problems.append(f"{video}: tube {j} of label {label} repeats tube {i} exactly")
    if frames_root is not None:
        problems += _missing_frames(gt, frames_root)
    return problems


def _missing_frames(gt: Mapping, frames_root: str) -> List[str]:
    problems = []
    videos = sorted(set(gt["nframes"]) | set(gt["gttubes"]))
    for video in videos:
        folder = os.path.join(frames_root, "Frames", video)
        if not os.path.isdir(folder):
            problems.append(f"{video}: frame folder missing: {folder}")
            continue
        expected = set(range(1, int(gt["nframes"].get(video, 0)) + 1))
        on_disk = {n for numbers in frame_numbers(folder).values() for n in numbers}
        missing = expected - on_disk
        if missing:
            problems.append(f"{video}: frames {_ranges(np.array(sorted(missing)))} missing in {folder}")
        damaged = []
        for ext, numbers in frame_numbers(folder).items():
            for number in sorted(n for n in numbers if n in expected):
                path = os.path.join(folder, f"{number:05d}.{ext}")
                try:
                    problem = image_file_problem(path)
                except OSError as e:
                    problem = f"unreadable ({e.strerror})"
                if problem is not None:
                    damaged.append(f"{path}: {problem}")
        if damaged:
            more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
            problems.append(f"{video}: {len(damaged)} damaged frame files ({'; '.join(damaged[:3])}{more}); expected "
                            f"whole images: extract them again")
    return problems
