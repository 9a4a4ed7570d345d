"""AVA as a ground truth in the ACT schema, and back: training data from AVA's CSVs, our detections and any GT pickle
(the synthetic set) as AVA CSV rows, for ``s3d_det.evaluation.ava.ava_frame_ap``.

Frames (the convention of SlowFast's ``ava_helper``/``ava_dataset`` and MMAction2's AVA preparation): each video's
15-minute segment, seconds 900 to 1800 of the movie, is extracted at 30 fps, frame 1 being the first frame of
second 900 (SlowFast's ``frames/<id>/<id>_000001.jpg``; its 0-based ``sec_to_frame(t) = (t - 900) * 30`` indexes
that list). So the keyframe of timestamp ``t`` is frame ``(t - start) * fps + 1`` (1-based), ``start`` 900 and
``fps`` 30: second 902 is frame 61, second 1798 frame 26941. Frames live in our layout,
``<root>/Frames/<video_id>/{k:05d}.jpg`` (SlowFast's ``<id>_{k:06d}.jpg`` with the same ``k``: docs/datasets.md has
the one-line symlink step).

The GT dict gets an optional key ``"ava"`` (kept by ``annotations.save_gt``/``load_gt``; other tools ignore it)::

    {"action_ids": [int],                      # the AVA action id of each label (parallel to ``labels``)
     "fps": 30, "start": 900,                  # frame k (1-based) is at second start + (k - 1) / fps
     "keyframes": {video: [frame, ...]},       # every keyframe the CSVs name, 1-based frames, increasing
     "persons": {video: {label: [person_id]}}} # the AVA person id of each tube (parallel to gttubes)

Tubes: a person's keyframes of one action are linked into one tube while the next keyframe is at most ``max_gap``
frames on (30: one keyframe a second); a tube is thus sparse (frames 61, 91, 121, ...), which
``annotations.validate_gt`` reports as "frames not consecutive" but training and evaluation take as they are (they
use the annotated frames only). A person doing several actions on a keyframe is the same box in several labels'
tubes.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .annotations import make_gt, split_videos
from .ava import AVABoxes, check_video_ids, read_ava_gt, read_ava_labelmap
from .errors import DataError
from .own_annotations import Row, frames_info, link_tubes

__all__ = ["AVA_FPS", "AVA_START", "AVA_MAX_GAP", "keyframe_of", "timestamp_of", "gt_from_ava", "gt_to_ava",
           "detections_to_ava", "check_ava_info", "infer_persons", "write_ava_gt", "write_ava_labelmap", "ava_info",
           "score_ava"]

AVA_FPS = 30
AVA_START = 900
AVA_MAX_GAP = 30
DECIMALS = 3  # AVA's CSVs give normalised coordinates with 3 decimals


def keyframe_of(timestamp: int, *, fps: int = AVA_FPS, start: int = AVA_START) -> int:
    """The 1-based frame of the keyframe at ``timestamp`` seconds: ``(timestamp - start) * fps + 1``."""
    return (int(timestamp) - start) * fps + 1


def timestamp_of(frame: int, *, fps: int = AVA_FPS, start: int = AVA_START) -> Optional[int]:
    """The timestamp (seconds) of the 1-based ``frame`` if it is a keyframe (``(frame - 1) % fps == 0``), else None."""
    if (int(frame) - 1) % fps:
        return None
    return start + (int(frame) - 1) // fps


def gt_from_ava(train_csv: str, *, labelmap: str, frames_root: str, val_csv: Optional[str] = None,
                fps: int = AVA_FPS, start: int = AVA_START, max_gap: int = AVA_MAX_GAP) -> dict:
    """The GT dict (ACT schema, with the ``"ava"`` key) of AVA's ground-truth CSVs: ``train_csv``'s videos are split
    1's train videos, ``val_csv``'s (if given) its test videos. Labels are the classes of ``labelmap`` (.pbtxt) in id
    order; rows of other action ids are left out, as the official evaluation does (AVA's v2.2 train CSV has 80
    actions, its evaluation label map 60). Frame counts and sizes come from ``<frames_root>/Frames/<video_id>/``;
    boxes are the normalised ones times the frame size. Rows need a ``person_id`` (8 columns): a keyframe's people
    are told apart by it. Errors (a video without frames, a keyframe beyond them, a person with two boxes on one
    keyframe, a video in both files) name the file and line."""
    if fps < 1 or max_gap < 1:
        raise ValueError(f"fps and max_gap must be at least 1, got fps {fps}, max_gap {max_gap}")
    names = read_ava_labelmap(labelmap)
    ids = sorted(names)
    label_of = {a: k for k, a in enumerate(ids)}
    sources = [(train_csv, read_ava_gt(train_csv))] + ([(val_csv, read_ava_gt(val_csv))] if val_csv else [])
    where: Dict[str, str] = {}  # video -> "file line N" of its first row
    subsets: List[List[str]] = [[], []]
    keyframes: Dict[str, set] = {}
    rows: List[Row] = []
    for subset, (path, boxes) in enumerate(sources):
        mine: Dict[str, str] = {}
        for video, line in zip(boxes.video, boxes.line):
            mine.setdefault(video, f"{path} line {line}")
        for video, _ in boxes.keyframes:
            mine.setdefault(video, path)
        for video, at in mine.items():
            if video in where:
                raise DataError(f"{at}: video {video!r} is also in {where[video]}; expected each video in one file "
                                f"(train or val)")
            where[video] = at
            subsets[subset].append(video)
        for video, t in boxes.keyframes:
            if t < start:
                raise DataError(f"{path}: video {video!r}: timestamp {t} before the start second {start}; expected "
                                f"timestamps >= {start} (frame 1 is second {start})")
            keyframes.setdefault(video, set()).add(keyframe_of(t, fps=fps, start=start))
        for i in range(len(boxes)):
            if boxes.person[i] < 0:
                raise DataError(f"{path}: line {boxes.line[i]}: 7 columns; expected 8 with a person_id (people on a "
                                f"keyframe are linked into tubes by it)")
            if int(boxes.action[i]) not in label_of:
                continue
            rows.append(Row(f"{path} line {boxes.line[i]}", boxes.video[i],
                            keyframe_of(boxes.timestamp[i], fps=fps, start=start), tuple(boxes.boxes[i]),
                            label_of[int(boxes.action[i])], str(int(boxes.person[i]))))
    videos = list(where)
    nframes, resolution = frames_info(frames_root, videos, where)
    for video in videos:
        last = max(keyframes[video])
        if last > nframes[video]:
            raise DataError(f"{where[video]}: video {video!r}: keyframe at second "
                            f"{start + (last - 1) // fps} is frame {last}, beyond the {nframes[video]} frames in "
                            f"{os.path.join(frames_root, 'Frames', video)}; expected frames extracted at {fps} fps "
                            f"from second {start} (docs/datasets.md, AVA)")
    pixels = []
    for row in rows:
        h, w = resolution[row.video]
        x1, y1, x2, y2 = row.box
        pixels.append(Row(row.where, row.video, row.frame, (x1 * w, y1 * h, x2 * w, y2 * h), row.label, row.person))
    tubes, persons = _link_people(pixels, max_gap)
    gt = make_gt(labels=[names[a] for a in ids], nframes=nframes, resolution=resolution,
                 gttubes={v: tubes.get(v, {}) for v in videos}, train_videos=[subsets[0]], test_videos=[subsets[1]])
    gt["ava"] = {"action_ids": ids, "fps": int(fps), "start": int(start),
                 "keyframes": {v: sorted(keyframes[v]) for v in videos}, "persons": persons}
    return gt


def _link_people(rows: Sequence[Row], max_gap: int) -> Tuple[Dict, Dict[str, Dict[int, List[int]]]]:
    """``link_tubes(rows, max_gap)`` and the person id of each tube: linked person by person, a label's tubes then
    ordered by first frame and person id (as ``link_tubes`` orders them)."""
    link_tubes(rows, max_gap)  # its checks (a person with two boxes on a frame, duplicate rows) over all rows
    by_person: Dict[Tuple[str, str], List[Row]] = {}
    for row in rows:
        by_person.setdefault((row.video, row.person), []).append(row)
    found: Dict[str, Dict[int, List[Tuple[int, int, np.ndarray]]]] = {}
    for (video, person), mine in by_person.items():
        for label, tubes in link_tubes(mine, max_gap).get(video, {}).items():
            for tube in tubes:
                found.setdefault(video, {}).setdefault(label, []).append((int(tube[0, 0]), int(person), tube))
    tubes: Dict[str, Dict[int, List[np.ndarray]]] = {}
    persons: Dict[str, Dict[int, List[int]]] = {}
    for video, per_label in found.items():
        for label in sorted(per_label):
            items = sorted(per_label[label], key=lambda x: x[:2])
            tubes.setdefault(video, {})[label] = [t for _, _, t in items]
            persons.setdefault(video, {})[label] = [p for _, p, _ in items]
    return tubes, persons


def ava_info(gt: Mapping, *, fps: int = AVA_FPS, start: int = AVA_START) -> dict:
    """``gt["ava"]``, or for a GT without it (the synthetic set, JHMDB, your own data) the same made up: action ids
    1..C in label order, keyframes every ``fps`` frames from frame 1 (frame 1 at second ``start``), person ids from
    the tubes (:func:`infer_persons`)."""
    if "ava" in gt:
        check_ava_info(gt)
        return gt["ava"]
    if fps < 1:
        raise ValueError(f"fps must be at least 1, got {fps}")
    return {"action_ids": list(range(1, len(gt["labels"]) + 1)), "fps": int(fps), "start": int(start),
            "keyframes": {v: list(range(1, int(n) + 1, fps)) for v, n in gt["nframes"].items()},
            "persons": infer_persons(gt)}


def check_ava_info(gt: Mapping, source: str = "ground truth") -> None:
    """Raises ``DataError`` naming the key where ``gt["ava"]`` does not fit ``gt``: ``action_ids`` distinct integers
    >= 1, one a label; ``fps`` >= 1 and ``start`` >= 0 integers; ``keyframes`` {video: increasing frames within
    1..nframes}; ``persons`` {video: {label: one integer a tube of gttubes[video][label]}}."""
    info = gt["ava"]

    def fail(key: str, expected: str):
        raise DataError(f"{source}: key 'ava/{key}': expected {expected}")

    def integer(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not isinstance(info, Mapping) or any(k not in info for k in ("action_ids", "fps", "start", "keyframes",
                                                                     "persons")):
        fail("", "a dict with action_ids, fps, start, keyframes and persons (s3d_det.data.ava_gt)")
    ids = info["action_ids"]
    if (not isinstance(ids, (list, tuple)) or len(ids) != len(gt["labels"]) or not all(integer(a) and a >= 1
                                                                                        for a in ids)
            or len(set(ids)) != len(ids)):
        fail("action_ids", f"{len(gt['labels'])} distinct integers >= 1, one a label")
    if not integer(info["fps"]) or info["fps"] < 1 or not integer(info["start"]) or info["start"] < 0:
        fail("fps", "fps an integer >= 1 and start an integer >= 0")
    if not isinstance(info["keyframes"], Mapping):
        fail("keyframes", "a dict {video: [frames]}")
    for video, frames in info["keyframes"].items():
        n = gt["nframes"].get(video)
        if (n is None or not isinstance(frames, (list, tuple)) or not all(integer(f) and 1 <= f <= n for f in frames)
                or list(frames) != sorted(set(frames))):
            fail(f"keyframes/{video}", "increasing frames within 1..nframes of a video of the ground truth")
    persons = info["persons"]
    if not isinstance(persons, Mapping):
        fail("persons", "a dict {video: {label: [person id of each tube]}}")
    for video, per_label in gt["gttubes"].items():
        for label, tubes in per_label.items():
            ids_of = persons.get(video, {}).get(label) if isinstance(persons.get(video), Mapping) else None
            if (not isinstance(ids_of, (list, tuple)) or len(ids_of) != len(tubes)
                    or not all(integer(p) for p in ids_of)):
                fail(f"persons/{video}/{label}", f"{len(tubes)} integer person ids, one a tube of that label")


def infer_persons(gt: Mapping) -> Dict[str, Dict[int, List[int]]]:
    """Person ids for the tubes of a GT without them: tubes of one video holding the same box on a frame (one person
    doing several actions) share an id; ids count from 0 per video in the order of ``gttubes``."""
    out: Dict[str, Dict[int, List[int]]] = {}
    for video, per_label in gt["gttubes"].items():
        owners = [(label, j) for label, ts in per_label.items() for j in range(len(ts))]
        parent = list(range(len(owners)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        seen: Dict[tuple, int] = {}
        for i, (label, j) in enumerate(owners):
            for row in np.asarray(per_label[label][j], dtype=np.float32):
                key = tuple(float(x) for x in row)
                if key in seen:
                    parent[root(i)] = root(seen[key])
                else:
                    seen[key] = i
        ids: Dict[int, int] = {}
        for i, (label, j) in enumerate(owners):
            pid = ids.setdefault(root(i), len(ids))
            out.setdefault(video, {}).setdefault(int(label), []).append(pid)
    return out


def _videos(gt: Mapping, split: Optional[int], subset: str) -> List[str]:
    return list(gt["nframes"]) if split is None else split_videos(gt, split, subset)


def _normalised(box, size) -> List[float]:
    h, w = size
    x1, y1, x2, y2 = (float(v) for v in box)
    return [min(max(v, 0.0), 1.0) for v in (x1 / w, y1 / h, x2 / w, y2 / h)]


def gt_to_ava(gt: Mapping, *, split: Optional[int] = 1, subset: str = "test", fps: int = AVA_FPS,
              start: int = AVA_START) -> Tuple[AVABoxes, Dict[int, str]]:
    """``gt``'s boxes on the keyframes (:func:`ava_info`) of split ``split``'s ``subset`` videos (``split`` None: all
    videos) as AVA ground-truth rows (``person`` and ``score`` hold the person id), sorted by video, timestamp,
    person and action; and the label map ``{action_id: name}``. Boxes are normalised by the frame size and clipped
    to [0, 1]."""
    info = ava_info(gt, fps=fps, start=start)
    fps, start, ids = info["fps"], info["start"], info["action_ids"]
    rows = []
    for video in _videos(gt, split, subset):
        keys = set(info["keyframes"].get(video, ()))
        persons = info["persons"].get(video, {})
        for label, tubes in gt["gttubes"].get(video, {}).items():
            for j, tube in enumerate(tubes):
                pid = int(persons[label][j])
                for row in np.asarray(tube, dtype=np.float64):
                    if int(row[0]) in keys:
                        rows.append((video, (int(row[0]) - 1) // fps + start,
                                     *_normalised(row[1:5], gt["resolution"][video]), ids[int(label)], pid))
    rows.sort(key=lambda r: (r[0], r[1], r[7], r[6]))
    boxes = AVABoxes.from_rows(rows)
    boxes.person = boxes.score.astype(np.int64)
    return boxes, {a: name for a, name in zip(ids, gt["labels"])}


def detections_to_ava(gt: Mapping, dets, *, fps: int = AVA_FPS, start: int = AVA_START) -> AVABoxes:
    """Our ``Detections`` (``s3d_det.evaluation.detections``) on ``gt``'s videos as AVA detection rows: only the rows on
    keyframes (:func:`ava_info`), frames turned into timestamps, boxes normalised by the frame size (clipped to
    [0, 1]), labels into action ids; in the detections' order."""
    info = ava_info(gt, fps=fps, start=start)
    fps, start, ids = info["fps"], info["start"], info["action_ids"]
    keyframes = {video: set(frames) for video, frames in info["keyframes"].items()}
    per = dets.per_frame
    out = []
    for i in range(len(per)):
        video = dets.videos[int(per.video[i])]
        frame = int(per.frame[i])
        if video not in gt["resolution"]:
            raise DataError(f"detections row {i}: video {video!r} is not in the ground truth")
        if frame not in keyframes.get(video, ()):
            continue
        label = int(per.label[i])
        if not 0 <= label < len(ids):
            raise DataError(f"detections row {i}: label {label} outside 0..{len(ids) - 1}")
        out.append((video, (frame - 1) // fps + start, *_normalised(per.boxes[i], gt["resolution"][video]),
                    ids[label], float(per.score[i])))
    return AVABoxes.from_rows(out)


