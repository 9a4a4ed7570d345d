"""The official train/test lists of the video-classification datasets, read into one named type.

    UCF101        classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
    HMDB-51       <class>_test_split{1,2,3}.txt ("<video>.avi 1|2|0": 1 train, 2 test, 0 unused)
    Kinetics      the CSVs "label,youtube_id,time_start,time_end,split"; files <youtube_id>_<start:06d>_<end:06d>.mp4
    Something-Something v2   the labels JSON and the train / validation JSONs (left/right classes: no flip)

Each reader returns a ``VideoList``: the class names (in the dataset's official order), one ``VideoRecord`` per
listed video that is on disk, and for Kinetics the listed videos that are missing. A video is found as a folder of
frames ``<root>/Frames/<video>/`` or a video file; see each reader for the layouts looked at.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import DataError

__all__ = ["VideoRecord", "VideoList", "DATASET_NAMES", "read_ucf101", "read_hmdb51", "read_kinetics", "read_ssv2",
           "read_video_list"]


@dataclass(frozen=True)
class VideoRecord:
    """One listed video.

    Attributes:
        video: its id, as messages name it: the list's path without extension, e.g.
            ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01"``.
        path: where its frames are: a folder of numbered images or a video file (absolute, or relative to the
            working directory as the root was given).
        label: index into ``VideoList.classes``.
    """

    video: str
    path: str
    label: int


@dataclass
class VideoList:
    """A dataset split's videos.

    Attributes:
        dataset: "ucf101", "hmdb51", "kinetics", "ssv2" or "synthetic_clips".
        subset: "train" or "test".
        classes: class names, index = label.
        records: the videos, in the list's order.
        hflip: whether a horizontal flip keeps every label (False for Something-Something v2, whose classes
            name left and right).
        missing: listed videos not found on disk (left out of ``records``).
        sources: the list files read.
    """

    dataset: str
    subset: str
    classes: List[str]
    records: List[VideoRecord]
    hflip: bool = True
    missing: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)


DATASET_NAMES = ("ucf101", "hmdb51", "kinetics", "ssv2")
SUBSETS = ("train", "test")
SPLITS = (1, 2, 3)
FRAMES_DIR = "Frames"
VIDEOS_DIR = "Videos"
UCF101_LISTS_DIR, UCF101_VIDEOS_DIR = "ucfTrainTestlist", "UCF-101"
HMDB51_SPLITS_DIR, HMDB51_VIDEOS_DIR = "testTrainMulti_7030_splits", "hmdb51_org"
KINETICS_LISTS_DIR = "annotations"
KINETICS_LISTS = {"train": ("train.csv", "kinetics_train.csv"), "test": ("validate.csv", "val.csv", "kinetics_val.csv")}
KINETICS_VIDEO_EXTENSIONS = ("mp4", "mkv", "webm")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
SSV2_LISTS = (  # (folder under root, labels, train, test): the 20BN names and the Qualcomm release's labels/ folder
    ("", "something-something-v2-labels.json", "something-something-v2-train.json",
     "something-something-v2-validation.json"),
    ("labels", "labels.json", "train.json", "validation.json"),
)
SSV2_VIDEOS_DIR = "20bn-something-something-v2"


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}; got {subset!r}")


def _check_split(split: int) -> None:
    if isinstance(split, bool) or split not in SPLITS:
        raise ValueError(f"split must be 1, 2 or 3; got {split!r}")


class _Disk:
    """Existence checks through one cached directory listing per folder: a dataset of 10^5 videos in a few
    folders costs a few ``scandir`` calls, not 10^5 ``stat`` calls."""

    def __init__(self) -> None:
        self._dirs: Dict[str, Dict[str, bool]] = {}

    def _entries(self, folder: str) -> Dict[str, bool]:
        entries = self._dirs.get(folder)
        if entries is None:
            entries = {}
            try:
                with os.scandir(folder) as it:
                    for entry in it:  # symbolic links followed; a broken one is nothing
                        if entry.is_dir() or entry.is_file():
                            entries[entry.name] = entry.is_dir()
            except (FileNotFoundError, NotADirectoryError):
                pass
            self._dirs[folder] = entries
        return entries

    def kind(self, path: str) -> Optional[str]:
        """"dir", "file" or None (nothing there)."""
        folder, name = os.path.split(os.path.normpath(path))
        is_dir = self._entries(folder or ".").get(name)
        return None if is_dir is None else ("dir" if is_dir else "file")


def _find_video(disk: _Disk, root: str, video: str, files: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """The frame folder ``<root>/Frames/<video>`` if it exists, else the first of ``files`` (paths) that is a
    file. Returns (path or None, every path looked at)."""
    tried = [os.path.join(root, FRAMES_DIR, video)]
    if disk.kind(tried[0]) == "dir":
        return tried[0], tried
    for path in files:
        tried.append(path)
        if disk.kind(path) == "file":
            return path, tried
    return None, tried


def _missing_error(dataset: str, missing: List[Tuple[str, List[str]]], listed: int, source: str) -> FileNotFoundError:
    video, tried = missing[0]
    return FileNotFoundError(
        f"{dataset}: {len(missing)} of the {listed} videos listed in {source} are not on disk; the first, {video!r}, "
        f"was looked for as {' and '.join(tried)}")


def _first_dir_with(root: str, subdirs: Sequence[str], names: Sequence[str], what: str) -> str:
    """The first ``<root>/<subdir>`` (in order) holding every file of ``names``; FileNotFoundError naming every
    path looked at when none does."""
    tried = []
    for subdir in subdirs:
        folder = os.path.join(root, subdir) if subdir else root
        paths = [os.path.join(folder, name) for name in names]
        if all(os.path.isfile(p) for p in paths):
            return folder
        tried.extend(p for p in paths if not os.path.isfile(p))
    raise FileNotFoundError(f"{what} not found: looked for {', '.join(tried)}")


def _read_text(path: str) -> str:
    """The text of a list file (UTF-8, a byte-order mark allowed); DataError naming the line of a byte that is not
    UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: byte {data[e.start]:#04x} is not UTF-8 text; expected a UTF-8 "
                        f"list file") from None


