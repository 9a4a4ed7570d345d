"""The detections interchange format (``.npz``), shared by the evaluation, the tools and inference.

Keys:

- ``videos`` (M,) str: video names ``"<class>/<video>"``; rows refer to them by position.
- ``frame_dets`` (N, 8) float64: ``video_index, frame (1-based), label (0-based), score, x1, y1, x2, y2``,
  boxes in pixels of the original frame.
- optional, for video-mAP: ``tubes`` (K, 3) float64 ``video_index, label, score`` and ``tube_boxes`` (P, 6)
  float64 ``tube_index, frame, x1, y1, x2, y2`` (one row per frame of each tube, frames increasing).

In code the per-frame rows travel as :class:`FrameDetections` (named fields: ``video``, ``frame``, ``label``,
``score``, ``boxes``); ``FrameDetections.from_rows``/``to_rows`` convert from and to the (N, 8) layout, which only
this module indexes by column (``VIDEO, FRAME, LABEL, SCORE, BOX``; ``TUBE_*`` and ``TUBE_BOX_*`` for the tubes).
:class:`Detections` mirrors a file: ``frame_dets`` stays the (N, 8) array, ``Detections.per_frame`` gives it as
:class:`FrameDetections`.

Files are read with ``numpy.load(allow_pickle=False)``: a detection file never runs code. A file that is not
such an archive (empty, text, a pickle, a single ``.npy``), an object array, a key of the wrong shape or an integer
``frame_dets`` (its scores would be truncated) is a ``DataError`` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import List, Mapping, Optional, Sequence

import numpy as np

from s3d_det.data.errors import DataError
from s3d_det.utils.io import atomic_write

__all__ = ["Detections", "FrameDetections", "load_detections", "save_detections", "check_detections",
           "checked_frame_detections", "VIDEO", "FRAME", "LABEL", "SCORE", "BOX", "NUM_COLUMNS",
           "TUBE_VIDEO", "TUBE_LABEL", "TUBE_SCORE", "TUBE_BOX_TUBE", "TUBE_BOX_FRAME", "TUBE_BOX_BOX"]

# the columns of ``frame_dets`` (N, 8): the file format; nothing outside this module indexes them by number
VIDEO, FRAME, LABEL, SCORE = 0, 1, 2, 3
BOX = slice(4, 8)  # x1, y1, x2, y2
NUM_COLUMNS = 8
# the columns of ``tubes`` (K, 3) and ``tube_boxes`` (P, 6)
TUBE_VIDEO, TUBE_LABEL, TUBE_SCORE = 0, 1, 2
TUBE_BOX_TUBE, TUBE_BOX_FRAME = 0, 1
TUBE_BOX_BOX = slice(2, 6)

_INT_FIELDS = ("video", "frame", "label")


def _as_int(name: str, values) -> np.ndarray:
    """``values`` (N,) as int64; a float that is not a finite integer is a ``ValueError`` naming the row."""
    a = np.asarray(values)
    if a.dtype.kind in "iub":
        return a.astype(np.int64, copy=False)
    a = np.asarray(a, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(a) | (a != np.trunc(a)))
    if len(bad):
        raise ValueError(f"FrameDetections.{name} row {bad[0]}: {float(a[bad[0]]):g} is not an integer")
    return a.astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class FrameDetections:
    """N per-frame detections, one named array a field (row i of each is detection i).

    Attributes:
        video: (N,) int64 position of the detection's video in the detections' ``videos`` list.
        frame: (N,) int64 frame number, 1-based.
        label: (N,) int64 action label, 0-based.
        score: (N,) float64 confidence.
        boxes: (N, 4) float64 ``x1, y1, x2, y2`` in pixels of the original frame.

    Fields are converted to those dtypes (integer fields given as floats must hold integers) and must agree in
    length. Never modified in place: ``dataclasses.replace`` gives a changed copy.
    """

    video: np.ndarray
    frame: np.ndarray
    label: np.ndarray
    score: np.ndarray
    boxes: np.ndarray

    def __post_init__(self):
        for name in _INT_FIELDS:
            object.__setattr__(self, name, _as_int(name, getattr(self, name)).reshape(-1))
        object.__setattr__(self, "score", np.asarray(self.score, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "boxes", np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        n = len(self.video)
        lengths = {name: len(getattr(self, name)) for name in ("frame", "label", "score", "boxes")}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"FrameDetections fields disagree in length: video {n}, "
                             + ", ".join(f"{k} {v}" for k, v in lengths.items()))

    @classmethod
    def empty(cls) -> "FrameDetections":
        """No detections."""
        return cls.from_rows(np.zeros((0, NUM_COLUMNS)))

    @classmethod
    def from_rows(cls, rows) -> "FrameDetections":
        """From interchange rows (N, 8) ``video_index, frame, label, score, x1, y1, x2, y2`` (float)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != NUM_COLUMNS:
            raise ValueError(f"detection rows must be an array (N, {NUM_COLUMNS}), got shape {rows.shape}")
        return cls(video=rows[:, VIDEO], frame=rows[:, FRAME], label=rows[:, LABEL],
                   score=rows[:, SCORE].copy(), boxes=np.ascontiguousarray(rows[:, BOX]))

    @classmethod
    def of(cls, dets) -> "FrameDetections":
        """``dets`` itself if it is a :class:`FrameDetections`, else ``from_rows(dets)`` (rows (N, 8))."""
        if isinstance(dets, cls):
            return dets
        return cls.from_rows(np.asarray(dets, dtype=np.float64).reshape(-1, NUM_COLUMNS))

    def to_rows(self) -> np.ndarray:
        """The interchange rows (N, 8) float64 (integers are exact in float64)."""
        rows = np.empty((len(self), NUM_COLUMNS))
        rows[:, VIDEO], rows[:, FRAME], rows[:, LABEL] = self.video, self.frame, self.label
        rows[:, SCORE], rows[:, BOX] = self.score, self.boxes
        return rows

    def __len__(self) -> int:
        return len(self.video)

    def select(self, index) -> "FrameDetections":
        """The detections at ``index``: a boolean mask (N,), integer positions (in that order) or a slice."""
        return FrameDetections(video=self.video[index], frame=self.frame[index], label=self.label[index],
                               score=self.score[index], boxes=self.boxes[index])

    @staticmethod
    def concat(parts: Sequence["FrameDetections"]) -> "FrameDetections":
        """The detections of ``parts``, one after the other."""
        parts = list(parts)
        if not parts:
            return FrameDetections.empty()
        return FrameDetections(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                                  for f in dataclasses.fields(FrameDetections)})

    def sorted_by_frame(self) -> "FrameDetections":
        """Sorted by video, frame, then descending score (stable: ties keep their order): a detection file's
        order."""
        return self.select(np.lexsort((-self.score, self.frame, self.video)))


