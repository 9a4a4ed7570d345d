"""Your own data: ground truth (ACT schema) from a CSV of boxes or from CVAT's "CVAT for video 1.1" XML export.

Files (docs/own-data.md has a worked example)::

    annotations.csv  video,frame,x1,y1,x2,y2,action[,person_id]   one row per person, frame and action
    labels.txt       one action name a line; the order gives the label index (0-based)
    split.csv        video,subset                                  subset "train" or "test"; one file per split

- ``video`` is the path under ``Frames/`` (``class/name`` or ``name``); frames are numbered from 1; boxes are in
  pixels of the original frames, ``x1 < x2``, ``y1 < y2``, inside the frame within ``BOX_TOLERANCE`` pixels.
  A header line (``video,frame,x1,...``) is allowed. A person doing two actions at once is two rows with the
  same box: that box is then in a tube of each label.
- Tubes: rows with a ``person_id`` are linked per (video, person_id, action) in frame order; rows without it per
  (video, action), which may then hold only one box a frame. A tube ends where the next annotated frame of its
  key lies more than ``max_gap`` frames further (1, the default: a tube is a run of consecutive frames; sparse
  annotation, e.g. one keyframe a second, keeps a person's keyframes in one tube with ``max_gap`` at least the
  annotation step).
- ``nframes`` and ``resolution`` come from the frames on disk (``<frames_root>/Frames/<video>/``) or, with
  ``videos_root``, from decoding ``<videos_root>/<video>.avi|.mp4`` to its end with OpenCV (the frame count in
  a video's header is not trusted).

Every problem is a ``DataError`` (a ValueError) naming the file and line and what was expected.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import xml.etree.ElementTree as ET
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .annotations import BOX_TOLERANCE, make_gt
from .errors import DataError
from .frames import VIDEO_EXTENSIONS, ImageFolderSource, VideoFileSource

__all__ = ["CSV_COLUMNS", "Row", "read_labels", "read_split", "frames_info", "videos_info", "read_csv_rows",
           "read_cvat_rows", "link_tubes", "gt_from_rows", "gt_from_csv", "gt_from_cvat"]

CSV_COLUMNS = ("video", "frame", "x1", "y1", "x2", "y2", "action", "person_id")
SUBSETS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Row:
    """One box of one person doing one action: ``where`` names its origin ("file line 7")."""

    where: str
    video: str
    frame: int  # 1-based
    box: Tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame
    label: int  # 0-based
    person: Optional[str]  # None: rows are linked per (video, action)


def _text_lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected a text file") from None


def read_labels(path: str) -> List[str]:
    """The action names of ``path``, one a line (blank lines skipped); a name given twice is an error naming both
    lines."""
    labels: List[str] = []
    seen: Dict[str, int] = {}
    for number, line in enumerate(_text_lines(path), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise DataError(f"{path} line {number}: action {name!r} repeats line {seen[name]}; expected each "
                            f"action once")
        seen[name] = number
        labels.append(name)
    if not labels:
        raise DataError(f"{path}: no action names; expected one action name a line")
    return labels


def _csv_rows(path: str) -> Iterable[Tuple[int, List[str]]]:
    """(line number, fields) of every non-blank line of the CSV file ``path``, fields stripped."""
    lines = _text_lines(path)
    reader = csv.reader(lines)
    for fields in reader:
        if fields and any(f.strip() for f in fields):
            yield reader.line_num, [f.strip() for f in fields]


def read_split(path: str) -> Tuple[List[str], List[str]]:
    """(train videos, test videos) of the split file ``path``: ``video,subset`` rows (a ``video,subset`` header
    allowed), subset ``train`` or ``test``, each video once."""
    train, test, _ = _read_split(path)
    return train, test


def _read_split(path: str) -> Tuple[List[str], List[str], Dict[str, int]]:
    train: List[str] = []
    test: List[str] = []
    seen: Dict[str, int] = {}
    for number, fields in _csv_rows(path):
        if number == 1 and [f.lower() for f in fields] == ["video", "subset"]:
            continue
        if len(fields) != 2 or not fields[0]:
            raise DataError(f"{path} line {number}: {len(fields)} fields; expected video,subset")
        video, subset = fields
        if subset not in SUBSETS:
            raise DataError(f"{path} line {number}: subset {subset!r} of video {video!r}; expected train or test")
        if video in seen:
            raise DataError(f"{path} line {number}: video {video!r} repeats line {seen[video]}; expected each video "
                            f"once")
        seen[video] = number
        (train if subset == "train" else test).append(video)
    if not seen:
        raise DataError(f"{path}: no videos; expected video,subset rows")
    return train, test, seen


def frames_info(frames_root: str, videos: Sequence[str], where: Mapping[str, str]) -> Tuple[Dict, Dict]:
    """({video: nframes}, {video: (h, w)}) from ``<frames_root>/Frames/<video>/`` (frames 1..n without gaps; the
    size of frame 1). ``where[video]`` names where the video was listed, for the error when it has no frames."""
    nframes, resolution = {}, {}
    for video in videos:
        folder = os.path.join(frames_root, "Frames", video)
        if not os.path.isdir(folder):
            raise DataError(f"{where[video]}: video {video!r} has no frame folder {folder}; expected its frames "
                            f"there (tools/prepare_data.py frames makes them)")
        source = ImageFolderSource(folder)
        try:
            nframes[video], resolution[video] = source.num_frames, tuple(source.size)
        except FileNotFoundError as e:
            raise DataError(f"{where[video]}: video {video!r}: {e}") from None
    return nframes, resolution


def videos_info(videos_root: str, videos: Sequence[str], where: Mapping[str, str]) -> Tuple[Dict, Dict]:
    """({video: nframes}, {video: (h, w)}) from ``<videos_root>/<video>.avi|.mp4``: the frames that decode
    (``VideoFileSource``, as ``tools/prepare_data.py frames`` extracts them), never the header's count."""
    nframes, resolution = {}, {}
    for video in videos:
        paths = [os.path.join(videos_root, f"{video}.{ext}") for ext in VIDEO_EXTENSIONS]
        found = [p for p in paths if os.path.isfile(p)]
        if not found:
            raise DataError(f"{where[video]}: video {video!r} has no video file; looked for {' and '.join(paths)}")
        source = VideoFileSource(found[0])  # its count is what decodes (frames.count_video_frames), kept per file
        try:
            n, size = source.num_frames, source.size
        except ValueError as e:
            raise DataError(f"{found[0]}: {' '.join(str(e).split())} (video {video!r}); expected a readable "
                            f"video") from None
        finally:
            source.close()
        nframes[video], resolution[video] = n, (int(size[0]), int(size[1]))
    return nframes, resolution