def score_ava(gt: Mapping, dets, *, split: int = 1, iou: float = 0.5, fps: int = AVA_FPS, start: int = AVA_START):
    """The AVA frame-AP (``ava_frame_ap``, a ``FrameAPResult``) of ``dets`` against split ``split``'s test videos of
    ``gt``, both turned into AVA rows (:func:`gt_to_ava`, :func:`detections_to_ava`)."""
    from s3d_det.evaluation.ava import ava_frame_ap

    truth, labelmap = gt_to_ava(gt, split=split, subset="test", fps=fps, start=start)
    test = set(split_videos(gt, split, "test"))
    found = detections_to_ava(gt, dets, fps=fps, start=start)
    keep = np.array([v in test for v in found.video], dtype=bool)
    found = AVABoxes.from_rows([(found.video[i], found.timestamp[i], *found.boxes[i], found.action[i], found.score[i])
                                for i in np.flatnonzero(keep)])
    return ava_frame_ap(truth, found, labelmap, iou=iou)


def _refuse_existing(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: exists; refusing to overwrite it")


def write_ava_gt(path: str, rows: AVABoxes, *, decimals: int = DECIMALS, overwrite: bool = False) -> None:
    """Writes AVA ground-truth rows ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id`` (timestamps ``%04d``,
    coordinates with ``decimals`` decimals as in AVA's files), atomically; an existing file is refused unless
    ``overwrite``."""
    from s3d_det.utils.io import atomic_write

    _refuse_existing(path, overwrite)
    check_video_ids(path, rows.video)
    with atomic_write(path, ".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            for v, t, box, a, p in zip(rows.video, rows.timestamp, rows.boxes, rows.action, rows.person):
                coords = ",".join(f"{float(x):.{decimals}f}" for x in box)
                f.write(f"{v},{int(t):04d},{coords},{int(a)},{int(p)}\n")


def write_ava_labelmap(path: str, labelmap: Mapping[int, str], *, overwrite: bool = False) -> None:
    """Writes ``{action_id: name}`` as an AVA action list (``label { name: "..." label_id: N }`` items, id order),
    atomically; an existing file is refused unless ``overwrite``."""
    from s3d_det.utils.io import atomic_write

    _refuse_existing(path, overwrite)
    for a, name in labelmap.items():
        if not name or any(c in name for c in '"\\\n'):
            raise ValueError(f"{path}: action {a} name {name!r}: expected a non-empty name without quotes, "
                             "backslashes or newlines")
    with atomic_write(path, ".pbtxt") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for a in sorted(labelmap):
                name = labelmap[a]
                f.write(f'label {{\n  name: "{name}"\n  label_id: {int(a)}\n}}\n')
