"""Converters from the original dataset releases to the ACT ground-truth schema, and frame extraction.

Every converter returns a GT dict built with :func:`s3d_det.data.annotations.make_gt` (write it with
``save_gt``); video names are ``"<class>/<video>"``, tube rows ``frame (1-based), x1, y1, x2, y2`` in pixels.

* :func:`ucf24_from_annotations`: UCF101-24 corrected annotations (``finalAnnots.mat`` or ``pyannot*.pkl``)
  and a test list.
* :func:`jhmdb_from_release`: the JHMDB release (``puppet_mask/`` and ``splits/``), boxes from the masks.
* :func:`from_yowo_labels`: YOWO's per-frame label files (a folder or a .zip).
* :func:`extract_frames`: video files to ``<out_root>/Frames/<class>/<video>/00001.jpg, ...``.

Bad input raises ValueError or FileNotFoundError naming the file, video, tube, frame or line.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from collections import defaultdict
from typing import Dict, Iterator, List, Tuple

import cv2
import numpy as np
import scipy.io
from tqdm import tqdm

from s3d_det.checkpoint.io import safe_pickle_load
from s3d_det.data.annotations import make_gt

__all__ = [
    "JHMDB_CLASSES",
    "UCF24_CLASSES",
    "UCF24_RESOLUTION",
    "read_video_list",
    "ucf24_from_annotations",
    "jhmdb_from_release",
    "from_yowo_labels",
    "extract_frames",
]

JHMDB_CLASSES = (
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup",
    "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand", "swing_baseball", "throw", "walk",
    "wave",
)
UCF24_CLASSES = (
    "Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving", "Fencing",
    "FloorGymnastics", "GolfSwing", "HorseRiding", "IceDancing", "LongJump", "PoleVault", "RopeClimbing",
    "SalsaSpin", "SkateBoarding", "Skiing", "Skijet", "SoccerJuggling", "Surfing", "TennisSwing",
    "TrampolineJumping", "VolleyballSpiking", "WalkingWithDog",
)
UCF24_RESOLUTION = (240, 320)  # (h, w) of every UCF101-24 video; also of JHMDB's frames in YOWO's labels
JHMDB_SPLITS = 3
VIDEO_EXTENSIONS = (".avi", ".mp4")

logger = logging.getLogger(__name__)


def read_video_list(path: str) -> List[str]:
    """Video names ``"<class>/<video>"``, one a line (blank lines ignored, a trailing ``.avi`` dropped as in the
    UCF101 release's lists). Raises ValueError naming the file and line for a name listed twice or not of the
    form ``class/video``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video list not found: {path}")
    names: List[str] = []
    seen: Dict[str, int] = {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            name = line.strip()
            if not name:
                continue
            if name.endswith(".avi"):
                name = name[: -len(".avi")]
            if name.count("/") != 1 or name.startswith("/") or name.endswith("/"):
                raise ValueError(f"{path}, line {number}: expected a video name 'class/video', got {line.strip()!r}")
            if name in seen:
                raise ValueError(f"{path}, line {number}: {name} already listed on line {seen[name]}")
            seen[name] = number
            names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------- UCF101-24
# A tube as the readers hand it over: (label 0-based, first frame 1-based, last frame 1-based inclusive,
# boxes (n, 4) int64 [x y w h]).
_Tube = Tuple[int, int, int, np.ndarray]


def ucf24_from_annotations(path: str, testlist: str) -> dict:
    """UCF101-24 ground truth from G. Singh's corrected annotations and the test list of one split.

    Args:
        path: ``finalAnnots.mat`` (``annot`` 1 x V struct: ``name``, ``num_imgs``, ``tubes`` with ``sf``, ``ef``
            1-based inclusive, ``class`` 1..24, ``boxes`` n x 4 ``[x y w h]``) or ``pyannot*.pkl`` (``db``:
            name -> ``numf``, ``annotations`` with ``label`` 0-based, ``sf`` 0-based, ``ef`` exclusive,
            ``boxes``; plus ``classes``), loaded with the restricted unpickler.
        testlist: the split's test videos, one ``Class/v_Class_gXX_cYY`` a line (``testlist01.txt``).

    Returns:
        GT dict, one split: ``test_videos`` the test list in its order, ``train_videos`` every other annotated
        video in the file's order (the pickle's own ``trainvideos`` is not used: it names 6 videos that have no
        annotation). Boxes ``x1 = x, y1 = y, x2 = x + w, y2 = y + h`` (the community's conversion, computed
        in int64, never in the file's uint8/uint16), pixels of the 320x240 frames; labels are the class names
        (the pickle's ``classes``, or for the .mat the video-name prefix of each class index).

    Raises ValueError naming the video and tube when a tube's box rows are not ``last - first + 1`` or its
    frames leave ``1..nframes``, and naming the video when a test-list video has no annotation.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"UCF101-24 annotation file not found: {path}")
    if path.endswith(".mat"):
        labels, videos = _read_ucf24_mat(path)
    elif path.endswith(".pkl"):
        labels, videos = _read_ucf24_pyannot(path)
    else:
        raise ValueError(f"{path}: expected finalAnnots.mat or a pyannot .pkl")
    test = read_video_list(testlist)
    missing = [v for v in test if v not in videos]
    if missing:
        raise ValueError(f"{testlist}: {len(missing)} test videos have no annotation in {path}, e.g. {missing[:5]}")

    gttubes: Dict[str, Dict[int, List[np.ndarray]]] = {}
    for video, (nframes, tubes) in videos.items():
        per_label: Dict[int, List[np.ndarray]] = defaultdict(list)
        for index, (label, first, last, boxes) in enumerate(tubes):
            where = f"{path}: {video}, tube {index} (0-based)"
            if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != last - first + 1:
                raise ValueError(f"{where}: frames {first}..{last} need {last - first + 1} box rows [x y w h], "
                                 f"got an array of shape {boxes.shape}")
            if not 1 <= first <= last <= nframes:
                raise ValueError(f"{where}: frames {first}..{last} outside the video's 1..{nframes}")
            if not 0 <= label < len(labels):
                raise ValueError(f"{where}: class {label + 1} outside 1..{len(labels)}")
            frames = np.arange(first, last + 1, dtype=np.int64)[:, None]
            corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
            per_label[label].append(np.concatenate([frames, corners], axis=1))
        gttubes[video] = dict(per_label)
    test_set = set(test)
    return make_gt(
        labels=labels,
        nframes={v: n for v, (n, _) in videos.items()},
        resolution={v: UCF24_RESOLUTION for v in videos},
        gttubes=gttubes,
        train_videos=[v for v in videos if v not in test_set],
        test_videos=test,
    )


def _mat_int(value, where: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{where}: expected one number, got {array!r}")
    return int(array.astype(np.int64).item())


def _read_ucf24_mat(path: str) -> Tuple[List[str], Dict[str, Tuple[int, List[_Tube]]]]:
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for unreadable files
        raise ValueError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    annot = mat.get("annot")
    if annot is None or annot.dtype.names is None or not {"name", "num_imgs", "tubes"} <= set(annot.dtype.names):
        raise ValueError(f"{path}: expected a struct array 'annot' with fields name, num_imgs, tubes")
    videos: Dict[str, Tuple[int, List[_Tube]]] = {}
    class_names: Dict[int, str] = {}
    for i, entry in enumerate(annot.ravel()):
        raw_name = np.asarray(entry["name"]).ravel()
        name = str(raw_name[0]) if raw_name.size == 1 else ""
        if name.count("/") != 1:
            raise ValueError(f"{path}: annot({i + 1}).name: expected 'Class/video', got {raw_name!r}")
        folder = name.split("/")[0]
        if name in videos:
            raise ValueError(f"{path}: {name} annotated twice (annot({i + 1}))")
        tubes: List[_Tube] = []
        for j, tube in enumerate(np.asarray(entry["tubes"]).ravel()):
            where = f"{path}: {name}, tube {j} (0-based)"
            cls = _mat_int(tube["class"], f"{where}: class")
            known = class_names.setdefault(cls, folder)
            if known != folder:
                raise ValueError(f"{where}: class {cls} is {known!r} elsewhere, but this video is in {folder!r}")
            tubes.append((cls - 1, _mat_int(tube["sf"], f"{where}: sf"), _mat_int(tube["ef"], f"{where}: ef"),
                          np.asarray(tube["boxes"]).astype(np.int64)))
        videos[name] = (_mat_int(entry["num_imgs"], f"{path}: {name}: num_imgs"), tubes)
    absent = sorted(set(range(1, max(class_names, default=0) + 1)) - set(class_names))
    if absent or not class_names:
        raise ValueError(f"{path}: classes {absent} have no tube, so their names are unknown")
    return [class_names[c] for c in sorted(class_names)], videos


def _read_ucf24_pyannot(path: str) -> Tuple[List[str], Dict[str, Tuple[int, List[_Tube]]]]:
    data = safe_pickle_load(path)
    if not isinstance(data, dict) or "db" not in data or "classes" not in data:
        raise ValueError(f"{path}: expected a dict with keys 'db' and 'classes' (pyannot.pkl)")
    videos: Dict[str, Tuple[int, List[_Tube]]] = {}
    for name, entry in data["db"].items():
        name = str(name)  # numpy.str_ in the released file
        try:
            tubes = [(int(a["label"]), int(a["sf"]) + 1, int(a["ef"]), np.asarray(a["boxes"]).astype(np.int64))
                     for a in entry["annotations"]]
            videos[name] = (int(entry["numf"]), tubes)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: {name}: expected numf and annotations with label, sf, ef, boxes "
                             f"({type(e).__name__}: {e})") from None
    return [str(c) for c in data["classes"]], videos


# -------------------------------------------------------------------------------------------------------- JHMDB
def jhmdb_from_release(root: str, *, index_base: int = 1) -> dict:
    """JHMDB-21 ground truth (all 3 splits) from the official release.

    Layout: ``<root>/puppet_mask/<class>/<video>/puppet_mask.mat`` (key ``part_mask``, H x W x T, nonzero on
    the actor) and ``<root>/splits/<class>_test_split<k>.txt``, k = 1, 2, 3, lines ``<video>.avi 1|2``
    (1 = train, 2 = test). Classes are those of :data:`JHMDB_CLASSES` found under ``puppet_mask/``; ``labels``
    is always the 21 names in that order.

    One tube per video, label = its class, every frame 1..T, box = the mask's extent on that frame:
    ``x1 = min column, y1 = min row, x2 = max column, y2 = max row`` as pixel indices counted from
    ``index_base``. The default 1 is the MATLAB convention of the masks' own tools and what YOWO's JHMDB
    labels hold (their boxes reach x2 = 320 and y2 = 240 on 320x240 frames and never x1 or y1 = 0);
    ``index_base=0`` gives numpy indices. ``nframes`` = T, ``resolution`` = (H, W).

    Split lists keep the split files' order, classes in label order. Raises FileNotFoundError for a missing
    split file, ValueError for a mask file without ``part_mask``, an empty mask frame (naming video and frame),
    a video listed in a split file without a mask, a masked video missing from a split file, or a bad line.
    """
    if index_base not in (0, 1):
        raise ValueError(f"index_base must be 0 or 1, got {index_base!r}")
    mask_root = os.path.join(root, "puppet_mask")
    if not os.path.isdir(mask_root):
        raise FileNotFoundError(f"JHMDB release: {mask_root} not found")
    unknown = sorted(set(os.listdir(mask_root)) - set(JHMDB_CLASSES))
    if unknown:
        raise ValueError(f"{mask_root}: folders {unknown} are not JHMDB classes {list(JHMDB_CLASSES)}")
    classes = [c for c in JHMDB_CLASSES if os.path.isdir(os.path.join(mask_root, c))]
    if not classes:
        raise ValueError(f"{mask_root}: no class folders")

    nframes, resolution, gttubes = {}, {}, {}
    train: List[List[str]] = [[] for _ in range(JHMDB_SPLITS)]
    test: List[List[str]] = [[] for _ in range(JHMDB_SPLITS)]
    for cls in classes:
        masked = sorted(os.listdir(os.path.join(mask_root, cls)))
        for video in masked:
            name = f"{cls}/{video}"
            boxes, resolution[name] = _mask_boxes(os.path.join(mask_root, cls, video, "puppet_mask.mat"), name,
                                                  index_base)
            nframes[name] = len(boxes)
            frames = np.arange(1, len(boxes) + 1, dtype=np.float64)[:, None]
            gttubes[name] = {JHMDB_CLASSES.index(cls): [np.concatenate([frames, boxes], axis=1)]}
        for k in range(JHMDB_SPLITS):
            split_file = os.path.join(root, "splits", f"{cls}_test_split{k + 1}.txt")
            listed = _read_jhmdb_split(split_file)
            for video, subset in listed.items():
                if video not in masked:
                    raise ValueError(f"{split_file}: {video} has no mask "
                                     f"{os.path.join(mask_root, cls, video, 'puppet_mask.mat')}")
                (train if subset == 1 else test)[k].append(f"{cls}/{video}")
            unlisted = [v for v in masked if v not in listed]
            if unlisted:
                raise ValueError(f"{split_file}: masked videos not listed: {unlisted[:5]}")
    return make_gt(labels=JHMDB_CLASSES, nframes=nframes, resolution=resolution, gttubes=gttubes,
                   train_videos=train, test_videos=test)


def _mask_boxes(path: str, video: str, index_base: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(boxes (T, 4) float64 x1, y1, x2, y2 = the mask's extent per frame, (H, W)) of one puppet_mask.mat."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{video}: mask file not found: {path}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for unreadable files
        raise ValueError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    if "part_mask" not in mat:
        raise ValueError(f"{path}: no key 'part_mask' (found {sorted(k for k in mat if not k.startswith('__'))})")
    mask = np.asarray(mat["part_mask"]) != 0
    if mask.ndim == 2:  # MATLAB drops a trailing singleton dimension: a one-frame video
        mask = mask[:, :, None]
    if mask.ndim != 3:
        raise ValueError(f"{path}: part_mask must be H x W x T, got shape {mask.shape}")
    rows, cols = mask.any(axis=1), mask.any(axis=0)  # (H, T), (W, T)
    empty = np.flatnonzero(~cols.any(axis=0))
    if len(empty):
        raise ValueError(f"{video}: empty mask on frames {(empty + 1).tolist()[:10]} (1-based) in {path}")
    height, width = rows.shape[0], cols.shape[0]
    x1, y1 = cols.argmax(axis=0), rows.argmax(axis=0)
    x2, y2 = width - 1 - cols[::-1].argmax(axis=0), height - 1 - rows[::-1].argmax(axis=0)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float64) + index_base, (height, width)


def _read_jhmdb_split(path: str) -> Dict[str, int]:
    """video (no extension) -> 1 (train) or 2 (test), in file order."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"JHMDB split file not found: {path}")
    listed: Dict[str, int] = {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("1", "2") or not fields[0].endswith(".avi"):
                raise ValueError(f"{path}, line {number}: expected '<video>.avi 1|2', got {line.strip()!r}")
            video = fields[0][: -len(".avi")]
            if video in listed:
                raise ValueError(f"{path}, line {number}: {video} listed twice")
            listed[video] = int(fields[1])
    return listed


# ------------------------------------------------------------------------------------------------- YOWO labels
_LABEL_NAME = re.compile(r"(?P<stem>.+)_(?P<frame>\d{5})\.txt")


def from_yowo_labels(path: str, *, dataset: str = "jhmdb", testlist: str | None = None) -> dict:
    """Ground truth from YOWO's per-frame label files, in a folder (searched recursively) or a .zip.

    Files are ``<class>_<video>_<%05d>.txt``, the class matched against the dataset's class names (longest
    first, since names hold underscores), each line ``cls x1 y1 x2 y2`` with ``cls`` 1-based; boxes are taken
    as written (pixels of 320x240 frames; YOWO's JHMDB files count pixels from 1). Each video must list every
    frame 1..n (a file may hold no line: a frame without box); ``nframes`` = n, ``resolution`` = (240, 320).

    Tubes: per (video, label), the k-th box of that label in a frame (line order) continues the k-th track,
    and a track is cut where frames stop being consecutive. The files carry no actor identity, so with several
    actors of one class this is an assumption (frame-level boxes are exact either way).

    Split: with ``testlist`` (``class/video`` lines), its videos are ``test_videos`` (each must be in the labels)
    and the others ``train_videos``; without it every video is a test video. Video names ``<class>/<video>``.

    Raises ValueError naming the file for an unknown class prefix or a name not ending ``_<5 digits>.txt``,
    the file and line for a malformed line, and the videos and missing frames when a video has gaps (YOWO's
    UCF101-24 folders list only the frames with boxes: convert those from ``finalAnnots.mat`` instead).
    """
    classes = {"jhmdb": JHMDB_CLASSES, "ucf24": UCF24_CLASSES}.get(dataset)
    if classes is None:
        raise ValueError(f"dataset must be 'jhmdb' or 'ucf24', got {dataset!r}")
    by_length = sorted(classes, key=len, reverse=True)
    frames: Dict[str, Dict[int, List[Tuple[int, List[float]]]]] = defaultdict(dict)
    for source, text in _label_files(path):
        match = _LABEL_NAME.fullmatch(os.path.basename(source))
        if match is None:
            raise ValueError(f"{source}: expected a file name '<class>_<video>_<5-digit frame>.txt'")
        stem = match["stem"]
        cls = next((c for c in by_length if stem.startswith(c + "_") and len(stem) > len(c) + 1), None)
        if cls is None:
            raise ValueError(f"{source}: file name does not start with a {dataset} class name and '_'")
        frames[f"{cls}/{stem[len(cls) + 1:]}"][int(match["frame"])] = _parse_label_lines(text, source, len(classes))

    gaps = []
    for video, listed in sorted(frames.items()):
        missing = sorted(set(range(1, max(listed) + 1)) - set(listed))
        if missing:
            gaps.append(f"{video} (frames {missing[:5]}{' ...' if len(missing) > 5 else ''} of 1..{max(listed)})")
    if gaps:
        raise ValueError(f"{path}: {len(gaps)} videos do not list every frame from 1: " + "; ".join(gaps[:10]))

    gttubes = {video: _link_tracks(listed) for video, listed in frames.items()}
    videos = sorted(frames)
    if testlist is None:
        train, test = [], videos
    else:
        test = read_video_list(testlist)
        absent = [v for v in test if v not in frames]
        if absent:
            raise ValueError(f"{testlist}: {len(absent)} test videos have no label files in {path}, e.g. {absent[:5]}")
        test_set = set(test)
        train = [v for v in videos if v not in test_set]
    return make_gt(labels=classes, nframes={v: max(frames[v]) for v in videos},
                   resolution={v: UCF24_RESOLUTION for v in videos}, gttubes=gttubes,
                   train_videos=train, test_videos=test)


def _label_files(path: str) -> Iterator[Tuple[str, str]]:
    """(name to report, text) of every file, sorted; directories are walked, zips read in place."""
    if os.path.isdir(path):
        found = sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)
        for file in found:
            with open(file) as f:
                yield file, f.read()
    elif os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for member in sorted(m for m in z.namelist() if not m.endswith("/")):
                yield f"{path}:{member}", z.read(member).decode()
    else:
        raise FileNotFoundError(f"YOWO labels: {path} is neither a folder nor a .zip file")


def _parse_label_lines(text: str, source: str, num_classes: int) -> List[Tuple[int, List[float]]]:
    """[(label 0-based, [x1, y1, x2, y2])] of one file; blank lines hold nothing."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 5 or not values[0].is_integer() or not 1 <= values[0] <= num_classes:
            raise ValueError(f"{source}, line {number}: expected 'cls x1 y1 x2 y2' with cls in 1..{num_classes}, "
                             f"got {line.strip()!r}")
        boxes.append((int(values[0]) - 1, values[1:]))
    return boxes


def _link_tracks(listed: Dict[int, List[Tuple[int, List[float]]]]) -> Dict[int, List[np.ndarray]]:
    """label -> tubes (n, 5) of one video; see :func:`from_yowo_labels` for the rule."""
    tracks: Dict[Tuple[int, int], List[List[float]]] = defaultdict(list)
    for frame in sorted(listed):
        seen: Dict[int, int] = defaultdict(int)
        for label, box in listed[frame]:
            tracks[(label, seen[label])].append([frame, *box])
            seen[label] += 1
    tubes: Dict[int, List[np.ndarray]] = defaultdict(list)
    for (label, _), rows in sorted(tracks.items()):
        rows = np.asarray(rows, dtype=np.float64)
        cuts = np.flatnonzero(np.diff(rows[:, 0]) != 1) + 1
        tubes[label].extend(np.split(rows, cuts))
    return dict(tubes)


# ------------------------------------------------------------------------------------------------------ frames
def extract_frames(videos_root: str, out_root: str, *, jpeg_quality: int = 95, progress: bool = True) -> dict:
    """Decodes every ``<videos_root>/<class>/<video>.avi|.mp4`` with OpenCV into
    ``<out_root>/Frames/<class>/<video>/00001.jpg, 00002.jpg, ...`` (frames as decoded, BGR, JPEG quality
    ``jpeg_quality``).

    Resumable: a video's frames are written into a temporary folder beside the final one, with a ``.done``
    marker holding the frame count, and renamed into place when complete. A folder whose marker is present and
    matches its JPEG count is skipped; anything else there (a partial or damaged folder) is redone.

    Every frame that decodes is written, whatever the container header announces (``CAP_PROP_FRAME_COUNT``
    counts more frames than decode in files cut short, or fewer): a header that disagrees is reported by a
    one-line warning naming the file and both counts.

    Returns ``{"videos": n, "extracted": n, "skipped": n, "frames": total frames of all videos}``.
    Raises FileNotFoundError when no video is found, ValueError naming a file OpenCV cannot decode (or that
    yields no frame), or two files for one video (``x.avi`` and ``x.mp4``).
    """
    videos = _find_videos(videos_root)
    counts = {"videos": len(videos), "extracted": 0, "skipped": 0, "frames": 0}
    for name, file in tqdm(videos, desc="extracting frames", unit="video", disable=not progress):
        target = os.path.join(out_root, "Frames", name)
        done = _complete_count(target)
        if done is not None:
            counts["skipped"] += 1
            counts["frames"] += done
            continue
        tmp = os.path.join(os.path.dirname(target), f".tmp_{os.path.basename(target)}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            n = _decode_to_jpegs(file, tmp, jpeg_quality)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with open(os.path.join(tmp, ".done"), "w") as f:
            f.write(f"{n}\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        counts["extracted"] += 1
        counts["frames"] += n
    return counts


def _find_videos(videos_root: str) -> List[Tuple[str, str]]:
    """[("class/video", file)] sorted by name."""
    if not os.path.isdir(videos_root):
        raise FileNotFoundError(f"videos folder not found: {videos_root}")
    found: Dict[str, str] = {}
    for cls in sorted(os.listdir(videos_root)):
        folder = os.path.join(videos_root, cls)
        if not os.path.isdir(folder):
            continue
        for file in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(file)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            name = f"{cls}/{stem}"
            if name in found:
                raise ValueError(f"two files for video {name}: {found[name]} and {os.path.join(folder, file)}")
            found[name] = os.path.join(folder, file)
    if not found:
        raise FileNotFoundError(f"no videos ({'/'.join(VIDEO_EXTENSIONS)}) under {videos_root}/<class>/")
    return sorted(found.items())


def _complete_count(folder: str) -> int | None:
    """The frame count of a completely extracted folder, or None."""
    try:
        with open(os.path.join(folder, ".done")) as f:
            n = int(f.read().strip())
    except (OSError, ValueError):
        return None
    names = {f for f in os.listdir(folder) if f.endswith(".jpg")}
    return n if names == {f"{i:05d}.jpg" for i in range(1, n + 1)} else None


def _decode_to_jpegs(file: str, folder: str, jpeg_quality: int) -> int:
    capture = cv2.VideoCapture(file)
    try:
        if not capture.isOpened():
            raise ValueError(f"{file}: OpenCV cannot open this video")
        header = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        n = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            n += 1
            out = os.path.join(folder, f"{n:05d}.jpg")
            if not cv2.imwrite(out, frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise ValueError(f"{file}: could not write frame {n} to {out}")
    finally:
        capture.release()
    if n == 0:
        raise ValueError(f"{file}: OpenCV decoded no frame from this video (its header announces {header})")
    if n != header:
        with tqdm.external_write_mode():  # on its own line, not after the progress bar's
            logger.warning("video file %s: its header announces %d frames, %d decode: extracted the %d that decode",
                           file, header, n, n)
    return n