def _number(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} {text!r} is not a number; expected a finite number (pixels)")
    return value


def _frame_number(text: str, where: str, base: int = 1) -> int:
    try:
        frame = int(text)
    except ValueError:
        raise DataError(f"{where}: frame {text!r} is not a whole number; expected a frame number from "
                        f"{base}") from None
    if frame < base:
        raise DataError(f"{where}: frame {frame}; expected frame numbers from {base}")
    return frame


def _check_box(row: Row, nframes: int, size: Tuple[int, int]) -> None:
    x1, y1, x2, y2 = row.box
    h, w = size
    box = ", ".join(f"{v:g}" for v in row.box)
    if row.frame > nframes:
        raise DataError(f"{row.where}: frame {row.frame} beyond the {nframes} frames of video "
                        f"{row.video!r}; expected frames 1..{nframes}")
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{row.where}: box [{box}] has x2 <= x1 or y2 <= y1; expected x1 < x2 and y1 < y2")
    tol = BOX_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
        raise DataError(f"{row.where}: box [{box}] outside the {w}x{h} frames of video {row.video!r}; expected "
                        f"0 <= x1, x2 <= {w}, 0 <= y1, y2 <= {h} ({tol:g} pixel of tolerance)")


def read_csv_rows(path: str, labels: Sequence[str]) -> List[Row]:
    """The rows of the annotation CSV ``path`` (see the module's docstring), checked for their form: column count
    (7, or 8 with person_id, the same on every row), numbers, frames from 1, actions of ``labels``."""
    index = {name: k for k, name in enumerate(labels)}
    rows: List[Row] = []
    columns = None
    for number, fields in _csv_rows(path):
        where = f"{path} line {number}"
        if not rows and columns is None and fields and fields[0].lower() == "video":
            expected = list(CSV_COLUMNS[:len(fields)])
            if [f.lower() for f in fields] != expected or len(fields) < 7:
                raise DataError(f"{where}: header {','.join(fields)}; expected {','.join(CSV_COLUMNS[:7])}"
                                f"[,person_id]")
            columns = len(fields)
            continue
        if len(fields) not in (7, 8) or (columns is not None and len(fields) != columns):
            want = ",".join(CSV_COLUMNS[:columns]) if columns else ",".join(CSV_COLUMNS[:7]) + "[,person_id]"
            raise DataError(f"{where}: {len(fields)} fields; expected {want}"
                            f"{' (as the rows above)' if columns else ''}")
        columns = len(fields)
        video, frame_text, *coords, action = fields[:7]
        if not video:
            raise DataError(f"{where}: empty video; expected the video's path under Frames/")
        frame = _frame_number(frame_text, where)
        box = tuple(_number(text, where, name) for text, name in zip(coords, CSV_COLUMNS[2:6]))
        if action not in index:
            raise DataError(f"{where}: action {action!r} is not in the labels file; expected one of "
                            f"{', '.join(labels)}")
        person = None
        if columns == 8:
            person = fields[7]
            if not person:
                raise DataError(f"{where}: empty person_id; expected an id on every row (or no person_id column)")
        rows.append(Row(where, video, frame, box, index[action], person))
    if not rows:
        raise DataError(f"{path}: no annotation rows; expected {','.join(CSV_COLUMNS[:7])}[,person_id] rows")
    return rows