def checked_frame_detections(videos: Sequence[str], frame_dets, gt: Optional[Mapping] = None,
                             source: str = "frame_dets") -> FrameDetections:
    """``frame_dets`` (rows (N, 8) or :class:`FrameDetections`) checked by ``check_detections`` against
    ``videos`` (and ``gt``), as :class:`FrameDetections`; inputs are not modified."""
    if isinstance(frame_dets, FrameDetections):
        rows = frame_dets.to_rows()
    else:
        rows = np.asarray(frame_dets, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != NUM_COLUMNS:
            raise ValueError(f"{source} must be an array (N, {NUM_COLUMNS}), got shape {rows.shape}")
    check_detections(Detections(videos=list(videos), frame_dets=rows), gt=gt, source=source)
    return FrameDetections.from_rows(rows)


@dataclasses.dataclass
class Detections:
    """Detections of a set of videos as in a file; see the module docstring for the columns. ``frame_dets`` may
    be given as :class:`FrameDetections`; it is kept as the (N, 8) rows."""

    videos: List[str]
    frame_dets: np.ndarray
    tubes: Optional[np.ndarray] = None
    tube_boxes: Optional[np.ndarray] = None

    def __post_init__(self):
        self.videos = [str(v) for v in self.videos]
        if isinstance(self.frame_dets, FrameDetections):
            self.frame_dets = self.frame_dets.to_rows()
        self.frame_dets = np.asarray(self.frame_dets, dtype=np.float64).reshape(-1, NUM_COLUMNS)
        if (self.tubes is None) != (self.tube_boxes is None):
            raise ValueError("tubes and tube_boxes go together: give both or neither")
        if self.tubes is not None:
            self.tubes = np.asarray(self.tubes, dtype=np.float64).reshape(-1, 3)
            self.tube_boxes = np.asarray(self.tube_boxes, dtype=np.float64).reshape(-1, 6)

    @property
    def per_frame(self) -> FrameDetections:
        """``frame_dets`` as :class:`FrameDetections` (a new object at each access)."""
        return FrameDetections.from_rows(self.frame_dets)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local file header; an empty zip's end record
_NPY_MAGIC = b"\x93NUMPY"
_EXPECTED = "expected an .npz archive holding videos and frame_dets (s3d_det.evaluation.detections)"


def load_detections(path: str) -> Detections:
    """Reads a detections ``.npz``. Raises ``FileNotFoundError`` when there is no such file, and ``DataError`` (a
    ``ValueError``) naming the file, and the key where there is one, for anything else: an empty file, a file of
    another format, an object array (it would need pickle, which is never used), a missing key, a key of the wrong
    shape or type (``frame_dets``, ``tubes`` and ``tube_boxes`` must be float arrays: integer scores would have
    been truncated), ``tubes`` without ``tube_boxes``, and the bad rows ``check_detections`` finds."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detections file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if not head:
        raise DataError(f"{path}: empty file (0 bytes); {_EXPECTED}")
    if head.startswith(_NPY_MAGIC):
        raise DataError(f"{path}: not a detections .npz: a single .npy array; {_EXPECTED}")
    if not head.startswith(_ZIP_MAGIC):
        with open(path, "rb") as f:
            start = f.read(16)
        raise DataError(f"{path}: not a detections .npz: not a zip archive (it starts with {start!r}); {_EXPECTED}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    # numpy's message advises allow_pickle=True, which would let the file run code: not passed on
                    raise DataError(f"{path}: key {key!r} holds Python objects (a pickled object array); expected "
                                    f"an array of {'strings' if key == 'videos' else 'floats'}") from None
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a detections .npz ({type(e).__name__}: {' '.join(str(e).split())}); "
                        f"{_EXPECTED}") from None
    for key in ("videos", "frame_dets"):
        if key not in arrays:
            raise DataError(f"{path}: missing key {key!r} (found {sorted(arrays)}); expected videos and frame_dets")
    videos = arrays["videos"]
    if videos.ndim != 1 or videos.dtype.kind not in "US":
        raise DataError(f"{path}: key 'videos' must be a 1-D array of strings, got {videos.dtype} {videos.shape}")
    for key, width in (("frame_dets", 8), ("tubes", 3), ("tube_boxes", 6)):
        if key in arrays:
            a = arrays[key]
            why = "" if a.dtype.kind == "f" else " (float64 in the format; integers would truncate the scores)"
            if why or a.ndim != 2 or a.shape[1] != width:
                raise DataError(f"{path}: key {key!r} must be a float array (n, {width}){why}, got {a.dtype} {a.shape}")
    for key, other in (("tubes", "tube_boxes"), ("tube_boxes", "tubes")):
        if key in arrays and other not in arrays:
            raise DataError(f"{path}: key {key!r} without {other!r}; expected both or neither")
    dets = Detections(
        videos=videos.tolist(),
        frame_dets=arrays["frame_dets"],
        tubes=arrays.get("tubes"),
        tube_boxes=arrays.get("tube_boxes"),
    )
    check_detections(dets, source=path)
    return dets


def save_detections(path: str, dets: Detections) -> None:
    """Writes ``dets`` as ``.npz`` atomically (a crash never leaves a half-written file)."""
    arrays = {"videos": np.asarray(dets.videos, dtype=str), "frame_dets": dets.frame_dets}
    if dets.tubes is not None:
        arrays.update(tubes=dets.tubes, tube_boxes=dets.tube_boxes)
    with atomic_write(path, ".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _first_bad_row(mask: np.ndarray) -> Optional[int]:
    rows = np.flatnonzero(mask)
    return int(rows[0]) if len(rows) else None


def _fail(source: str, key: str, row: int, what: str):
    raise ValueError(f"{source}: {key} row {row}: {what}")


def _check_rows(source: str, key: str, a: np.ndarray, *, num_videos: int, num_labels: Optional[int],
                video_col: Optional[int] = None, label_col: Optional[int] = None, frame_col: Optional[int] = None,
                box_cols: Optional[slice] = None) -> None:
    """The checks of one array of ``check_detections`` (``frame_dets``, ``tubes`` or ``tube_boxes``): finite
    values, then those of the columns given (None: the array has no such column)."""
    row = _first_bad_row(~np.isfinite(a).all(axis=1))
    if row is not None:
        _fail(source, key, row, f"non-finite value {a[row].tolist()}")
    if video_col is not None:
        v = a[:, video_col]
        row = _first_bad_row((v < 0) | (v >= num_videos) | (v != np.floor(v)))
        if row is not None:
            _fail(source, key, row, f"video index {v[row]:g} outside 0..{num_videos - 1} (the 'videos' array)")
    if label_col is not None:
        lab = a[:, label_col]
        bad = (lab < 0) | (lab != np.floor(lab))
        if num_labels is not None:
            bad |= lab >= num_labels
        row = _first_bad_row(bad)
        if row is not None:
            limit = f"0..{num_labels - 1}" if num_labels is not None else "a non-negative integer"
            _fail(source, key, row, f"label {lab[row]:g} out of range (expected {limit})")
    if frame_col is not None:
        f = a[:, frame_col]
        row = _first_bad_row((f < 1) | (f != np.floor(f)))
        if row is not None:
            _fail(source, key, row, f"frame {f[row]:g} is not a 1-based frame number")
    if box_cols is not None:
        x1, y1, x2, y2 = a[:, box_cols].T
        for bad, what in ((x2 < x1, "x2 < x1"), (y2 < y1, "y2 < y1")):
            row = _first_bad_row(bad)
            if row is not None:
                _fail(source, key, row, f"{what} in box {a[row, box_cols].tolist()}")


def _check_against_gt(dets: Detections, gt: Mapping, source: str) -> None:
    """``check_detections``' checks that need the ground truth: known videos, frames within each video."""
    d = dets.frame_dets
    unknown = [v for v in dets.videos if v not in gt["nframes"]]
    if unknown:
        index = dets.videos.index(unknown[0])
        if index in set(d[:, VIDEO].astype(np.int64).tolist()):
            _fail(source, "frame_dets", _first_bad_row(d[:, VIDEO] == index),
                  f"video {unknown[0]!r} is not in the ground truth")
        raise ValueError(f"{source}: videos[{index}] = {unknown[0]!r} is not in the ground truth")
    nframes = np.array([gt["nframes"][v] for v in dets.videos] or [0], dtype=np.float64)
    if len(d):
        row = _first_bad_row(d[:, FRAME] > nframes[d[:, VIDEO].astype(np.int64)])
        if row is not None:
            video = dets.videos[int(d[row, VIDEO])]
            _fail(source, "frame_dets", row,
                  f"frame {d[row, FRAME]:g} past the end of {video!r} ({gt['nframes'][video]} frames)")
    if dets.tubes is not None and len(dets.tube_boxes):
        video_of_row = dets.tubes[dets.tube_boxes[:, TUBE_BOX_TUBE].astype(np.int64), TUBE_VIDEO].astype(np.int64)
        row = _first_bad_row(dets.tube_boxes[:, TUBE_BOX_FRAME] > nframes[video_of_row])
        if row is not None:
            video = dets.videos[int(video_of_row[row])]
            _fail(source, "tube_boxes", row, f"frame {dets.tube_boxes[row, TUBE_BOX_FRAME]:g} past the end of "
                  f"{video!r} ({gt['nframes'][video]} frames)")


def check_detections(dets: Detections, gt: Optional[Mapping] = None, source: str = "detections") -> None:
    """Raises ``ValueError`` naming the first bad row and key: NaN or infinite values, a video index outside
    ``videos``, a frame below 1 or not an integer, a negative or fractional label, x2 < x1 or y2 < y1; with
    ``gt``: a video unknown to the ground truth, a label outside its label list, a frame past the video's end."""
    counts = dict(num_videos=len(dets.videos), num_labels=len(gt["labels"]) if gt is not None else None)
    _check_rows(source, "frame_dets", dets.frame_dets, video_col=VIDEO, label_col=LABEL, frame_col=FRAME,
                box_cols=BOX, **counts)
    if dets.tubes is not None:
        _check_rows(source, "tubes", dets.tubes, video_col=TUBE_VIDEO, label_col=TUBE_LABEL, **counts)
        t = dets.tube_boxes[:, TUBE_BOX_TUBE]
        row = _first_bad_row((t < 0) | (t >= len(dets.tubes)) | (t != np.floor(t)))
        if row is not None:
            _fail(source, "tube_boxes", row, f"tube index {t[row]:g} outside 0..{len(dets.tubes) - 1}")
        _check_rows(source, "tube_boxes", dets.tube_boxes, frame_col=TUBE_BOX_FRAME, box_cols=TUBE_BOX_BOX,
                    **counts)
    if gt is not None:
        _check_against_gt(dets, gt, source)