def _lines(path: str):
    """(line number from 1, stripped line) for each non-blank line of a text list (any line ending)."""
    text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if line:
            yield number, line


def _no_extension(path: str) -> str:
    return os.path.splitext(path)[0]


# ---- UCF101 -----------------------------------------------------------------------------------------------------

def read_ucf101(root: str, *, split: int, subset: str) -> VideoList:
    """UCF101's official split ``split`` (1..3), ``subset`` "train" or "test".

    Lists: ``classInd.txt`` and ``trainlist0{split}.txt`` / ``testlist0{split}.txt`` in ``<root>/`` or
    ``<root>/ucfTrainTestlist/`` (the first of the two holding both files). Classes in ``classInd.txt`` order
    (its indices must run 1..101 in order); a train line's label must name its video's class folder, a test
    line's class is its folder. Videos (id ``"<Class>/<video>"``): ``<root>/Frames/<id>/``, else the list's path
    under ``<root>/UCF-101/``, ``<root>/Videos/`` or ``<root>/``. A listed video on none of them is an error
    (the official archive holds every listed video).
    """
    _check_split(split)
    _check_subset(subset)
    list_name = f"{'train' if subset == 'train' else 'test'}list0{split}.txt"
    folder = _first_dir_with(root, ("", UCF101_LISTS_DIR), ("classInd.txt", list_name), "UCF101 split lists")
    class_file, list_file = os.path.join(folder, "classInd.txt"), os.path.join(folder, list_name)

    classes: List[str] = []
    for number, line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{class_file} line {number}: expected '<index> <ClassName>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise DataError(f"{class_file} line {number}: class index {parts[0]}; expected {len(classes) + 1} "
                            f"(indices run 1..N in order)")
        if parts[1] in classes:
            raise DataError(f"{class_file} line {number}: class {parts[1]!r} is listed twice")
        classes.append(parts[1])
    if not classes:
        raise DataError(f"{class_file}: no classes; expected lines '<index> <ClassName>'")
    index = {name: i for i, name in enumerate(classes)}

    disk, records, missing, seen = _Disk(), [], [], {}
    for number, line in _lines(list_file):
        parts = line.split()
        expected = "'<Class>/<video>.avi <label>'" if subset == "train" else "'<Class>/<video>.avi'"
        if len(parts) != (2 if subset == "train" else 1) or parts[0].count("/") != 1 or "." not in parts[0]:
            raise DataError(f"{list_file} line {number}: expected {expected}, got {line!r}")
        rel = parts[0]
        video = _no_extension(rel)
        class_name = rel.split("/")[0]
        if class_name not in index:
            raise DataError(f"{list_file} line {number}: class {class_name!r} of video {video!r} is not in "
                            f"{class_file}")
        label = index[class_name]
        if subset == "train":
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise DataError(f"{list_file} line {number}: label {parts[1]!r} of video {video!r}; expected a "
                                f"class index 1..{len(classes)} of {class_file}")
            if int(parts[1]) - 1 != label:
                raise DataError(f"{list_file} line {number}: label {parts[1]} ({classes[int(parts[1]) - 1]}) of "
                                f"video {video!r} disagrees with its class folder {class_name!r} "
                                f"(index {label + 1} in {class_file})")
        if video in seen:
            raise DataError(f"{list_file} line {number}: video {video!r} is already listed on line {seen[video]}")
        seen[video] = number
        path, tried = _find_video(disk, root, video, [os.path.join(root, d, rel) if d else os.path.join(root, rel)
                                                      for d in (UCF101_VIDEOS_DIR, VIDEOS_DIR, "")])
        if path is None:
            missing.append((video, tried))
        else:
            records.append(VideoRecord(video=video, path=path, label=label))
    if not seen:
        raise DataError(f"{list_file}: no videos listed; expected one '<Class>/<video>.avi' a line")
    if missing:
        raise _missing_error("UCF101", missing, len(seen), list_file)
    return VideoList(dataset="ucf101", subset=subset, classes=classes, records=records, hflip=True,
                     sources=[class_file, list_file])