def link_tubes(rows: Sequence[Row], max_gap: int = 1) -> Dict[str, Dict[int, List[np.ndarray]]]:
    """{video: {label: [tube (n, 5) float32 frame, x1, y1, x2, y2]}} from checked ``rows``.

    Rows are grouped per (video, person, label) (person None: per (video, label)); in frame order, a tube ends
    where the next frame is more than ``max_gap`` frames on. A group with two rows on one frame is an error naming
    both (a duplicate row, or, without person ids, two people doing one action: add a person_id column), as is
    one person with two different boxes on one frame. Tubes of a label are ordered by first frame, then person.
    """
    if max_gap < 1:
        raise ValueError(f"max_gap must be at least 1, got {max_gap}")
    groups: Dict[Tuple, Dict[int, Row]] = {}
    people: Dict[Tuple[str, str, int], Row] = {}
    for row in rows:
        if row.person is not None:
            first = people.setdefault((row.video, row.person, row.frame), row)
            if first.box != row.box:
                raise DataError(f"{row.where}: person {row.person!r} of video {row.video!r} on frame {row.frame} has "
                                f"another box than at {first.where}; expected one box a person a frame")
        group = groups.setdefault((row.video, row.person, row.label), {})
        if row.frame in group:
            first = group[row.frame]
            if row.person is not None or first.box == row.box:
                raise DataError(f"{row.where}: duplicate of {first.where} (video {row.video!r}, frame {row.frame}"
                                f"{'' if row.person is None else f', person {row.person!r}'}); expected each "
                                f"row once")
            raise DataError(f"{row.where}: a second box of the same action on frame {row.frame} of video "
                            f"{row.video!r} (the first is at {first.where}); expected one box per action and frame "
                            f"without person ids: add a person_id column")
        group[row.frame] = row
    tubes: Dict[str, Dict[int, List[Tuple]]] = {}
    for (video, person, label), by_frame in groups.items():
        frames = sorted(by_frame)
        start = 0
        for k in range(1, len(frames) + 1):
            if k == len(frames) or frames[k] - frames[k - 1] > max_gap:
                part = frames[start:k]
                tube = np.array([[f, *by_frame[f].box] for f in part], dtype=np.float32)
                tubes.setdefault(video, {}).setdefault(label, []).append((part[0], person or "", tube))
                start = k
    return {video: {label: [t for _, _, t in sorted(items, key=lambda x: x[:2])]
                    for label, items in sorted(per_label.items())}
            for video, per_label in tubes.items()}


