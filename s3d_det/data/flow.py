"""Optical flow: computing it (TV-L1 or DIS), storing it as JPEGs, and reading it back for the networks.

Stored layout (``extract_flow``): ``<out_root>/<class>/<video>/x/00001.jpg ...`` and ``.../y/00001.jpg ...``,
one grayscale JPEG per axis for each k = 1..N-1 of a video of N frames, holding the flow from frame k to k+1
(x = columns, rightward; y = rows, downward; pixels of the frames) mapped to 0..255 with ``flow_to_uint8``
(the I3D convention: clipped to +-``bound`` px, then linear). A ``.done`` file beside ``x/`` and ``y/`` records
what the flow was made from (``extract_flow``); it is written last, into a temporary folder that is renamed into place
(see ``extract_flow``).

Alignment with RGB: RGB frame k gets flow k (k -> k+1); the last frame N has no flow of its own and gets flow
N-1. A flow source's ``num_frames`` is therefore the video's frame count N, and clip sampling is the RGB one.

Sources (``FrameSource`` interface: ``num_frames``, ``size``, ``read(frames) -> {frame: array}``, pickling-safe,
``DataError`` for empty or truncated JPEGs and frames of another size):

* :class:`FlowFolderSource`: our layout, (H, W, 2) uint8 per frame (x, y), ``channels = 2``.
* :class:`BroxFlowSource`: the Brox flow ACT and MOC distribute (``FlowBrox04/<class>/<video>/00001.jpg``
  for JHMDB, ``brox-images/...`` in MOC's UCF101-24 layout): one 3-channel JPEG per frame, N of them, read as
  (H, W, 3) uint8 RGB as ``ImageFolderSource`` reads RGB frames, ``channels = 3``.

TV-L1 (the flow of I3D and S3D-G) lives in ``cv2.optflow``, which only opencv-contrib builds have. The project
pins ``opencv-python<5``; opencv-python and opencv-contrib-python both install the ``cv2`` package into the same
folder, so installing both breaks one of them. Hence: when the imported ``cv2`` has ``cv2.optflow`` it is used;
otherwise the contrib wheel goes into a private folder,
``pip install --no-deps --target DIR "opencv-contrib-python-headless<5"``, named with ``opencv_contrib=DIR``
(``--opencv-contrib DIR``, or the environment variable ``S3D_DET_OPENCV_CONTRIB``), and the flow runs in spawned
worker processes that import ``cv2`` from DIR. Each worker checks that it got ``cv2.optflow``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from .errors import DataError
from .frames import _PNG_START, _TAIL, FrameSource, ImageFolderSource, _image_bytes_problem, frame_numbers

__all__ = ["ALGORITHMS", "CONTRIB_ENV", "CONTRIB_PIP", "BroxFlowSource", "FlowFolderSource", "compute_flow",
           "contrib_dir", "contrib_path", "extract_flow", "flow_to_uint8", "has_tvl1", "uint8_to_flow"]

ALGORITHMS = ("tvl1", "dis")
CONTRIB_ENV = "S3D_DET_OPENCV_CONTRIB"
CONTRIB_PIP = 'pip install --no-deps --target DIR "opencv-contrib-python-headless<5"'
DIS_PRESET = "PRESET_MEDIUM"  # DIS's middle preset: FAST loses fine motion, ULTRAFAST more; MEDIUM is ~2x FAST's time
_DONE = ".done"
_algorithms: Dict[str, object] = {}  # one OpenCV flow object per algorithm and process


# ------------------------------------------------------------------------------------------------- computing
def has_tvl1() -> bool:
    """Whether the imported ``cv2`` has TV-L1 (``cv2.optflow``, opencv-contrib builds only)."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def _tvl1_missing(where: str) -> str:
    return (f"TV-L1 optical flow needs cv2.optflow (opencv-contrib), which the OpenCV {where} lacks "
            f"(cv2 {cv2.__version__} from {os.path.dirname(cv2.__file__)}): run {CONTRIB_PIP} and pass "
            f"--opencv-contrib DIR (or set {CONTRIB_ENV}=DIR), or use --algorithm dis")