# ---- HMDB-51 ----------------------------------------------------------------------------------------------------

_HMDB_FLAGS = {"1": "train", "2": "test", "0": None}


def read_hmdb51(root: str, *, split: int, subset: str) -> VideoList:
    """HMDB-51's official split ``split`` (1..3), ``subset`` "train" or "test".

    Lists: the ``<class>_test_split{split}.txt`` files in ``<root>/testTrainMulti_7030_splits/`` or ``<root>/``
    (the first folder holding any); one line per video, ``"<video>.avi <flag>"``: 1 train, 2 test, 0 in
    neither (left out of both subsets). Classes: the classes of those files, sorted by name (the standard
    order). Videos (id ``"<class>/<video stem>"``): ``<root>/Frames/<id>/``, else ``<class>/<video>.avi`` under
    ``<root>/hmdb51_org/``, ``<root>/Videos/`` or ``<root>/``. A listed video on none of them is an error (the
    official archive holds every listed video).
    """
    _check_split(split)
    _check_subset(subset)
    suffix = f"_test_split{split}.txt"
    tried, folder, files = [], None, {}
    for subdir in (HMDB51_SPLITS_DIR, ""):
        folder = os.path.join(root, subdir) if subdir else root
        tried.append(os.path.join(folder, f"<class>{suffix}"))
        if os.path.isdir(folder):
            files = {name[:-len(suffix)]: os.path.join(folder, name) for name in os.listdir(folder)
                     if name.endswith(suffix) and len(name) > len(suffix)}
        if files:
            break
    if not files:
        raise FileNotFoundError(f"HMDB-51 split {split} lists not found: looked for {', '.join(tried)}")
    classes = sorted(files)

    disk, records, missing, seen, listed = _Disk(), [], [], {}, 0
    for label, class_name in enumerate(classes):
        list_file = files[class_name]
        for number, line in _lines(list_file):
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in _HMDB_FLAGS or not parts[0].endswith(".avi"):
                raise DataError(f"{list_file} line {number}: expected '<video>.avi 0|1|2' (1 train, 2 test, "
                                f"0 unused), got {line!r}")
            video = f"{class_name}/{_no_extension(parts[0])}"
            if video in seen:
                raise DataError(f"{list_file} line {number}: video {video!r} is already listed on line {seen[video]}")
            seen[video] = number
            if _HMDB_FLAGS[parts[1]] != subset:
                continue
            listed += 1
            rel = os.path.join(class_name, parts[0])
            path, tried = _find_video(disk, root, video, [os.path.join(root, d, rel) if d else os.path.join(root, rel)
                                                          for d in (HMDB51_VIDEOS_DIR, VIDEOS_DIR, "")])
            if path is None:
                missing.append((video, tried))
            else:
                records.append(VideoRecord(video=video, path=path, label=label))
    sources = [files[c] for c in classes]
    if not listed:
        flag = "1" if subset == "train" else "2"
        raise DataError(f"HMDB-51 split {split}: no videos in the {subset} subset (flag {flag}) in the "
                        f"{len(sources)} files {os.path.join(folder, '*' + suffix)}")
    if missing:
        raise _missing_error("HMDB-51", missing, listed,
                             f"the {len(sources)} files {os.path.join(folder, '*' + suffix)}")
    return VideoList(dataset="hmdb51", subset=subset, classes=classes, records=records, hflip=True, sources=sources)