def _splits(split_files: Sequence[str]) -> Tuple[List[List[str]], List[List[str]], Dict[str, str]]:
    if not split_files:
        raise ValueError("no split file; expected at least one video,subset file")
    train, test, where = [], [], {}
    for path in split_files:
        tr, te, lines = _read_split(path)
        train.append(tr)
        test.append(te)
        for video in tr + te:
            where.setdefault(video, f"{path} line {lines[video]}")
    return train, test, where


def gt_from_rows(rows: Sequence[Row], *, labels: Sequence[str], split_files: Sequence[str],
                 frames_root: Optional[str] = None, videos_root: Optional[str] = None, max_gap: int = 1) -> dict:
    """The GT dict (``make_gt``) of ``rows``: the splits of ``split_files`` (one file a split; every video of any
    split is in ``nframes``), frame counts and sizes from ``frames_root`` or ``videos_root`` (exactly one), each
    row checked against them (a video not in any split, a frame beyond the video, a box outside the frame), tubes
    by :func:`link_tubes`. Videos of the splits without rows get no tubes (nobody acts in them)."""
    if (frames_root is None) == (videos_root is None):
        raise ValueError("give exactly one of frames_root (ROOT/Frames/<video>/) and videos_root")
    train, test, where = _splits(split_files)
    videos = list(where)
    for row in rows:
        if row.video not in where:
            raise DataError(f"{row.where}: video {row.video!r} is in no split file ({', '.join(split_files)}); "
                            f"expected a video listed there")
    if frames_root is not None:
        nframes, resolution = frames_info(frames_root, videos, where)
    else:
        nframes, resolution = videos_info(videos_root, videos, where)
    for row in rows:
        _check_box(row, nframes[row.video], resolution[row.video])
    tubes = link_tubes(rows, max_gap)
    gttubes = {video: tubes.get(video, {}) for video in videos}
    return make_gt(labels=labels, nframes=nframes, resolution=resolution, gttubes=gttubes,
                   train_videos=train, test_videos=test)


def gt_from_csv(path: str, *, labels: str, split_files: Sequence[str], frames_root: Optional[str] = None,
                videos_root: Optional[str] = None, max_gap: int = 1) -> dict:
    """The GT dict of the annotation CSV ``path`` with the labels file ``labels`` (see :func:`gt_from_rows`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    names = read_labels(labels)
    return gt_from_rows(read_csv_rows(path, names), labels=names, split_files=split_files, frames_root=frames_root,
                        videos_root=videos_root, max_gap=max_gap)


# ---------------------------------------------------------------------------------------------------- CVAT

def _parse_xml(path: str) -> ET.Element:
    """The root of the XML file ``path``. A document declaring a DOCTYPE (entities) is refused: CVAT exports have
    none, and entity expansion ("billion laughs") is the one XML attack the standard library's parser relies on
    expat's own limits against."""
    with open(path, "rb") as f:
        data = f.read()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DataError(f"{path}: declares a DOCTYPE or entities; expected a CVAT export (which has none)")
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise DataError(f"{path}: not well-formed XML ({e}); expected a CVAT for video 1.1 export") from None