def _flow_object(algorithm: str):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown optical-flow algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}")
    flow = _algorithms.get(algorithm)
    if flow is None:
        if algorithm == "tvl1":
            if not has_tvl1():
                raise ValueError(_tvl1_missing("imported here"))
            flow = cv2.optflow.DualTVL1OpticalFlow_create()  # OpenCV's defaults, as I3D's extraction used
        else:
            flow = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_{DIS_PRESET}"))
        _algorithms[algorithm] = flow
    return flow


def compute_flow(prev_gray: np.ndarray, next_gray: np.ndarray, algorithm: str = "tvl1") -> np.ndarray:
    """The optical flow from ``prev_gray`` (frame k) to ``next_gray`` (frame k+1).

    Args:
        prev_gray, next_gray: (H, W) uint8 grayscale frames of one size.
        algorithm: "tvl1" (``cv2.optflow.DualTVL1OpticalFlow_create()`` with OpenCV's default parameters: the
            flow of I3D and S3D-G; needs opencv-contrib) or "dis" (core OpenCV's ``DISOpticalFlow`` with
            ``DISOPTICAL_FLOW_PRESET_MEDIUM``: roughly an order of magnitude faster, less accurate).
    Returns:
        (H, W, 2) float32 in pixels: [..., 0] = x (column, rightward), [..., 1] = y (row, downward); a point at
        (x, y) in frame k is near (x + u, y + v) in frame k+1.
    """
    for name, image in (("prev_gray", prev_gray), ("next_gray", next_gray)):
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(f"{name}: expected an (H, W) uint8 grayscale frame, got {image.dtype} {image.shape}")
    if prev_gray.shape != next_gray.shape:
        raise ValueError(f"frames of different sizes: {prev_gray.shape} and {next_gray.shape} (h, w)")
    flow = _flow_object(algorithm).calc(prev_gray, next_gray, None)
    return np.asarray(flow, dtype=np.float32)


# --------------------------------------------------------------------------------------------------- mapping
def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not np.isfinite(bound) or bound <= 0:
        raise ValueError(f"flow bound must be a positive number of pixels, got {bound}")
    return bound


