"""Frame sources: a folder of numbered images or a video file, read with OpenCV.

Both give ``num_frames``, ``size`` (h, w) and ``read(frames) -> {frame: (H,W,3) uint8 RGB}`` with frame
numbers from 1 (the GT schema's). Sources open nothing until first used and drop OpenCV handles when
pickled, so a Dataset can hold them and still go to DataLoader workers.

A ``FrameCache`` given to a source keeps its decoded frames in memory (least recently used dropped first,
within a byte budget): training reads each frame once per clip that holds it, T times an epoch. The same class
holds video inference's resized frames of the current step (``FrameCache.read``).

Bad frames are a ``DataError`` naming the file and what was expected: an image file that is empty, a JPEG
cut short (no end-of-image marker ``FFD9`` at its end; OpenCV would return a partly grey frame and only print
a warning naming no file), a PNG without its closing ``IEND`` chunk, an image OpenCV cannot decode, or a frame
whose size differs from the video's (the ground truth's ``resolution`` where the caller gives it with
``expect_size``, else the first frame read). The truncation check looks only at the last bytes of the file
already read for decoding: no second read, no second decode.

A video file's ``num_frames`` is the number of frames that decode, not its header's count
(``count_video_frames``, once per file and process).

Counters, for tests and benchmarks: ``decode_count`` (frames the decoder produced: image files read, or
video frames grabbed, including those stepped over; not the grabs that count a video's frames) and
``decode_seconds`` (time spent inside OpenCV reading and decoding them).
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from collections import OrderedDict
from typing import Callable, Dict, Hashable, Iterable, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from .errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["FrameCache", "FrameSource", "ImageFolderSource", "VideoFileSource", "open_frames", "find_frames",
           "frame_numbers", "image_file_problem", "count_video_frames", "usable_fps", "IMAGE_EXTENSIONS",
           "VIDEO_EXTENSIONS"]

IMAGE_EXTENSIONS = ("jpg", "png")
VIDEO_EXTENSIONS = ("avi", "mp4")
_FRAME_NAME = re.compile(r"^(\d{5,})\.(jpg|png)$")
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"  # SOI, EOI markers
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"  # signature; IEND chunk type and its CRC
_TAIL = 64  # bytes looked at for the end marker (zero bytes after it, padding some writers add, are allowed)


def _image_bytes_problem(head: bytes, tail: bytes, nbytes: int) -> Optional[Tuple[str, str]]:
    """What is wrong with an image file, judged from its first bytes, its last ``_TAIL`` bytes and its length in
    bytes: (what, why), e.g. ("truncated JPEG", "it does not end with ..."); None when it looks whole. The format
    is told by the file's signature, not its name; a file of neither format is left to the decoder."""
    if nbytes == 0:
        return "empty file", "0 bytes"
    tail = tail.rstrip(b"\x00")
    if head.startswith(_JPEG_START) and not tail.endswith(_JPEG_END):
        return "truncated JPEG", "it does not end with the end-of-image marker FFD9"
    if head.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        return "truncated PNG", "it does not end with the IEND chunk"
    return None


MAX_FPS = 1000.0  # a header rate above this is taken for a broken header, not a real video


def usable_fps(rate) -> Optional[float]:
    """``rate`` (frames per second, e.g. a header's ``CAP_PROP_FPS``) when it is a usable one, finite and in
    (0, ``MAX_FPS``]; else None (0, NaN, negative or absurd: a broken or missing header)."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        return None
    return rate if math.isfinite(rate) and 0 < rate <= MAX_FPS else None


def image_file_problem(path: str) -> Optional[str]:
    """What is wrong with the image file ``path`` ("truncated JPEG: it does not end with ..."), judged from its
    first and last bytes only (cheap enough to check every frame of a dataset; a file cut short is found, damage
    inside it is not); None when it looks whole. OSError when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(len(_PNG_START))
        nbytes = f.seek(0, os.SEEK_END)
        f.seek(max(0, nbytes - _TAIL))
        problem = _image_bytes_problem(head, f.read(), nbytes)
    return None if problem is None else f"{problem[0]}: {problem[1]}"


