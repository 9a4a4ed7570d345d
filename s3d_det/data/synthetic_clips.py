"""Synthetic clip-classification set: each actor's action cut out of a synthetic video, in UCF101's layout.

The pretraining set of the synthetic detection quick start, and the benchmark of the architecture study
(``benchmarks/bench_architectures.py``). The videos are drawn by the detection generator
(``s3d_det.data.synthetic``: stick figures whose class shows only in their motion) with another seed, so no
clip comes from a video of the detection set. Each actor of a video gives a clip of its action, and one actor
in three a clip of class ``idle``, its rest before or after the action where that lasts 8 frames or more (the
detection set's people without an action): up to ``max_frames`` frames from the middle of the stretch, cropped
to a square about the actor's box over those frames (``context`` times its longer side, as tall as the frame at
most) and resized to ``crop`` pixels.
Other actors and the occluder bar stay in the picture where they cross the crop, as in the detection set.
With ``classes="order"`` (``ORDER_CLASSES``, told apart only by the order of their frames) an action clip is
``ORDER_CLIP_FRAMES`` frames with the change at a random place that keeps it inside the first and the last 15
frames (the two test views of 8 frames at stride 2, and every training window of that span).

Layout (UCF101's, with frame folders; read by ``s3d_det.data.video_lists.read_ucf101``)::

    DIR/Frames/<class>/v_<class>_g<video:04d>_c<actor:02d>[_idle]/00001.jpg ...
    DIR/ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt
    DIR/meta.json                                         generator version and arguments; written last

The last ``test_fraction`` of the videos give the test clips. The files are a function of the arguments alone
(see ``s3d_det.data.synthetic``); the set is built in a hidden folder beside ``DIR`` and renamed onto it.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..utils.io import write_json
from .synthetic import (
    CLASS_SETS,
    JPEG_QUALITY,
    MOTIONS,
    ORDER_CLASSES,
    ORDER_MARGIN,
    _rng,
    build_and_replace,
    param_differences,
    plan_video,
    read_meta,
    render_frame,
)

logger = logging.getLogger(__name__)

__all__ = ["VERSION", "CLIP_CLASSES", "clip_classes", "generate_synthetic_clips", "ensure_synthetic_clips",
           "clip_params"]

VERSION = 1  # bump whenever a change alters any written byte
META_NAME = "meta.json"
GENERATOR = "s3d_det.data.synthetic_clips"
LIST_DIR = "ucfTrainTestlist"
MIN_IDLE_FRAMES = 8
IDLE_EVERY = 3  # an idle clip from one actor in three (video index + actor index divisible by it): as many as a class
_SEED_OFFSET = 1_000_003  # the clip set's videos use seed + this: never the detection set's videos
ORDER_CLIP_FRAMES = 20  # an order class's clip: the change and 5 or more held frames on each side
ORDER_VIEW = 15  # the frames of one clip the change always lies in (8 frames at stride 2)


def clip_classes(classes: str = "default") -> Tuple[str, ...]:
    """The clip set's class names for the detection class set ``classes``: its classes and ``idle`` (an actor
    before or after its action: the detector's "no action" people)."""
    return (*CLASS_SETS[classes], "idle")


CLIP_CLASSES = clip_classes("default")