def flow_to_uint8(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Flow in pixels to the community's JPEG values (I3D convention): clipped to [-bound, bound], then
    ``q = round((f + bound) * 255 / (2 * bound))``, halves rounded up. So -bound -> 0, +bound -> 255, and 0 ->
    127.5 -> 128 (zero flow is stored as 128, read back as +bound/255 px). Same shape as ``flow``, uint8.

    Flipping an image horizontally negates x: in JPEG space that is ``255 - q`` on the x channel only up to the
    rounding (one step, ``2 * bound / 255`` px, at most; e.g. 0 -> 128 -> 127, read back as -bound/255 px)."""
    bound = _check_bound(bound)
    flow = np.asarray(flow, dtype=np.float32)
    if not np.isfinite(flow).all():
        raise ValueError("flow holds non-finite values (NaN or inf); expected finite pixels")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


def uint8_to_flow(q: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """The inverse of ``flow_to_uint8``: ``f = q * 2 * bound / 255 - bound``, float32 pixels, same shape.
    A round trip is off by at most ``bound / 255`` px inside [-bound, bound]."""
    bound = _check_bound(bound)
    return (np.asarray(q, dtype=np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


# --------------------------------------------------------------------------------------------------- reading
def _read_file(path: str, frame: int, flags: int) -> np.ndarray:
    """One image file decoded with ``cv2.imdecode(..., flags)``; DataError naming it and ``frame`` when empty,
    truncated or undecodable."""
    with open(path, "rb") as f:
        data = f.read()
    problem = _image_bytes_problem(data[:len(_PNG_START)], data[-_TAIL:], len(data))
    if problem is not None:
        raise DataError(f"{path}: {problem[0]} (flow frame {frame}): {problem[1]}; expected a whole image file "
                        f"(extract the flow of this video again)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise DataError(f"cannot decode image {path} (flow frame {frame}): expected a JPEG or PNG file OpenCV reads")
    return image


def _flow_count(files: int, nframes: Optional[int], path: str) -> int:
    """``num_frames`` of a flow folder of ``files`` flow frames: ``nframes`` when given (``files`` must be
    nframes - 1 or nframes), else ``files + 1`` for our layout (the caller passes the Brox rule)."""
    if nframes is None:
        return files + 1
    if files not in (nframes - 1, nframes):
        raise DataError(f"{path} holds {files} flow frames; expected {nframes - 1} (or {nframes}) for a video of "
                        f"{nframes} frames (extract the flow of this video again)")
    return int(nframes)


class FlowFolderSource(FrameSource):
    """Our flow layout: ``<folder>/x/{k:05d}.jpg`` and ``<folder>/y/{k:05d}.jpg``, k = 1..M (M = N - 1 for a
    video of N frames, flow k -> k+1), read as (H, W, 2) uint8 (x, y) in ``flow_to_uint8``'s mapping.

    ``num_frames`` is N (M + 1, or ``nframes`` when given: then M must be N - 1, or N for tools that store one
    flow per frame); frame k reads flow min(k, M): the last frame reuses the flow before it. ``channels = 2``.
    """

    channels = 2

    def __init__(self, folder: str, *, nframes: Optional[int] = None):
        super().__init__()
        self.path = folder
        self.nframes = nframes
        self._files: Optional[int] = None
        self._count = 0

    def _scan(self) -> None:
        counts = []
        for axis in ("x", "y"):
            sub = os.path.join(self.path, axis)
            if not os.path.isdir(sub):
                raise FileNotFoundError(f"flow folder {sub} does not exist (expected <video>/x/ and <video>/y/)")
            got = sorted(frame_numbers(sub)["jpg"])
            if not got:
                raise FileNotFoundError(f"flow folder {sub} holds no flow frames named like 00001.jpg")
            for expected, number in enumerate(got, start=1):
                if number != expected:
                    raise DataError(f"flow folder {sub}: {expected:05d}.jpg is missing (flow frames must run 1..n "
                                    f"without gaps; next found is {number:05d}.jpg)")
            counts.append(len(got))
        if counts[0] != counts[1]:
            raise DataError(f"flow folder {self.path}: x/ holds {counts[0]} flow frames but y/ holds {counts[1]}; "
                            f"expected one of each per frame")
        self._count = _flow_count(counts[0], self.nframes, self.path)
        self._files = counts[0]

    @property
    def num_frames(self) -> int:
        if self._files is None:
            self._scan()
        return self._count

    def flow_index(self, frame: int) -> int:
        """The stored flow frame that RGB frame ``frame`` reads: min(frame, M)."""
        if self._files is None:
            self._scan()
        return min(int(frame), self._files)

    def frame_name(self, frame: int) -> str:
        k = self.flow_index(frame)
        return f"{os.path.join(self.path, 'x', f'{k:05d}.jpg')} and its y/ twin"

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        out: Dict[int, np.ndarray] = {}
        for frame in wanted:
            k = self.flow_index(frame)
            start = time.perf_counter()
            x = _read_file(os.path.join(self.path, "x", f"{k:05d}.jpg"), k, cv2.IMREAD_GRAYSCALE)
            y = _read_file(os.path.join(self.path, "y", f"{k:05d}.jpg"), k, cv2.IMREAD_GRAYSCALE)
            if x.shape != y.shape:
                raise DataError(f"{self.path}: flow frame {k} is {x.shape[0]}x{x.shape[1]} in x/ but "
                                f"{y.shape[0]}x{y.shape[1]} in y/ (h x w); expected one size")
            out[frame] = np.stack([x, y], axis=-1)
            self.decode_seconds += time.perf_counter() - start
            self.decode_count += 2
        return out


class BroxFlowSource(ImageFolderSource):
    """The Brox flow frames ACT and MOC distribute: ``<folder>/{k:05d}.jpg``, one 3-channel JPEG per frame
    (ACT's ``FlowBrox04/<class>/<video>/``, MOC's ``brox-images/<class>/<video>/`` for UCF101-24), read as
    (H, W, 3) uint8 RGB like RGB frames. Their horizontal flip inverts OpenCV's channel 2 (BGR), so channel 0
    here (red) is x. ``channels = 3``.

    The releases hold one file per frame (N files); ``num_frames`` is the file count, or ``nframes`` when given
    (then the folder may hold N - 1 files: frame N reads file N - 1, as in our layout).
    """

    channels = 3

    def __init__(self, folder: str, *, nframes: Optional[int] = None):
        super().__init__(folder)
        self.nframes = nframes
        self._flow_count: Optional[int] = None

    @property
    def num_frames(self) -> int:
        if self._flow_count is None:
            files = super().num_frames
            self._flow_count = files if self.nframes is None else _flow_count(files, self.nframes, self.path)
        return self._flow_count

    def flow_index(self, frame: int) -> int:
        """The file that frame ``frame`` reads: min(frame, number of files)."""
        self.num_frames  # noqa: B018 - scans the folder
        return min(int(frame), self._count)

    def frame_name(self, frame: int) -> str:
        return self.frame_path(self.flow_index(frame))

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        files = super()._decode(sorted({self.flow_index(f) for f in wanted}))
        out = {}
        for frame in wanted:
            array = files[self.flow_index(frame)]
            out[frame] = array if frame == self.flow_index(frame) else array.copy()
        return out


# ------------------------------------------------------------------------------------------------ extraction
def _find_frame_folders(frames_root: str) -> List[Tuple[str, str]]:
    """[("class/video", folder)] of ``<frames_root>/Frames/<class>/<video>/``, sorted; hidden entries (an
    interrupted extraction's ``.tmp_*``) are left out."""
    root = os.path.join(frames_root, "Frames")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"frames folder not found: {root} (expected FRAMES_ROOT/Frames/<class>/<video>/)")
    found = []
    for cls in sorted(os.listdir(root)):
        folder = os.path.join(root, cls)
        if cls.startswith(".") or not os.path.isdir(folder):
            continue
        for video in sorted(os.listdir(folder)):
            if not video.startswith(".") and os.path.isdir(os.path.join(folder, video)):
                found.append((f"{cls}/{video}", os.path.join(folder, video)))
    if not found:
        raise FileNotFoundError(f"no video folders under {root}/<class>/<video>/")
    return found


def _stamp(source: ImageFolderSource, algorithm: str, bound: float) -> dict:
    """What a video's flow was made from, written to its ``.done``: the flow count, the algorithm, the bound and
    the first and last frame files' sizes and modification times (frames extracted again, even with the same
    count, change them)."""
    n = source.num_frames
    frames = []
    for frame in (1, n):
        st = os.stat(source.frame_path(frame))
        frames.append([os.path.basename(source.frame_path(frame)), st.st_size, st.st_mtime_ns])
    return {"flows": n - 1, "algorithm": algorithm, "bound": float(bound), "frames": frames}


def _is_complete(target: str, stamp: dict) -> bool:
    """Whether ``target`` holds a finished extraction matching ``stamp`` (``_stamp``): its ``.done`` records the
    same, and x/ and y/ hold exactly 00001.jpg..{flows}.jpg (a file deleted since, frames extracted again, another
    algorithm or bound make it incomplete)."""
    try:
        with open(os.path.join(target, _DONE)) as f:
            done = json.load(f)
        expected = {f"{i:05d}.jpg" for i in range(1, stamp["flows"] + 1)}
        return done == stamp and all(
            {n for n in os.listdir(os.path.join(target, axis)) if n.endswith(".jpg")} == expected
            for axis in ("x", "y"))
    except (OSError, ValueError):
        return False


def _gray(source: ImageFolderSource, frame: int) -> np.ndarray:
    return cv2.cvtColor(source.read([frame])[frame], cv2.COLOR_RGB2GRAY)


def _flow_video(name: str, folder: str, target: str, algorithm: str, bound: float, jpeg_quality: int,
                worker: bool) -> int:
    """Computes and writes the flow of one video (see ``extract_flow``); returns its flow frame count.
    Bad input is one DataError line naming the video (and the frame where there is one)."""
    if worker:
        cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only compete
    if algorithm == "tvl1" and not has_tvl1():
        raise DataError(f"a flow worker process imported cv2 {cv2.__version__} from {os.path.dirname(cv2.__file__)}, "
                        f"which lacks cv2.optflow (TV-L1): the --opencv-contrib folder must hold opencv-contrib; "
                        f"install it with {CONTRIB_PIP}")
    tmp = os.path.join(os.path.dirname(target), f".tmp_{os.path.basename(target)}")
    try:
        source = ImageFolderSource(folder)
        n = source.num_frames
        if n < 2:
            raise DataError(f"{folder} holds {n} frame; expected at least 2 for optical flow")
        shutil.rmtree(tmp, ignore_errors=True)
        for axis in ("x", "y"):
            os.makedirs(os.path.join(tmp, axis))
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        prev = _gray(source, 1)
        for k in range(1, n):
            nxt = _gray(source, k + 1)
            q = flow_to_uint8(compute_flow(prev, nxt, algorithm), bound)
            for c, axis in enumerate(("x", "y")):
                out = os.path.join(tmp, axis, f"{k:05d}.jpg")
                if not cv2.imwrite(out, np.ascontiguousarray(q[..., c]), params):
                    raise OSError(f"could not write flow frame {k} to {out}")
            prev = nxt
        with open(os.path.join(tmp, _DONE), "w") as f:
            json.dump(_stamp(source, algorithm, bound), f)
        shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier attempt
        os.replace(tmp, target)
        return n - 1
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (ValueError, OSError, ImportError, cv2.error)):
            message = " ".join(str(e).split()) or type(e).__name__
            raise DataError(f"video {name}: {message}") from None
        raise


