"""The detections interchange format (``.npz``), shared by the evaluation, the tools and inference.

Keys:

- ``videos`` (M,) str: video names ``"<class>/<video>"``; rows refer to them by position.
- ``frame_dets`` (N, 8) float64: ``video_index, frame (1-based), label (0-based), score, x1, y1, x2, y2``,
  boxes in pixels of the original frame.
- optional, for video-mAP: ``tubes`` (K, 3) float64 ``video_index, label, score`` and ``tube_boxes`` (P, 6)
  float64 ``tube_index, frame, x1, y1, x2, y2`` (one row per frame of each tube, frames increasing).

Files are read with ``numpy.load(allow_pickle=False)``: a detection file never runs code. A file that is not
such an archive (empty, text, a pickle, a single ``.npy``), an object array, a key of the wrong shape or an integer
``frame_dets`` (its scores would be truncated) is a ``DataError`` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import List, Mapping, Optional

import numpy as np

from s3d_det.data.errors import DataError
from s3d_det.utils.io import atomic_write

__all__ = ["Detections", "load_detections", "save_detections", "check_detections"]


@dataclasses.dataclass
class Detections:
    """Detections of a set of videos; see the module docstring for the columns."""

    videos: List[str]
    frame_dets: np.ndarray
    tubes: Optional[np.ndarray] = None
    tube_boxes: Optional[np.ndarray] = None

    def __post_init__(self):
        self.videos = [str(v) for v in self.videos]
        self.frame_dets = np.asarray(self.frame_dets, dtype=np.float64).reshape(-1, 8)
        if (self.tubes is None) != (self.tube_boxes is None):
            raise ValueError("tubes and tube_boxes go together: give both or neither")
        if self.tubes is not None:
            self.tubes = np.asarray(self.tubes, dtype=np.float64).reshape(-1, 3)
            self.tube_boxes = np.asarray(self.tube_boxes, dtype=np.float64).reshape(-1, 6)


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


def check_detections(dets: Detections, gt: Optional[Mapping] = None, source: str = "detections") -> None:
    """Raises ``ValueError`` naming the first bad row and key: NaN or infinite values, a video index outside
    ``videos``, a frame below 1 or not an integer, a negative or fractional label, x2 < x1 or y2 < y1; with
    ``gt``: a video unknown to the ground truth, a label outside its label list, a frame past the video's end."""
    d = dets.frame_dets
    names = np.asarray(dets.videos, dtype=object)
    num_labels = len(gt["labels"]) if gt is not None else None

    def fail(key: str, row: int, what: str):
        raise ValueError(f"{source}: {key} row {row}: {what}")

    def check_rows(key: str, a: np.ndarray, video_col: Optional[int], label_col: Optional[int],
                   frame_col: Optional[int], box_cols: Optional[int]):
        row = _first_bad_row(~np.isfinite(a).all(axis=1))
        if row is not None:
            fail(key, row, f"non-finite value {a[row].tolist()}")
        if video_col is not None:
            v = a[:, video_col]
            row = _first_bad_row((v < 0) | (v >= len(names)) | (v != np.floor(v)))
            if row is not None:
                fail(key, row, f"video index {v[row]:g} outside 0..{len(names) - 1} (the 'videos' array)")
        if label_col is not None:
            lab = a[:, label_col]
            bad = (lab < 0) | (lab != np.floor(lab))
            if num_labels is not None:
                bad |= lab >= num_labels
            row = _first_bad_row(bad)
            if row is not None:
                limit = f"0..{num_labels - 1}" if num_labels is not None else "a non-negative integer"
                fail(key, row, f"label {lab[row]:g} out of range (expected {limit})")
        if frame_col is not None:
            f = a[:, frame_col]
            row = _first_bad_row((f < 1) | (f != np.floor(f)))
            if row is not None:
                fail(key, row, f"frame {f[row]:g} is not a 1-based frame number")
        if box_cols is not None:
            x1, y1, x2, y2 = a[:, box_cols:box_cols + 4].T
            row = _first_bad_row(x2 < x1)
            if row is not None:
                fail(key, row, f"x2 < x1 in box {a[row, box_cols:box_cols + 4].tolist()}")
            row = _first_bad_row(y2 < y1)
            if row is not None:
                fail(key, row, f"y2 < y1 in box {a[row, box_cols:box_cols + 4].tolist()}")

    check_rows("frame_dets", d, 0, 2, 1, 4)
    if dets.tubes is not None:
        check_rows("tubes", dets.tubes, 0, 1, None, None)
        t = dets.tube_boxes[:, 0]
        row = _first_bad_row((t < 0) | (t >= len(dets.tubes)) | (t != np.floor(t)))
        if row is not None:
            fail("tube_boxes", row, f"tube index {t[row]:g} outside 0..{len(dets.tubes) - 1}")
        check_rows("tube_boxes", dets.tube_boxes, None, None, 1, 2)
    if gt is not None:
        unknown = [v for v in dets.videos if v not in gt["nframes"]]
        if unknown:
            used = set(d[:, 0].astype(np.int64).tolist())
            index = dets.videos.index(unknown[0])
            if index in used:
                row = _first_bad_row(d[:, 0] == index)
                fail("frame_dets", row, f"video {unknown[0]!r} is not in the ground truth")
            raise ValueError(f"{source}: videos[{index}] = {unknown[0]!r} is not in the ground truth")
        nframes = np.array([gt["nframes"][v] for v in dets.videos] or [0], dtype=np.float64)
        if len(d):
            row = _first_bad_row(d[:, 1] > nframes[d[:, 0].astype(np.int64)])
            if row is not None:
                video = dets.videos[int(d[row, 0])]
                fail("frame_dets", row, f"frame {d[row, 1]:g} past the end of {video!r} ({gt['nframes'][video]} frames)")
        if dets.tubes is not None and len(dets.tube_boxes):
            video_of_row = dets.tubes[dets.tube_boxes[:, 0].astype(np.int64), 0].astype(np.int64)
            row = _first_bad_row(dets.tube_boxes[:, 1] > nframes[video_of_row])
            if row is not None:
                video = dets.videos[int(video_of_row[row])]
                fail("tube_boxes", row, f"frame {dets.tube_boxes[row, 1]:g} past the end of {video!r} "
                     f"({gt['nframes'][video]} frames)")