def clip_params(*, num_videos: int = 300, seed: int = 0, test_fraction: float = 0.25, max_frames: int = 32,
                crop: int = 80, context: float = 1.25, size: Tuple[int, int] = (240, 320),
                classes: str = "default") -> dict:
    """The checked arguments of the set, as meta.json records them (see ``generate_synthetic_clips``); ``classes``
    only where it is not "default", so that a default set's params are those recorded before it existed."""
    def integer(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not integer(num_videos) or num_videos < 2:
        raise ValueError(f"num_videos must be an integer >= 2, got {num_videos!r}")
    if not integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if not integer(max_frames) or max_frames < 8:
        raise ValueError(f"max_frames must be an integer >= 8, got {max_frames!r}")
    if not integer(crop) or crop < 16:
        raise ValueError(f"crop must be an integer >= 16 pixels, got {crop!r}")
    if not context >= 1:
        raise ValueError(f"context must be >= 1 (times the actor's box), got {context!r}")
    if not isinstance(classes, str) or classes not in CLASS_SETS:
        raise ValueError(f"classes must be one of {sorted(CLASS_SETS)}, got {classes!r}")
    if classes == "order" and max_frames < ORDER_CLIP_FRAMES:
        raise ValueError(f"the order classes' clips are {ORDER_CLIP_FRAMES} frames: max_frames must be >= "
                         f"{ORDER_CLIP_FRAMES}, got {max_frames!r}")
    params = {"num_videos": int(num_videos), "seed": int(seed), "test_fraction": float(test_fraction),
              "max_frames": int(max_frames), "crop": int(crop), "context": float(context),
              "size": [int(size[0]), int(size[1])]}
    if classes != "default":
        params["classes"] = classes
    return params


def _square(box: np.ndarray, *, context: float, size: Tuple[int, int]) -> Tuple[int, int, int]:
    """(x0, y0, side): a square of ``context`` times the longer side of ``box`` (x1, y1, x2, y2, inclusive),
    centred on it, shifted to lie inside the (h, w) frame, at most as tall as the frame."""
    h, w = size
    side = int(round(min(h, w, context * max(box[2] - box[0] + 1, box[3] - box[1] + 1))))
    cx, cy = (box[0] + box[2] + 1) / 2, (box[1] + box[3] + 1) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return x0, y0, side


def _video_clips(index: int, params: dict) -> List[dict]:
    """The clips of video ``index``: {"label", "name", "frames": [(crop, crop, 3) uint8 BGR, ...]}: each actor's
    action, and for one actor in ``IDLE_EVERY`` its idle stretch (the longer of those before and after the action)
    where that has at least ``MIN_IDLE_FRAMES`` frames."""
    size = tuple(params["size"])
    classes = params.get("classes", "default")
    seed = params["seed"] + _SEED_OFFSET
    plan = plan_video(seed=seed, index=index, size=size, classes=classes)
    frames = [render_frame(plan, t) for t in range(1, plan.nframes + 1)]

    def cut(k: int, first: int, last: int) -> List[np.ndarray]:
        """Actor k's frames: the middle ``max_frames`` (or fewer) of first..last."""
        length = min(params["max_frames"], last - first + 1)
        skip = (last - first + 1 - length) // 2
        return crop(k, range(first + skip, first + skip + length))

    def crop(k: int, ts: range) -> List[np.ndarray]:
        boxes = np.stack([frames[t - 1][1][k] for t in ts])
        union = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
        x0, y0, side = _square(union, context=params["context"], size=size)
        return [cv2.resize(frames[t - 1][0][y0:y0 + side, x0:x0 + side], (params["crop"], params["crop"]),
                           interpolation=cv2.INTER_AREA) for t in ts]

    clips = []
    for k, actor in enumerate(plan.actors):
        m = actor.motion
        if m.kind in ORDER_CLASSES:  # the change (its d frames) at clip frame r, r + d <= ORDER_VIEW, r >= 20 - 15
            d = m.end - m.start + 1 - 2 * ORDER_MARGIN
            r = int(_rng(seed, index, 7, k).integers(ORDER_CLIP_FRAMES - ORDER_VIEW, ORDER_VIEW - d + 1))
            first = m.start + ORDER_MARGIN - r
            frames_k = crop(k, range(first, first + ORDER_CLIP_FRAMES))
        else:
            frames_k = cut(k, m.start, m.end)
        clips.append({"label": m.label, "name": f"c{k + 1:02d}", "frames": frames_k})
        before, after = (1, m.start - 1), (m.end + 1, plan.nframes)
        first, last = max(before, after, key=lambda span: span[1] - span[0])
        if (index + k) % IDLE_EVERY == 0 and last - first + 1 >= MIN_IDLE_FRAMES:
            clips.append({"label": len(CLASS_SETS[classes]), "name": f"c{k + 1:02d}_idle",
                          "frames": cut(k, first, last)})
    return clips


def _write(root: str, params: dict, progress: bool) -> None:
    n = params["num_videos"]
    names = clip_classes(params.get("classes", "default"))
    num_test = min(n - 1, max(1, round(n * params["test_fraction"])))
    lists: Dict[str, List[str]] = {"train": [], "test": []}
    counts = {"train": [0] * len(names), "test": [0] * len(names)}
    for index in tqdm(range(n), desc="synthetic clips", disable=not progress):
        subset = "train" if index < n - num_test else "test"
        for clip in _video_clips(index, params):
            name = names[clip["label"]]
            video = f"{name}/v_{name}_g{index:04d}_{clip['name']}"
            folder = os.path.join(root, "Frames", video)
            os.makedirs(folder)
            for t, image in enumerate(clip["frames"], start=1):
                ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise RuntimeError(f"OpenCV could not encode frame {t} of {video} as JPEG")
                with open(os.path.join(folder, f"{t:05d}.jpg"), "wb") as f:
                    f.write(jpeg.tobytes())
            # UCF101's lists name .avi files; the reader finds the frame folder Frames/<video>/ first
            lists[subset].append(f"{video}.avi" + (f" {clip['label'] + 1}" if subset == "train" else ""))
            counts[subset][clip["label"]] += 1
    os.makedirs(os.path.join(root, LIST_DIR))
    with open(os.path.join(root, LIST_DIR, "classInd.txt"), "w") as f:
        f.writelines(f"{k + 1} {name}\n" for k, name in enumerate(names))
    for subset, lines in lists.items():
        with open(os.path.join(root, LIST_DIR, f"{subset}list01.txt"), "w") as f:
            f.writelines(line + "\n" for line in lines)
    write_json(os.path.join(root, META_NAME), {
        "generator": GENERATOR,
        "version": VERSION,
        "params": params,
        "built_with": {"numpy": np.__version__, "opencv": cv2.__version__},
        "classes": {name: MOTIONS["order_idle" if name == "idle" and "classes" in params else name]
                    for name in names},
        "clips": {subset: dict(zip(names, c)) for subset, c in counts.items()},
        "videos": {"train": n - num_test, "test": num_test},
    })


def is_complete(out_dir: str, params: dict) -> bool:
    """Whether ``out_dir`` holds the finished set of ``params`` (meta.json, written last, says so)."""
    meta = read_meta(out_dir)
    return bool(meta) and meta.get("generator") == GENERATOR and \
        meta.get("version") == VERSION and meta.get("params") == params and \
        all(os.path.isfile(os.path.join(out_dir, LIST_DIR, f)) for f in ("classInd.txt", "trainlist01.txt",
                                                                          "testlist01.txt"))


def _check_ours(out_dir: str) -> None:
    """Raises unless ``out_dir`` is absent, empty, or a set this generator made (its meta.json says so)."""
    meta = read_meta(out_dir) if os.path.isdir(out_dir) else None
    if os.path.exists(out_dir) and os.listdir(out_dir) and (meta or {}).get("generator") != GENERATOR:
        raise ValueError(f"{out_dir} exists and holds {sorted(os.listdir(out_dir))[:5]}, not a synthetic clip set; "
                         "refusing to replace it: choose another folder or remove it")


def generate_synthetic_clips(out_dir: str, *, progress: bool = True, **kwargs) -> str:
    """Writes the clip set (arguments as ``clip_params``: ``num_videos`` synthetic videos of seed ``seed``, the
    last ``test_fraction`` of them for testing; at most ``max_frames`` frames a clip, ``crop`` pixels square,
    ``context`` times the actor's box) to ``out_dir``, which must be absent, empty, or a set this function made.
    Returns ``out_dir``."""
    params = clip_params(**kwargs)
    out_dir = os.path.abspath(out_dir)
    build_and_replace(out_dir, lambda build: _write(build, params, progress), check=lambda: _check_ours(out_dir),
                      complete=lambda: is_complete(out_dir, params))
    return out_dir


def ensure_synthetic_clips(out_dir: str, *, progress: bool = True, **kwargs) -> str:
    """``out_dir`` holding the clip set of these arguments: made when absent or empty, or when it holds an
    incomplete or older set this generator made; a set it made with other arguments is a ValueError saying
    which differ (never silently replaced, never silently used), and so is anything else."""
    params = clip_params(**kwargs)
    if is_complete(out_dir, params):
        return out_dir
    if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
        return generate_synthetic_clips(out_dir, progress=progress, **kwargs)
    meta = read_meta(out_dir)
    if meta is None or meta.get("generator") != GENERATOR:
        raise ValueError(f"{out_dir} holds {sorted(os.listdir(out_dir))[:5]}, not a synthetic clip set; refusing to "
                         "overwrite it: move it away, or set DATASETS.ROOT to another folder")
    differ = param_differences(params, meta.get("params") if isinstance(meta.get("params"), dict) else {})
    if differ and meta.get("version") == VERSION:
        raise ValueError(f"{out_dir} holds a synthetic clip set made with other arguments ("
                         + ", ".join(f"{k} {theirs!r}, asked {wanted!r}" for k, theirs, wanted in differ)
                         + "): remove it to have it made again, or set DATASETS.ROOT to another folder")
    logger.info("%s: remaking the synthetic clip set (%s)", out_dir, "incomplete" if not differ else "older version")
    return generate_synthetic_clips(out_dir, progress=progress, **kwargs)