def contrib_dir(opencv_contrib: Optional[str]) -> str:
    """The folder TV-L1's workers import cv2 from: ``opencv_contrib``, else ``$S3D_DET_OPENCV_CONTRIB``; a
    one-line error saying the pip command when there is none or it holds no cv2 package."""
    folder = opencv_contrib or os.environ.get(CONTRIB_ENV) or ""
    if not folder:
        raise ValueError(_tvl1_missing("installed here"))
    whence = "--opencv-contrib" if opencv_contrib else CONTRIB_ENV
    if not os.path.isfile(os.path.join(folder, "cv2", "__init__.py")):
        raise FileNotFoundError(f"{whence} {folder}: no cv2 package there; install it with "
                                f"{CONTRIB_PIP.replace('DIR', folder)}")
    return os.path.abspath(folder)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def extract_flow(frames_root: str, out_root: str, *, algorithm: str = "tvl1", bound: float = 20.0,
                 workers: int = 1, jpeg_quality: int = 95, progress: bool = True,
                 opencv_contrib: Optional[str] = None) -> dict:
    """Optical flow of every ``<frames_root>/Frames/<class>/<video>/`` (frames 00001.jpg..N, as
    ``extract_frames`` writes them) into ``<out_root>/<class>/<video>/x/{k:05d}.jpg`` and ``y/{k:05d}.jpg``,
    k = 1..N-1 (flow k -> k+1, ``compute_flow`` on the grayscale frames, ``flow_to_uint8`` with ``bound``,
    grayscale JPEGs of quality ``jpeg_quality``).

    Resumable: a video is written into ``<out_root>/<class>/.tmp_<video>/``, ``.done`` last (JSON: N-1, the
    algorithm, the bound, the first and last frames' sizes and modification times), and renamed into place when
    complete. A video folder whose ``.done`` matches all that and its x/ and y/ files is skipped; one whose ``.done``
    does not (files deleted since, frames extracted again, another algorithm or bound) is redone; a folder without
    ``.done`` was not written here and is refused, never replaced. An interrupted run leaves only a ``.tmp_*``
    folder (removed when that video is done again), never one that passes for complete.

    ``workers`` processes (spawned) share the videos; ``workers=1`` runs in this process, except for TV-L1 from
    ``opencv_contrib`` (one spawned worker). TV-L1 uses this process's ``cv2`` when it has ``cv2.optflow``, else
    the opencv-contrib wheel installed in the folder ``opencv_contrib`` (default: ``$S3D_DET_OPENCV_CONTRIB``):
    the workers start with that folder first on their path.

    Returns ``{"videos": n, "computed": n, "skipped": n, "flow_frames": total N-1 of all videos}``. Raises
    FileNotFoundError / ValueError / DataError, one line naming the video (and frame): no frames folder, a video
    with fewer than 2 frames, a corrupt or truncated frame, frames of different sizes, TV-L1 unavailable (saying
    the pip command to run), ``out_root`` inside ``<frames_root>/Frames``.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown optical-flow algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}")
    bound = _check_bound(bound)
    if not 0 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be 0..100, got {jpeg_quality}")
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if _inside(out_root, os.path.join(frames_root, "Frames")):
        raise ValueError(f"output folder {out_root} is inside {os.path.join(frames_root, 'Frames')}; expected a "
                         f"folder outside the frames (it would be taken for videos)")
    contrib = None
    if algorithm == "tvl1" and not has_tvl1():
        contrib = contrib_dir(opencv_contrib)
    videos = _find_frame_folders(frames_root)

    counts = {"videos": len(videos), "computed": 0, "skipped": 0, "flow_frames": 0}
    todo = []
    for name, folder in videos:
        try:
            source = ImageFolderSource(folder)
            n = source.num_frames
            stamp = _stamp(source, algorithm, bound) if n >= 2 else None
        except (ValueError, OSError) as e:
            raise DataError(f"video {name}: {' '.join(str(e).split())}") from None
        target = os.path.join(out_root, name)
        if os.path.lexists(target) and not os.path.isfile(os.path.join(target, _DONE)):
            raise ValueError(f"video {name}: {target} exists but extract_flow did not write it (no {_DONE} file); "
                             f"expected no folder there: move it away or delete it")
        if n >= 2 and _is_complete(target, stamp):
            counts["skipped"] += 1
            counts["flow_frames"] += n - 1
        else:
            todo.append((name, folder, target, max(n - 1, 0)))
    for _, _, target, _ in todo:
        os.makedirs(os.path.dirname(target), exist_ok=True)

    bar = tqdm(total=sum(t[3] for t in todo), desc=f"optical flow ({algorithm})", unit="frame",
               disable=not progress)
    try:
        if contrib is None and int(workers) == 1:
            for name, folder, target, _ in todo:
                done = _flow_video(name, folder, target, algorithm, bound, jpeg_quality, False)
                counts["computed"] += 1
                counts["flow_frames"] += done
                bar.update(done)
        elif todo:
            _run_pool(todo, counts, bar, algorithm=algorithm, bound=bound, jpeg_quality=jpeg_quality,
                      workers=min(int(workers), len(todo)), contrib=contrib)
    finally:
        bar.close()
    return counts


@contextlib.contextmanager
def contrib_path(contrib: Optional[str]):
    """While inside, processes spawned by this one import ``cv2`` from the folder ``contrib`` first (None: no
    change). A spawned child takes its ``sys.path`` from this process (multiprocessing's preparation data), not
    only from ``PYTHONPATH``, so the folder goes first in both; this process keeps the cv2 it imported already
    (a module is imported once). ``ProcessPoolExecutor`` starts its spawned workers in ``submit``: submit inside."""
    if contrib is None:
        yield
        return
    saved_env, saved_path = os.environ.get("PYTHONPATH"), list(sys.path)
    os.environ["PYTHONPATH"] = os.pathsep.join([contrib] + ([saved_env] if saved_env else []))
    sys.path.insert(0, contrib)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_env


def _run_pool(todo, counts: dict, bar, *, algorithm: str, bound: float, jpeg_quality: int, workers: int,
              contrib: Optional[str]) -> None:
    executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                      mp_context=multiprocessing.get_context("spawn"))
    with contrib_path(contrib):  # with spawn, submit starts the workers (up to max_workers)
        futures = [executor.submit(_flow_video, name, folder, target, algorithm, bound, jpeg_quality, True)
                   for name, folder, target, _ in todo]
    try:
        for future in concurrent.futures.as_completed(futures):
            done = future.result()
            counts["computed"] += 1
            counts["flow_frames"] += done
            bar.update(done)
    except BrokenProcessPool:
        raise DataError("a flow worker process died" + (
            f"; check that {contrib} holds an OpenCV that imports (PYTHONPATH={contrib} python -c 'import cv2')"
            if contrib else "")) from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