# ---- Kinetics ---------------------------------------------------------------------------------------------------

def _find_kinetics_csv(root: str, subset: str) -> Tuple[Optional[str], List[str]]:
    tried = []
    for subdir in ("", KINETICS_LISTS_DIR):
        for name in KINETICS_LISTS[subset]:
            path = os.path.join(root, subdir, name) if subdir else os.path.join(root, name)
            tried.append(path)
            if os.path.isfile(path):
                return path, tried
    return None, tried


def _seconds(value: str, column: str, path: str, line: int) -> int:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        raise DataError(f"{path} line {line}: {column} {value!r}; expected whole seconds, at least 0")
    return int(number)


def _kinetics_rows(path: str) -> List[Tuple[int, str, str]]:
    """(line, label, video id) for each row of a Kinetics CSV; DataError for a bad header or row."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        return _kinetics_parse(path, reader)
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num}: {e}; expected a CSV row") from None


def _kinetics_parse(path: str, reader) -> List[Tuple[int, str, str]]:
    """(line, label, video id) for each row after the header line of a Kinetics CSV."""
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file; expected the header {','.join(KINETICS_COLUMNS)},split")
    header = [h.strip() for h in header]
    if "label" not in header and all(c in header for c in KINETICS_COLUMNS[1:]):
        raise DataError(f"{path}: no 'label' column (header: {','.join(header)}): the test CSVs of "
                        f"Kinetics-600/700 carry no labels, so their videos can be neither trained on nor "
                        f"scored; use the validation CSV for testing")
    absent = [c for c in KINETICS_COLUMNS if c not in header]
    if absent:
        raise DataError(f"{path} line 1: header {','.join(header)!r} lacks {', '.join(absent)}; expected "
                        f"{','.join(KINETICS_COLUMNS)},split")
    at = [header.index(c) for c in KINETICS_COLUMNS]
    rows = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields; expected {len(header)} "
                            f"({','.join(header)})")
        label, youtube_id, start, end = (row[i].strip() for i in at)
        if not label or not youtube_id:
            raise DataError(f"{path} line {line}: empty {'label' if not label else 'youtube_id'}")
        start_s = _seconds(start, "time_start", path, line)
        end_s = _seconds(end, "time_end", path, line)
        if end_s <= start_s:
            raise DataError(f"{path} line {line}: time_end {end} is not after time_start {start}")
        rows.append((line, label, f"{youtube_id}_{start_s:06d}_{end_s:06d}"))
    if not rows:
        raise DataError(f"{path}: no rows under the header; expected one video a line")
    return rows


def _index_videos(root: str, extensions: Sequence[str]) -> Dict[str, str]:
    """{file stem: path} of every file with one of ``extensions`` anywhere under ``root`` except
    ``<root>/Frames/``; DataError naming both files when two share a stem."""
    found: Dict[str, str] = {}
    suffixes = tuple("." + e for e in extensions)
    for folder, dirs, names in os.walk(root):
        if folder == root and FRAMES_DIR in dirs:
            dirs.remove(FRAMES_DIR)
        dirs.sort()
        for name in sorted(names):
            if name.endswith(suffixes):
                stem = name.rsplit(".", 1)[0]
                path = os.path.join(folder, name)
                if stem in found:
                    raise DataError(f"two video files of video {stem!r}: {found[stem]} and {path}; expected one "
                                    f"(remove the other)")
                found[stem] = path
    return found


def read_kinetics(root: str, *, subset: str, csv: Optional[str] = None, train_csv: Optional[str] = None) -> VideoList:
    """Kinetics-400/600/700 (any release with the CSVs ``label,youtube_id,time_start,time_end,split[,...]``).

    Lists: ``csv`` if given, else for "train" ``train.csv`` / ``kinetics_train.csv``, for "test" the validation
    CSV ``validate.csv`` / ``val.csv`` / ``kinetics_val.csv`` (the split results are reported on), first found in
    ``<root>/`` then ``<root>/annotations/``. A CSV without a ``label`` column (the test CSVs of Kinetics-600/700)
    is refused: it can be neither trained on nor scored. Classes: the sorted unique labels of the train CSV (the
    standard order), so train and test agree; for "test" the train CSV is ``train_csv`` if given, else found as
    above, and a test label not in it is an error.

    Videos (id ``"<youtube_id>_<start:06d>_<end:06d>"``, seconds): ``<root>/Frames/<id>/``, else a file
    ``<id>.mp4`` (or ``.mkv``, ``.webm``) anywhere under ``<root>`` (any folders: ``train/<label>/``,
    ``val/``, ``Videos/``, ...; ``<root>/Frames/`` is not searched; two files of one id are an error). Videos on
    neither (every copy of Kinetics lacks some) are left out and listed in ``VideoList.missing``.
    """
    _check_subset(subset)
    if subset == "train" and train_csv is not None:
        if csv is not None and os.path.abspath(csv) != os.path.abspath(train_csv):
            raise ValueError(f"read_kinetics(subset='train'): csv {csv} and train_csv {train_csv} differ; give one")
        csv = train_csv
    if csv is None:
        csv, tried = _find_kinetics_csv(root, subset)
        if csv is None:
            raise FileNotFoundError(f"Kinetics {subset} CSV not found: looked for {', '.join(tried)}")
    elif not os.path.isfile(csv):
        raise FileNotFoundError(f"Kinetics {subset} CSV {csv} does not exist")
    rows = _kinetics_rows(csv)
    if subset == "train":
        class_csv, class_rows = csv, rows
    else:
        if train_csv is None:
            train_csv, tried = _find_kinetics_csv(root, "train")
            if train_csv is None:
                raise FileNotFoundError(f"Kinetics train CSV (the class list of the test subset) not found: looked "
                                        f"for {', '.join(tried)}")
        elif not os.path.isfile(train_csv):
            raise FileNotFoundError(f"Kinetics train CSV {train_csv} (the class list) does not exist")
        class_csv, class_rows = train_csv, _kinetics_rows(train_csv)
    classes = sorted({label for _, label, _ in class_rows})
    index = {name: i for i, name in enumerate(classes)}

    disk, files = _Disk(), _index_videos(root, KINETICS_VIDEO_EXTENSIONS)
    records, missing = [], []
    for line, label, video in rows:
        if label not in index:
            raise DataError(f"{csv} line {line}: label {label!r} is not a class of the train CSV {class_csv}")
        folder = os.path.join(root, FRAMES_DIR, video)
        path = folder if disk.kind(folder) == "dir" else files.get(video)
        if path is None:
            missing.append(video)
        else:
            records.append(VideoRecord(video=video, path=path, label=index[label]))
    if not records:
        raise FileNotFoundError(f"Kinetics: none of the {len(rows)} videos of {csv} is under {root}: looked for "
                                f"{os.path.join(root, FRAMES_DIR, '<id>')}/ and files <id>.mp4|.mkv|.webm anywhere "
                                f"under {root}, e.g. {rows[0][2]}.mp4")
    sources = [csv] if class_csv == csv else [csv, class_csv]
    return VideoList(dataset="kinetics", subset=subset, classes=classes, records=records, hflip=True,
                     missing=missing, sources=sources)


# ---- Something-Something v2 -------------------------------------------------------------------------------------

def _load_json(path: str):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None


def _ssv2_class(template: str) -> str:
    return template.replace("[", "").replace("]", "").strip()


def read_ssv2(root: str, *, subset: str) -> VideoList:
    """Something-Something v2, ``subset`` "train" or "test" (the validation list: the test list has no labels).

    Lists: ``something-something-v2-{labels,train,validation}.json`` in ``<root>/``, or the release's
    ``<root>/labels/{labels,train,validation}.json`` (the first holding both needed files). Classes: the labels
    JSON ``{"<class>": "<index>"}``, ordered by index (0..173, each once). A video's class is its ``template``
    with the square brackets removed (``"Holding [something] next to [something]"`` -> ``"Holding something next
    to something"``). Videos (id: the entry's ``id``): ``<root>/Frames/<id>/``, else ``<id>.webm`` in
    ``<root>/20bn-something-something-v2/``, ``<root>/Videos/`` or ``<root>/``; a listed video on none of them
    is an error (the official archive holds every listed video). ``hflip`` is False: classes name left and right.
    """
    _check_subset(subset)
    tried, chosen = [], None
    for subdir, labels_name, train_name, test_name in SSV2_LISTS:
        folder = os.path.join(root, subdir) if subdir else root
        list_name = train_name if subset == "train" else test_name
        paths = [os.path.join(folder, labels_name), os.path.join(folder, list_name)]
        if all(os.path.isfile(p) for p in paths):
            chosen = paths
            break
        tried.extend(p for p in paths if not os.path.isfile(p))
    if chosen is None:
        raise FileNotFoundError(f"Something-Something v2 lists not found: looked for {', '.join(tried)}")
    labels_file, list_file = chosen

    labels = _load_json(labels_file)
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{labels_file}: expected a JSON object {{\"<class>\": \"<index>\", ...}}")
    by_index: Dict[int, str] = {}
    for name, value in labels.items():
        text = str(value)
        if isinstance(value, bool) or not text.isdigit():
            raise DataError(f"{labels_file}: class {name!r} has index {value!r}; expected a whole number")
        if int(text) in by_index:
            raise DataError(f"{labels_file}: classes {by_index[int(text)]!r} and {name!r} share index {text}")
        by_index[int(text)] = name
    if sorted(by_index) != list(range(len(by_index))):
        gap = next(i for i in range(len(by_index)) if i not in by_index)
        raise DataError(f"{labels_file}: no class has index {gap}; expected indices 0..{len(by_index) - 1}")
    classes = [by_index[i] for i in range(len(by_index))]
    index = {_ssv2_class(name): i for i, name in enumerate(classes)}

    entries = _load_json(list_file)
    if not isinstance(entries, list):
        raise DataError(f"{list_file}: expected a JSON list of {{\"id\", \"template\", ...}} objects")
    disk, records, missing, seen = _Disk(), [], [], {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)) \
                or not isinstance(entry.get("template"), str) or not str(entry["id"]).strip():
            raise DataError(f"{list_file} entry {i}: expected an object with string 'id' and 'template', "
                            f"got {json.dumps(entry)[:80]}")
        video = str(entry["id"]).strip()
        if "/" in video or "\\" in video or video in (".", ".."):
            raise DataError(f"{list_file} entry {i}: id {video!r} is not a file name")
        name = _ssv2_class(entry["template"])
        if name not in index:
            raise DataError(f"{list_file} entry {i}: label {name!r} (template {entry['template']!r}) of video "
                            f"{video!r} is not a class of {labels_file}")
        if video in seen:
            raise DataError(f"{list_file} entry {i}: video {video!r} is already listed as entry {seen[video]}")
        seen[video] = i
        path, tried = _find_video(disk, root, video, [os.path.join(root, d, f"{video}.webm") if d
                                                      else os.path.join(root, f"{video}.webm")
                                                      for d in (SSV2_VIDEOS_DIR, VIDEOS_DIR, "")])
        if path is None:
            missing.append((video, tried))
        else:
            records.append(VideoRecord(video=video, path=path, label=index[name]))
    if not seen:
        raise DataError(f"{list_file}: no entries; expected a JSON list of videos")
    if missing:
        raise _missing_error("Something-Something v2", missing, len(seen), list_file)
    return VideoList(dataset="ssv2", subset=subset, classes=classes, records=records, hflip=False,
                     sources=[labels_file, list_file])


# ---- dispatch ---------------------------------------------------------------------------------------------------

def read_video_list(dataset: str, root: str, *, split: Optional[int] = 1, subset: str, **kwargs) -> VideoList:
    """The ``subset`` ("train" / "test") of ``dataset`` (one of ``DATASET_NAMES``) under ``root``: UCF101 and
    HMDB-51 take ``split`` 1..3; Kinetics and Something-Something v2 have one split (``split`` must be 1 or
    None). ``kwargs`` go to the reader (Kinetics: ``csv``, ``train_csv``)."""
    name = dataset.lower() if isinstance(dataset, str) else dataset
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown classification dataset {dataset!r}; expected one of {', '.join(DATASET_NAMES)}")
    if name in ("ucf101", "hmdb51"):
        reader = read_ucf101 if name == "ucf101" else read_hmdb51
        return reader(root, split=split, subset=subset, **kwargs)
    if split not in (None, 1):
        raise ValueError(f"{name} has one official split; got split {split!r} (expected 1)")
    reader = read_kinetics if name == "kinetics" else read_ssv2
    return reader(root, subset=subset, **kwargs)