class FrameCache:
    """Decoded frames in memory: the one frame cache of the toolkit, for both of its uses.

    - The datasets' raw frames (``FrameSource.cache``, ``DATALOADER.FRAME_CACHE_MB``): a budget of ``max_bytes``,
      the least recently used frames dropped first. Training reads each frame once per clip that holds it.
    - Video inference's step window (``engine.inference.VideoDetector``): ``read(source, frames, prepare=resize,
      retain=True)`` holds exactly the frames of the current step, prepared (resized) once; frames shared with
      the previous step are not decoded again, the others are decoded in one call in increasing order (a video
      file is read forwards), and memory does not grow with the video.

    Keys are (source path, frame number, tag): ``tag`` tells prepared frames from raw ones (None). Stored arrays
    are made read-only, so a caller that would change a cached frame in place fails loudly instead of corrupting
    later reads. Each process has its own cache (a pickled cache arrives empty, with its budget), so with
    DataLoader workers the budget holds per worker. ``hits`` and ``misses`` count lookups, ``max_held`` the most
    frames held at once.

    Args:
        max_bytes (int, optional): the budget in bytes; None: none (``read(..., retain=True)`` bounds it).
    """

    def __init__(self, max_bytes: Optional[int] = None):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = self.max_held = 0
        self._frames: "OrderedDict[Hashable, np.ndarray]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key: Hashable) -> Optional[np.ndarray]:
        array = self._frames.get(key)
        if array is None:
            self.misses += 1
            return None
        self.hits += 1
        self._frames.move_to_end(key)
        return array

    def put(self, key: Hashable, array: np.ndarray) -> None:
        """Keeps ``array`` (made read-only) under ``key``; one larger than the whole budget is not kept."""
        if self.max_bytes is not None and array.nbytes > self.max_bytes:
            return
        old = self._frames.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        array.flags.writeable = False
        self._frames[key] = array
        self.nbytes += array.nbytes
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            self.nbytes -= self._frames.popitem(last=False)[1].nbytes
        self.max_held = max(self.max_held, len(self._frames))

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Drops every frame whose key is not in ``keys``."""
        keep = set(keys)
        for key in [k for k in self._frames if k not in keep]:
            self.nbytes -= self._frames.pop(key).nbytes

    def read(self, source: "FrameSource", frames: Iterable[int], *,
             prepare: Optional[Callable[[int, np.ndarray], np.ndarray]] = None, tag: Hashable = None,
             retain: bool = False) -> Dict[int, np.ndarray]:
        """{frame: array} for each distinct frame of ``frames`` of ``source``, in increasing order: those held
        under (``source.path``, frame, ``tag``) as they are, the others read with ``source.read`` (one call, in
        increasing order), passed through ``prepare(frame, image)`` (e.g. a resize; None: kept as read) and
        kept. ``retain=True`` first drops every frame not asked for in this call."""
        wanted = sorted({int(f) for f in frames})
        if retain:  # before decoding: the frames no longer needed are not held beside the new ones
            self.retain((source.path, f, tag) for f in wanted)
        out = {f: self.get((source.path, f, tag)) for f in wanted}
        missing = [f for f, array in out.items() if array is None]
        if missing:
            for f, image in source.read(missing).items():
                array = image if prepare is None else prepare(f, image)
                self.put((source.path, f, tag), array)
                out[f] = array
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_frames=OrderedDict(), nbytes=0, hits=0, misses=0, max_held=0)
        return state


class FrameSource:
    """Common interface. Subclasses set ``path`` and implement ``num_frames`` and ``_decode``."""

    path: str

    def __init__(self) -> None:
        self.decode_count = 0
        self.decode_seconds = 0.0
        self._size: Optional[Tuple[int, int]] = None
        self._expected: Optional[Tuple[Tuple[int, int], str]] = None  # (h, w) every frame must have, and whence
        self.cache: Optional[FrameCache] = None  # set to keep decoded frames (see FrameCache)

    @property
    def num_frames(self) -> int:
        raise NotImplementedError

    @property
    def size(self) -> Tuple[int, int]:
        """(h, w) in pixels; an image folder decodes frame 1 to learn it (counted in ``decode_count``)."""
        if self._size is None:
            self._size = self.read([1])[1].shape[:2]
        return self._size

    def expect_size(self, size: Tuple[int, int], origin: str) -> None:
        """Every frame read from now on must be ``size`` (h, w) pixels; ``origin`` names where that size comes
        from in error messages (e.g. "the ground truth's resolution of video 'walk/v1'"). Without it, the first
        frame read sets the size the others must have."""
        self._expected = ((int(size[0]), int(size[1])), origin)

    def _check_sizes(self, frames: Mapping[int, np.ndarray]) -> None:
        for frame, array in frames.items():
            if self._expected is None:
                self._expected = (array.shape[:2], f"the size of {self.frame_name(frame)}")
            elif array.shape[:2] != self._expected[0]:
                (h, w), origin = self._expected
                raise DataError(f"{self.frame_name(frame)} is {array.shape[0]}x{array.shape[1]} (h x w); expected "
                                f"{h}x{w}, {origin}: the frames of a video must all have one size")

    def read(self, frames: Sequence[int]) -> Dict[int, np.ndarray]:
        """Decodes each distinct frame of ``frames`` once, in increasing order.

        Args:
            frames: frame numbers, 1..num_frames; repeats allowed (they share one decode).
        Returns:
            {frame: (H,W,3) uint8 RGB array}, one entry per distinct frame. With a ``cache``, frames found
            there are not decoded again, and every returned array is the cached one: read-only.
        Raises ``DataError`` naming the frame for a truncated or undecodable image, or a frame of another size
        than the video's (see ``expect_size``).
        """
        wanted = sorted({int(f) for f in frames})
        n = self.num_frames
        bad = [f for f in wanted if not 1 <= f <= n]
        if bad:
            raise ValueError(f"{self.path}: frame {bad[0]} out of range; this source has frames 1..{n}")
        if self.cache is None:
            out = self._decode(wanted)
        else:
            out = {f: self.cache.get((self.path, f, None)) for f in wanted}
            missing = [f for f, array in out.items() if array is None]
            if missing:
                for f, array in self._decode(missing).items():
                    self.cache.put((self.path, f, None), array)
                    out[f] = array
        self._check_sizes(out)
        first = next(iter(out.values()), None)
        if first is not None and self._size is None:
            self._size = first.shape[:2]
        return out

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        raise NotImplementedError

    @property
    def fps(self) -> Optional[float]:
        """Frames per second, where the source records it (a video file's header); else None."""
        return None

    def frame_name(self, frame: int) -> str:
        """How a message names frame ``frame``: its image file, or the frame number and the video file."""
        return f"frame {frame} of {self.path}"

    def close(self) -> None:
        """Releases any open file handle (a later read reopens it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


def frame_numbers(folder: str) -> Dict[str, list]:
    """The frame numbers in ``folder`` by extension: ``{"jpg": [...], "png": [...]}`` from files named like
    ``00001.jpg``; other files are ignored."""
    numbers: Dict[str, list] = {ext: [] for ext in IMAGE_EXTENSIONS}
    for name in os.listdir(folder):
        m = _FRAME_NAME.match(name)
        if m:
            numbers[m.group(2)].append(int(m.group(1)))
    return numbers


class ImageFolderSource(FrameSource):
    """``<folder>/{:05d}.jpg`` (or ``.png``), frames numbered 1..n without gaps.

    The folder is listed on first use: the extension is detected (a folder holding both is refused) and
    the numbers must run 1..n; files not named like a frame are ignored.
    """

    def __init__(self, folder: str):
        super().__init__()
        self.path = folder
        self._ext: Optional[str] = None
        self._count = 0

    def _scan(self) -> None:
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"frame folder {self.path} does not exist")
        numbers = frame_numbers(self.path)
        found = [ext for ext in IMAGE_EXTENSIONS if numbers[ext]]
        if not found:
            raise FileNotFoundError(f"frame folder {self.path} holds no frames named like 00001.jpg or 00001.png")
        if len(found) > 1:
            raise ValueError(f"frame folder {self.path} mixes .jpg and .png frames; expected one extension")
        ext = found[0]
        got = sorted(numbers[ext])
        for expected, number in enumerate(got, start=1):
            if number != expected:
                raise ValueError(f"frame folder {self.path}: frame {expected:05d}.{ext} is missing "
                                 f"(frames must run 1..n without gaps; next found is {number:05d}.{ext})")
        self._ext, self._count = ext, len(got)

    @property
    def num_frames(self) -> int:
        if self._ext is None:
            self._scan()
        return self._count

    def frame_path(self, frame: int) -> str:
        if self._ext is None:
            self._scan()
        return os.path.join(self.path, f"{frame:05d}.{self._ext}")

    def frame_name(self, frame: int) -> str:
        return self.frame_path(frame)

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        out = {}
        for frame in wanted:
            path = self.frame_path(frame)
            start = time.perf_counter()
            with open(path, "rb") as f:
                data = f.read()
            problem = _image_bytes_problem(data[:len(_PNG_START)], data[-_TAIL:], len(data))
            if problem is not None:
                raise DataError(f"{path}: {problem[0]} (frame {frame}): {problem[1]}; expected a whole image file "
                                f"(extract this frame again)")
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"cannot decode image {path} (frame {frame}): expected a JPEG or PNG file OpenCV reads")
            out[frame] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second frame-size array
            self.decode_seconds += time.perf_counter() - start
            self.decode_count += 1
        return out


_COUNTS: Dict[Tuple[str, int, int], Tuple[int, int]] = {}  # (real path, bytes, mtime ns) -> (decodable, header)


def count_video_frames(path: str) -> Tuple[int, int]:
    """(frames that decode, the container header's count ``CAP_PROP_FRAME_COUNT``) of the video file ``path``.

    The true count is what decodes: the file is read through once with ``grab()`` (it decodes each frame,
    without the colour conversion: about as long as reading the file once, 0.05-0.15 s for 300 frames of a
    320x240 MPEG-4 part 2 file, 0.2-0.35 s for MJPG, measured on this project's 2-core CPU machine) and the
    result kept for this process, keyed by the file's real path, size and modification time, so a file is
    counted once however often it is opened (the datasets open a source per item). A header that disagrees is
    reported once, by a one-line warning naming the file and both counts. FileNotFoundError or ValueError naming
    the file when it is missing, OpenCV cannot open it or no frame decodes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file {path} does not exist")
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _COUNTS:
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise ValueError(f"OpenCV cannot open video file {path}")
            header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            count = 0
            while cap.grab():
                count += 1
        finally:
            cap.release()
        if count < 1:
            raise ValueError(f"video file {path}: no frame decodes (its header announces {header}); expected at "
                             f"least 1")
        if count != header:
            with tqdm.external_write_mode():  # on its own line, not after a progress bar's
                logger.warning("video file %s: its header announces %d frames, %d decode: using the %d that decode",
                               path, header, count, count)
        _COUNTS[key] = (count, header)
    return _COUNTS[key]


class VideoFileSource(FrameSource):
    """A video file (.avi, .mp4) read with ``cv2.VideoCapture``; frame k is the k-th decoded frame.

    ``num_frames`` is the number of frames that decode (``count_video_frames``: counted once per file and process
    with ``grab()``, a warning where the container header's ``CAP_PROP_FRAME_COUNT`` disagrees), never the
    header's count: real files announce more frames than they hold (cut short, broken muxers) or fewer.

    Frames are decoded in order. Between two wanted frames the decoder steps forward with ``grab()``
    (each grab decodes a frame and counts in ``decode_count``); a gap larger than ``seek_threshold``
    frames, or a wanted frame behind the current position, is reached with a seek
    (``CAP_PROP_POS_FRAMES``). Seeks are unreliable for some codecs and containers (they land on a keyframe, or
    past the target): a seek that lands before the target steps forward from where it landed; one that lands
    past it, or nowhere known, reopens the file and decodes forward from its first frame (slow, but right).
    A seek that reports the right position is trusted.
    ``fps`` is the header's rate where it is a usable one (``usable_fps``), else None with a one-line warning.
    """

    def __init__(self, path: str, seek_threshold: int = 32):
        super().__init__()
        self.path = path
        self.seek_threshold = seek_threshold
        self._cap: Optional[cv2.VideoCapture] = None
        self._next = 1  # frame number the next grab() returns
        self._count: Optional[int] = None
        self._fps: Optional[Tuple[float, Optional[float]]] = None  # (header's rate, usable rate or None)

    def _open(self) -> cv2.VideoCapture:
        if self._cap is None:
            if self._count is None:
                self._count = count_video_frames(self.path)[0]
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"video file {self.path} does not exist")
            cap = cv2.VideoCapture(self.path)
            if not cap.isOpened():
                raise ValueError(f"OpenCV cannot open video file {self.path}")
            self._cap, self._next = cap, 1
        return self._cap

    @property
    def num_frames(self) -> int:
        if self._count is None:
            self._count = count_video_frames(self.path)[0]
        return self._count

    @property
    def size(self) -> Tuple[int, int]:
        """(h, w) in pixels, from the container header (no decode)."""
        if self._size is None:
            cap = self._open()
            self._size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        return self._size

    @property
    def fps(self) -> Optional[float]:
        """The header's frame rate where it is usable (``usable_fps``); else None, warned about once."""
        if self._fps is None:
            rate = float(self._open().get(cv2.CAP_PROP_FPS))
            self._fps = (rate, usable_fps(rate))
            if self._fps[1] is None:
                with tqdm.external_write_mode():
                    logger.warning("video file %s: its header's frame rate %s is not a usable one (expected 0 < fps "
                                   "<= %g): treated as unknown", self.path, f"{rate:g}", MAX_FPS)
        return self._fps[1]

    def _seek(self, cap: cv2.VideoCapture, frame: int) -> cv2.VideoCapture:
        """Positions ``cap`` so that frame ``frame`` comes within forward steps; returns the capture to use."""
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame - 1)
        pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
        if 0 <= pos <= frame - 1:  # at the target, or before it (a keyframe): step forward from there
            self._next = pos + 1
            return cap
        # past the target (or unknown): decode from the start
        cap.release()
        self._cap = None
        return self._open()

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        cap = self._open()
        out = {}
        for frame in wanted:
            if frame < self._next or frame - self._next > self.seek_threshold:
                cap = self._seek(cap, frame)
            start = time.perf_counter()
            while self._next <= frame:
                ok = cap.grab()
                if not ok:
                    raise ValueError(f"cannot decode frame {self._next} of video file {self.path} ({self._count} "
                                     f"frames decoded when it was counted: has the file changed?)")
                self._next += 1
                self.decode_count += 1
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise ValueError(f"cannot decode frame {frame} of video file {self.path}")
            out[frame] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second frame-size array
            self.decode_seconds += time.perf_counter() - start
        return out

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cap"] = None
        state["_next"] = 1
        return state


def find_frames(frames_root: str, video: str) -> Tuple[Optional[str], list]:
    """Where the frames of ``video`` live: ``<root>/Frames/<video>`` if that folder exists, else the
    first existing ``<root>/Videos/<video>.avi|.mp4``. Returns (path or None, every path looked at)."""
    folder = os.path.join(frames_root, "Frames", video)
    tried = [folder]
    if os.path.isdir(folder):
        return folder, tried
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(frames_root, "Videos", f"{video}.{ext}")
        tried.append(path)
        if os.path.isfile(path):
            return path, tried
    return None, tried


def open_frames(frames_root: str, video: str) -> FrameSource:
    """The frame source of ``video`` (``"<class>/<video>"``) under ``frames_root`` (see ``find_frames``).
    Opens no file yet; FileNotFoundError naming every path looked at when there is none."""
    path, tried = find_frames(frames_root, video)
    if path is None:
        raise FileNotFoundError(f"no frames for video {video!r}: looked for {' and '.join(tried)}")
    return ImageFolderSource(path) if os.path.isdir(path) else VideoFileSource(path)