def read_cvat_rows(path: str, labels: Sequence[str], *, video: Optional[str] = None,
                   action_attribute: Optional[str] = None) -> Tuple[str, List[Row]]:
    """(video name, rows) of a "CVAT for video 1.1" export ``path`` (one task, one video).

    ``<track id label>`` holds ``<box frame xtl ytl xbr ybr outside occluded keyframe>`` (frames 0-based in CVAT,
    made 1-based here) with ``<attribute name>`` children. A box with ``outside="1"`` is not part of the track.
    The action is the track's label, or with ``action_attribute`` the value of that attribute on each box (a track
    whose attribute changes becomes a tube per action run; boxes whose value is not a label, e.g. "none", are no
    action). The person id is the track id. The video is ``video`` or the task's ``<name>``. A task made with a
    start frame or a frame step is refused (its frame numbers would not be the video's)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CVAT annotation file not found: {path}")
    root = _parse_xml(path)
    if root.tag != "annotations":
        raise DataError(f"{path}: root element <{root.tag}>; expected <annotations> (CVAT for video 1.1)")
    task = root.find("meta/task")
    if task is None:
        task = root.find("meta/job")
    name = video or (task.findtext("name", "").strip() if task is not None else "")
    if not name:
        raise DataError(f"{path}: no <meta><task><name>; expected one, or give the video's name (--video)")
    if task is not None:
        start = (task.findtext("start_frame") or "0").strip()
        step = (task.findtext("frame_filter") or "").strip()
        if start not in ("", "0") or step not in ("", "step=1"):
            raise DataError(f"{path}: task made with start_frame {start} / frame_filter {step!r}; expected a task "
                            f"of every frame of the video from its first (start_frame 0, no frame step)")
    index = {label: k for k, label in enumerate(labels)}
    rows: List[Row] = []
    for track in root.iter("track"):
        track_id, track_label = track.get("id", ""), track.get("label", "")
        for box in track.iter("box"):
            where = f"{path} track {track_id} frame {box.get('frame')}"
            if box.get("outside", "0") == "1":
                continue
            if action_attribute is None:
                action = track_label
            else:
                values = [a.text or "" for a in box.findall("attribute") if a.get("name") == action_attribute]
                if not values:
                    raise DataError(f"{where}: no attribute {action_attribute!r}; expected the action in it "
                                    f"(--action-attribute)")
                action = values[0].strip()
                if action not in index:
                    continue  # e.g. "none": nobody acts here
            if action not in index:
                raise DataError(f"{where}: label {action!r} is not in the labels file; expected one of "
                                f"{', '.join(labels)} (or --action-attribute NAME)")
            frame = _frame_number(box.get("frame", ""), where, base=0) + 1
            coords = tuple(_number(box.get(k, ""), where, k) for k in ("xtl", "ytl", "xbr", "ybr"))
            rows.append(Row(where, name, frame, coords, index[action], f"track {track_id}"))
    if not rows:
        raise DataError(f"{path}: no box of a listed action; expected <track> elements with <box> children")
    return name, rows


def gt_from_cvat(paths: Sequence[str], *, labels: str, split_files: Sequence[str],
                 frames_root: Optional[str] = None, videos_root: Optional[str] = None, max_gap: int = 1,
                 video: Optional[str] = None, action_attribute: Optional[str] = None) -> dict:
    """The GT dict of CVAT exports ``paths`` (one video each; ``video`` names it when there is one export) with
    the labels file ``labels`` (see :func:`read_cvat_rows`, :func:`gt_from_rows`)."""
    if video is not None and len(paths) != 1:
        raise ValueError(f"--video names one video, but {len(paths)} CVAT files were given; expected one")
    names = read_labels(labels)
    rows: List[Row] = []
    seen: Dict[str, str] = {}
    for path in paths:
        name, found = read_cvat_rows(path, names, video=video, action_attribute=action_attribute)
        if name in seen:
            raise DataError(f"{path}: video {name!r} is also the video of {seen[name]}; expected one export a video")
        seen[name] = path
        rows += found
    return gt_from_rows(rows, labels=names, split_files=split_files, frames_root=frames_root,
                        videos_root=videos_root, max_gap=max_gap)
