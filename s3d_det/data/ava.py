"""Readers and a writer for the AVA v2.1/v2.2 files (https://research.google.com/ava/download.html).

=========================================  ==========================================================================
file                                       rows
=========================================  ==========================================================================
``ava_{train,val}_v2.x.csv`` (ground       ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``: one row per person
truth)                                     and action of a keyframe; 7 columns (no ``person_id``) and 2 columns
                                           (``video_id,timestamp``: a keyframe without actions, the files released
                                           since 2020) are read too
``ava_action_list_v2.x[...].pbtxt``        ``label { name: "..." label_id: N label_type: ... }`` items (also
(label map)                                ``item { name: "..." id: N }``, the ActivityNet copy's spelling)
``ava_{val,test}_excluded_timestamps_      ``video_id,timestamp``
v2.x.csv`` (exclusions)
detections                                 ``video_id,timestamp,x1,y1,x2,y2,action_id,score``
=========================================  ==========================================================================

Timestamps are whole seconds (902..1798 in AVA's 15-minute segments; any integer >= 0 is read, ``0902`` and
``902`` are the same keyframe), boxes are normalised to [0, 1] with x1 <= x2 and y1 <= y2, action ids are 1-based.
Every bad row is a :class:`DataError` naming the file, the line and what was expected; nothing is skipped.

Rows are kept in file order as :class:`AVABoxes` (numpy columns); what the evaluation keeps of them (label map,
exclusions, 50 detections a keyframe) is ``s3d_det.evaluation.ava``'s business.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from typing import Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from .errors import DataError

__all__ = ["AVABoxes", "read_ava_detections", "read_ava_exclusions", "read_ava_gt", "read_ava_labelmap",
           "write_ava_detections"]

Keyframe = Tuple[str, int]


@dataclasses.dataclass
class AVABoxes:
    """Rows of an AVA ground-truth or detections CSV, in file order.

    Attributes:
        video: (N,) video ids (str, numpy object array); timestamp: (N,) int64 seconds.
        boxes: (N, 4) float64 x1, y1, x2, y2 normalised to [0, 1]; action: (N,) int64 1-based action ids.
        score: (N,) float64: detections: the score; ground truth: ``person_id`` as a float (1.0 in 7-column rows),
            what the official reader puts in the score slot of a ground-truth row.
        person: (N,) int64 ``person_id`` (ground truth; -1 where absent and in detections).
        line: (N,) int64 1-based line numbers in ``source``.
        keyframes: every keyframe named in the file, in order of first appearance (rows with boxes and 2-column
            rows alike).
        source: the path read.
    """

    video: np.ndarray
    timestamp: np.ndarray
    boxes: np.ndarray
    action: np.ndarray
    score: np.ndarray
    person: np.ndarray
    line: np.ndarray
    keyframes: List[Keyframe]
    source: str = ""

    def __len__(self) -> int:
        return len(self.action)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple], source: str = "") -> "AVABoxes":
        """From ``(video, timestamp, x1, y1, x2, y2, action, score)`` tuples (no checks; for tests and tools)."""
        rows = list(rows)
        video = np.array([r[0] for r in rows] or [], dtype=object)
        arr = np.array([r[1:8] for r in rows], dtype=np.float64).reshape(-1, 7)
        keyframes = list(dict.fromkeys((r[0], int(r[1])) for r in rows))
        return cls(video=video, timestamp=arr[:, 0].astype(np.int64), boxes=arr[:, 1:5].copy(),
                   action=arr[:, 5].astype(np.int64), score=arr[:, 6].copy(),
                   person=np.full(len(rows), -1, np.int64), line=np.arange(1, len(rows) + 1, dtype=np.int64),
                   keyframes=keyframes, source=source)


def _open_rows(path: str):
    """(line number, row) of a CSV file; an unreadable file is a DataError naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f), start=1):
                yield i, row
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a CSV file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def _timestamp(path: str, line: int, text: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise DataError(f"{path}: line {line}: timestamp {text!r}: expected whole seconds, an integer >= 0 "
                        "(902..1798 in AVA)")
    return int(text)


def _video(path: str, line: int, text: str) -> str:
    if not text.strip():
        raise DataError(f"{path}: line {line}: empty video_id")
    return text


def _number(path: str, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}: {column} {text!r}: expected a finite number")
    return value


def _integer(path: str, line: int, column: str, text: str, least: int) -> int:
    if not re.fullmatch(r"\s*[+-]?\d+\s*", text) or int(text) < least:
        raise DataError(f"{path}: line {line}: {column} {text!r}: expected an integer >= {least}")
    return int(text)


def _read(path: str, *, detections: bool) -> AVABoxes:
    video, ts, boxes, action, score, person, lines, keyframes = [], [], [], [], [], [], [], {}
    columns = "video_id,timestamp,x1,y1,x2,y2,action_id," + ("score" if detections else "person_id")
    allowed = (8,) if detections else (2, 7, 8)
    for line, row in _open_rows(path):
        if len(row) not in allowed:
            what = "8 columns" if detections else "8 columns (or 7 without person_id, or 2: video_id,timestamp)"
            raise DataError(f"{path}: line {line}: {len(row)} columns: expected {what}: {columns}")
        key = (_video(path, line, row[0]), _timestamp(path, line, row[1]))
        keyframes.setdefault(key, None)
        if len(row) == 2:
            continue
        box = [_number(path, line, name, text) for name, text in zip(("x1", "y1", "x2", "y2"), row[2:6])]
        if not all(0.0 <= v <= 1.0 for v in box) or box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"{path}: line {line}: box {','.join(row[2:6])}: expected x1,y1,x2,y2 normalised to "
                            "[0, 1] with x1 <= x2 and y1 <= y2")
        video.append(key[0])
        ts.append(key[1])
        boxes.append(box)
        action.append(_integer(path, line, "action_id", row[6], 1))
        if detections:
            score.append(_number(path, line, "score", row[7]))
            person.append(-1)
        elif len(row) == 8:
            person.append(_integer(path, line, "person_id", row[7], 0))
            score.append(float(person[-1]))
        else:
            person.append(-1)
            score.append(1.0)
        lines.append(line)
    return AVABoxes(video=np.array(video, dtype=object), timestamp=np.array(ts, dtype=np.int64),
                    boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), action=np.array(action, dtype=np.int64),
                    score=np.array(score, dtype=np.float64), person=np.array(person, dtype=np.int64),
                    line=np.array(lines, dtype=np.int64), keyframes=list(keyframes), source=path)


def read_ava_gt(path: str) -> AVABoxes:
    """An AVA ground-truth CSV (``ava_{train,val}_v2.x.csv``): ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``
    rows (7 columns without ``person_id`` and 2-column keyframes without actions are read too)."""
    return _read(path, detections=False)


def read_ava_detections(path: str) -> AVABoxes:
    """Detections in AVA's CSV format: ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` rows (score finite; any
    action id >= 1: ids outside the label map are left out by the evaluation, as the official code does)."""
    return _read(path, detections=True)


def read_ava_exclusions(path: str) -> Set[Keyframe]:
    """The excluded keyframes (``video_id,timestamp`` rows) as a set of ``(video_id, seconds)``."""
    excluded = set()
    for line, row in _open_rows(path):
        if len(row) != 2:
            raise DataError(f"{path}: line {line}: {len(row)} columns: expected 2: video_id,timestamp")
        excluded.add((_video(path, line, row[0]), _timestamp(path, line, row[1])))
    return excluded


_ITEM_OPEN = re.compile(r"^\s*(label|item)\s*\{\s*$")
_FIELD = re.compile(r'^\s*(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*$')


def read_ava_labelmap(path: str) -> Dict[int, str]:
    """An AVA action list (``.pbtxt``): ``{label_id: name}`` in file order.

    Items are ``label { name: "..." label_id: N label_type: ... }`` (the AVA download) or ``item { name: "..." id: N
    }`` (the ActivityNet copy), one field a line. Each item needs a name and an id >= 1; ids and names are unique.
    """
    labels: Dict[int, str] = {}
    item: Optional[dict] = None
    start = 0
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    expected = 'expected label { name: "..." label_id: N } items, one field a line'
    for line, raw in enumerate(text, start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if item is None:
            if not _ITEM_OPEN.match(raw):
                raise DataError(f"{path}: line {line}: {stripped!r}: {expected}")
            item, start = {}, line
            continue
        if stripped == "}":
            if "name" not in item or "id" not in item:
                missing = "name" if "name" not in item else "label_id"
                raise DataError(f"{path}: line {start}: item without a {missing}: {expected}")
            if item["id"] in labels:
                raise DataError(f"{path}: line {start}: label_id {item['id']} given twice")
            if item["name"] in labels.values():
                raise DataError(f"{path}: line {start}: name {item['name']!r} given twice")
            labels[item["id"]] = item["name"]
            item = None
            continue
        field = _FIELD.match(raw)
        if not field:
            raise DataError(f"{path}: line {line}: {stripped!r}: {expected}")
        key, quoted, bare = field.groups()
        if key == "name":
            if quoted is None:
                raise DataError(f"{path}: line {line}: name: expected a quoted string")
            item["name"] = quoted
        elif key in ("label_id", "id"):
            if bare is None or not re.fullmatch(r"\d+", bare) or int(bare) < 1:
                raise DataError(f"{path}: line {line}: {key} {bare or quoted!r}: expected an integer >= 1")
            item["id"] = int(bare)
    if item is not None:
        raise DataError(f"{path}: line {start}: item not closed with '}}'")
    if not labels:
        raise DataError(f"{path}: no label items: {expected}")
    return labels


def check_video_ids(path: str, videos) -> None:
    """ValueError naming ``path`` and the id unless every video id can be a CSV field as AVA writes them: not
    empty, no commas, quotes or newlines."""
    for v in videos:
        if not v or any(c in v for c in ',"\r\n'):
            raise ValueError(f"{path}: video id {v!r}: expected a non-empty id without commas, quotes or newlines")


def write_ava_detections(path: str, dets: AVABoxes, *, overwrite: bool = False) -> None:
    """Writes ``dets`` as AVA detections CSV rows (``video_id,timestamp,x1,y1,x2,y2,action_id,score``; timestamps
    ``%04d``, boxes and scores with Python's shortest round-trip repr, so reading it back gives the same numbers).
    Written atomically; an existing ``path`` is refused unless ``overwrite``."""
    from s3d_det.utils.io import atomic_write

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: exists; refusing to overwrite it")
    check_video_ids(path, dets.video)
    with atomic_write(path, ".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            for v, t, box, a, s in zip(dets.video, dets.timestamp, dets.boxes, dets.action, dets.score):
                f.write(f"{v},{int(t):04d},{','.join(repr(float(x)) for x in box)},{int(a)},{float(s)!r}\n")
