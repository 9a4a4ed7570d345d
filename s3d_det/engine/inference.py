"""Detecting actions in every frame of a video: the 2D detector on every frame, the 3D network shared. The one
inference path of the toolkit: evaluation during training (``evaluation.evaluate_detector``), ``tools/eval_jhmdb.py``
and ``tools/visualize_video.py`` all run ``VideoDetector`` (``detect_dataset`` over a test dataset).

Two modes give each keyframe (every frame is one) its 3D features:

- ``"per_keyframe"``: one clip forward per keyframe, exactly the test dataset's samples (``clips.clip_frames``
  around it, edge frames by ``boundary``; the resize ``clips.resize_frame``, the padding
  ``data.dataset.stack_padded``).
- ``"shared"``: the 3D network runs over windows of the video and each keyframe's ``T'`` feature steps are sliced
  from them. With the feature layer's temporal stride st (``feature_info[layer].stride[0]``), every st-th
  keyframe (1, 1 + st, 1 + 2 st, ...: the "anchors") gets exactly its own clip's features, and the keyframes in
  between the linear mix of the two nearest anchors' (keyframe 1 + m st + r: anchor m with weight 1 - r/st,
  anchor m + 1 with r/st). The anchors' clips are computed in s interleaved "streams" (s the clip stride): the
  clips of anchors 1 + k st, 1 + k st + s st, ... start st positions apart on one grid of frames s apart, so one
  window of the 3D network over that grid gives several consecutive anchors' features, each a slice of its
  feature map. Mixing neighbours st frames apart (not st clip positions, s st frames, as slicing each of the s
  frame grids alone would) keeps the mixed features close to the clip's own: on the quick-start model (st = 2,
  s = 2) the frame-mAP moves 0.4 points from the per-keyframe mode's, against 1.5 for mixing within a grid.

  ``window`` sets the positions per 3D window. At its default, one clip, every window is one anchor's clip, so
  the anchors get exactly their per-keyframe features and the 3D network runs on 1/st of the clips. Longer
  windows overlap so that each slice lies ``context`` positions inside one; they cost less again, but each slice
  then sees real frames where its own clip would see the network's zero padding (and the S3D-G gates pool over a
  clip's length around each step, ``S3DG.set_gating_window``). A network whose temporal receptive field exceeds
  the clip (as the quick-start model's) gives quite different features that way: measure before relying on long
  windows.

In both modes every frame is decoded and resized once (a ``data.frames.FrameCache`` holds the frames the current
window or batch needs, nothing more: memory does not grow with the video; with ``read_ahead`` the next step's are
read in a thread meanwhile), the 2D detector runs on batches of keyframes, and the boxes come back in pixels of the
original frames.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from s3d_det.data.clips import clip_frames, map_boundary, resize_frame, resized_shape, scale_boxes, to_tensor
from s3d_det.data.dataset import _NO_BOXES, stack_padded
from s3d_det.data.frames import FrameCache, FrameSource, ImageFolderSource, VideoFileSource
from s3d_det.data.modality import MODALITY_CHANNELS
from s3d_det.evaluation.detections import Detections, FrameDetections
from s3d_det.evaluation.postprocess import smooth_detections
from s3d_det.modeling.detector import detections_to_rows
from s3d_det.modeling.fusion import fold_batchnorm
from s3d_det.modeling.two_stream import TwoStreamDetector

from .distributed import all_gather, get_rank, get_world_size, is_main_process

__all__ = ["MODES", "INTERPOLATIONS", "open_video", "VideoDetector", "detect_dataset"]

MODES = ("shared", "per_keyframe")
# How the shared mode gives a keyframe between two anchors its features: "linear", the mix of both anchors' (the
# default, closest to the keyframe's own clip); "previous", the earlier anchor's as they are (a stream that cannot
# wait for the next anchor's clip, ``engine.streaming``).
INTERPOLATIONS = ("linear", "previous")


def open_video(path: str) -> FrameSource:
    """The frames of ``path``: a folder of ``00001.jpg|png`` frames or a video file OpenCV can read. It is opened
    (a folder listed) now, so a missing path is a FileNotFoundError and an unreadable or empty video a ValueError,
    each naming ``path``."""
    if os.path.isdir(path):
        source: FrameSource = ImageFolderSource(path)
    elif os.path.isfile(path):
        source = VideoFileSource(path)
    else:
        raise FileNotFoundError(f"input not found: {path} (expected a video file or a folder of frames)")
    source.num_frames  # opens the file or lists the folder
    return source


class VideoDetector:
    """Runs an ``ActionDetector`` (eval mode) over every frame of a video: the one inference path of the toolkit
    (evaluation during training, ``tools/eval_jhmdb.py``, ``tools/visualize_video.py``; ``detect_dataset`` runs it
    over a test dataset).

    Args:
        model (ActionDetector): the trained detector; it is put in eval mode. Its proposals come from its RPN
            (``MODEL.PROPOSALS rpn``) or, for ``"gt"`` (the oracle-boxes ablation), from the ``boxes`` given to
            each call; ``"given"`` proposals are refused.
        clip_length (int), clip_stride (int), boundary (str): the clip around each keyframe
            (``clips.clip_frames``; ``INPUT.CLIP_LENGTH``, ``CLIP_STRIDE``, ``BOUNDARY``).
        short_side (int), max_size (int, optional): the test resize (``INPUT.SHORT_SIDE_TEST``, ``MAX_SIZE``).
        size_divisible (int): frames are zero-padded at the bottom and right to a multiple of it
            (``data.dataset.stack_padded``, as ``collate``).
        mode (str): ``"shared"`` or ``"per_keyframe"`` (see the module docstring).
        batch_size (int): keyframes per forward of the 2D detector and the head; the 3D network takes as many
            clip positions per forward as ``batch_size`` clips hold (at least one window of each stream).
        window (int, optional): shared mode: clip positions (frames at ``clip_stride``) per window of the 3D
            network, at least ``clip_length``; None or 0: ``clip_length`` (one clip).
        context (int, optional): shared mode: positions of real frames a keyframe's slice keeps from each internal
            edge of its window (default: up to ``clip_length // 2``, as far as the window allows).
        device: where the model runs.
        amp_dtype (torch.dtype, optional): autocast dtype (e.g. ``torch.bfloat16`` on CUDA).
        smooth_frames (int): once every frame of the video is detected, smooth the scores over this many frames
            to each side (``evaluation.postprocess.smooth_detections``; ``TEST.SMOOTH_FRAMES``); 0: off.
        fold_bn (bool): run a copy of ``model``, made now, with every BatchNorm folded into the convolution
            before it (``modeling.fusion.fold_batchnorm``): the same detections up to float rounding, in less
            time (on the CPU 5-8% of the 3D network's, 4% of ResNet-18's, 20% of ResNet-50's with frozen
            BatchNorm). ``model`` itself is left as it is; ``self.model`` is the copy. False: ``model`` itself.
        modality (str): what the 3D network's clips are made of (``data.modality``: ``INPUT.MODALITY``); not
            ``"rgb"``: each call takes the video's flow as ``clip_source``.
        position (int, optional): the keyframe's index in its clip (``clips.clip_frames``; default
            ``clip_length // 2``, centred as in training; ``clip_length - 1``: clips that end at the keyframe).
        interpolation (str): shared mode: how a keyframe between two anchors gets its features (``INTERPOLATIONS``).
        read_ahead (bool): decode, resize and pad the next step's frames (and, per keyframe, its clips) in a
            background thread while the model runs on the current one (what the test DataLoader's worker
            processes did; ``DATALOADER.NUM_WORKERS`` > 0 in ``from_config``). The same detections; at most two
            steps' frames in memory.

    Calling it on a ``FrameSource`` returns the detections of every frame as ``FrameDetections`` (video index,
    1-based frame, 0-based label, score, boxes x1, y1, x2, y2 in pixels of the original frames; ``to_rows()``
    gives the interchange rows (N, 8)), sorted by frame, then score (highest first). ``stats`` then holds
    ``frames``, ``decoded`` (frames the source decoded), ``max_frames_held`` (the most resized frames held at
    once), ``forwards_3d`` (3D network calls) and ``positions_3d`` (clip positions they took).
    """

    def __init__(self, model: torch.nn.Module, *, clip_length: int, clip_stride: int = 1, boundary: str = "repeat",
                 short_side: int = 240, max_size: Optional[int] = 1333, size_divisible: int = 32,
                 mode: str = "shared",
                 batch_size: int = 8, window: Optional[int] = None, context: Optional[int] = None, device="cpu",
                 amp_dtype: Optional[torch.dtype] = None, smooth_frames: int = 0, fold_bn: bool = True,
                 read_ahead: bool = False, modality: str = "rgb", position: Optional[int] = None,
                 interpolation: str = "linear"):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if getattr(model, "proposals", None) not in ("rpn", "gt"):
            raise ValueError(f"video inference needs a detector that proposes its own boxes (MODEL.PROPOSALS rpn) "
                             f"or takes the ground truth's (gt); this one takes them from "
                             f"{getattr(model, 'proposals', None)!r}")
        clip_frames(1, 1, clip_length, clip_stride, boundary, position)  # checks the clip arguments
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")
        self.position = clip_length // 2 if position is None else int(position)
        self.interpolation = interpolation
        if modality not in MODALITY_CHANNELS:
            raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITY_CHANNELS)}")
        self.two_stream = isinstance(model, TwoStreamDetector)
        streams = model.streams if self.two_stream else [model]
        if self.two_stream and modality == "rgb":
            raise ValueError("a two-stream detector takes the flow's modality ('flow' or 'brox'), got 'rgb'")
        expected = ([3] if self.two_stream else []) + [MODALITY_CHANNELS[modality]]
        for stream, channels in zip(streams, expected):
            if stream.backbone_3d.in_channels != channels:
                raise ValueError(f"a 3D network takes {stream.backbone_3d.in_channels} input channels, its clips "
                                 f"({'rgb' if channels == 3 and stream is not streams[-1] else modality}) have "
                                 f"{channels}")
        self.modality = modality
        if batch_size < 1 or size_divisible < 1:
            raise ValueError(f"batch_size and size_divisible must be at least 1, got {batch_size}, {size_divisible}")
        if smooth_frames < 0:
            raise ValueError(f"smooth_frames must be at least 0 (frames to each side; 0: off), got {smooth_frames}")
        self.smooth_frames = int(smooth_frames)
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        self.model = (fold_batchnorm(model) if fold_bn else model.eval()).to(self.device)
        self.clip_length, self.clip_stride, self.boundary = clip_length, clip_stride, boundary
        self.short_side, self.max_size, self.size_divisible = short_side, max_size, size_divisible
        self.mode, self.batch_size, self.read_ahead = mode, batch_size, bool(read_ahead)
        layouts = set()
        for stream in streams:
            backbone, layer = stream.backbone_3d, stream.feature_3d
            layouts.add((backbone.feature_info[layer].stride[0],  # clip positions per feature step
                         backbone.output_size((clip_length, 224, 224), last=layer)[0]))  # T' of one clip
        if len(layouts) > 1:
            raise ValueError(f"the two streams' 3D features have different temporal layouts (stride, steps): "
                             f"{sorted(layouts)}; they must match to share the windows")
        self.stride, self.steps = layouts.pop()
        window = window or clip_length
        if window < clip_length:
            raise ValueError(f"window={window} is shorter than a clip ({clip_length} positions)")
        self.window = self.steps + (window - clip_length) // self.stride  # feature steps per window
        self.window_positions = self._positions(self.window)
        spare = (self.window - self.steps) // 2
        margin = min(clip_length // 2, spare * self.stride) if context is None else context
        self.margin = -(-margin // self.stride)  # feature steps
        if margin < 0 or self.margin > spare:
            raise ValueError(f"context={margin} positions do not fit in a window of {window} positions (feature "
                             f"stride {self.stride}, {self.steps} steps a clip): use window >= "
                             f"{clip_length + 2 * self.margin * self.stride} or a smaller context")
        self.stats: Dict[str, int] = {}

    @classmethod
    def from_config(cls, model: torch.nn.Module, cfg, **kwargs) -> "VideoDetector":
        """The detector with ``cfg``'s test input (``INPUT.*``, ``TEST.BATCH_SIZE``, ``TEST.WINDOW``,
        ``TEST.SMOOTH_FRAMES``, ``SOLVER.AMP_DTYPE`` on CUDA, ``MODEL.DEVICE``, read-ahead when
        ``DATALOADER.NUM_WORKERS`` > 0); ``kwargs`` override any argument."""
        from .defaults import resolve_device

        device = resolve_device(cfg.MODEL.DEVICE)
        amp = getattr(torch, cfg.SOLVER.AMP_DTYPE) if cfg.SOLVER.AMP_DTYPE and device.type == "cuda" else None
        args = dict(clip_length=cfg.INPUT.CLIP_LENGTH, clip_stride=cfg.INPUT.CLIP_STRIDE, boundary=cfg.INPUT.BOUNDARY,
                    short_side=cfg.INPUT.SHORT_SIDE_TEST, max_size=cfg.INPUT.MAX_SIZE,
                    size_divisible=cfg.INPUT.SIZE_DIVISIBLE or 1,
                    batch_size=cfg.TEST.BATCH_SIZE, window=cfg.TEST.WINDOW, device=device, amp_dtype=amp,
                    smooth_frames=cfg.TEST.SMOOTH_FRAMES, read_ahead=cfg.DATALOADER.NUM_WORKERS > 0,
                    modality=cfg.INPUT.MODALITY)
        args.update(kwargs)
        return cls(model, **args)

    @classmethod
    def for_dataset(cls, model: torch.nn.Module, dataset, **kwargs) -> "VideoDetector":
        """The per-keyframe detector that gives the detections of ``dataset``'s own samples (a ``TestClipDataset``):
        its clip (``clip_length``, ``clip_stride``, ``boundary``) and its transform's test resize (``short_side``,
        ``max_size``); ``kwargs`` set the rest (``size_divisible`` as the DataLoader's ``collate``)."""
        args = dict(mode="per_keyframe", **_dataset_input(dataset))
        args.update(kwargs)
        return cls(model, **args)

    def input_settings(self) -> Dict[str, object]:
        """The clip and resize settings a test dataset must share with this detector (``detect_dataset``)."""
        return {"clip_length": self.clip_length, "clip_stride": self.clip_stride, "boundary": self.boundary,
                "short_side": self.short_side, "max_size": self.max_size, "modality": self.modality,
                "position": self.position}

    @torch.no_grad()
    def __call__(self, source: FrameSource, *, video_index: int = 0, num_frames: Optional[int] = None,
                 boxes: Optional[Mapping[int, Tuple[np.ndarray, np.ndarray]]] = None, progress: bool = False,
                 desc: str = "detect", bar: Optional[tqdm] = None,
                 clip_source: Optional[FrameSource] = None, frames: Optional[Sequence[int]] = None) -> FrameDetections:
        """Detections on frames 1..``num_frames`` (default: all) of ``source``; see the class docstring.
        ``frames``: detect on these frames only (1-based, increasing, within 1..``num_frames``; e.g. AVA's
        keyframes, one a second), one clip each as in the per-keyframe mode whatever ``mode`` says: the frames
        between are detected on by no one, and decoded only where a clip holds them. ``clip_source``: the video's
        optical flow (``data.modality``; frame k holding flow k -> k+1, the frames' size), the clips of a flow
        network, or the second stream's of a two-stream detector; the 2D detector (and an RGB stream) still takes
        ``source``'s frames.
        ``boxes`` (a ``MODEL.PROPOSALS gt`` detector only): {frame: (boxes (N, 4) in original pixels, labels
        (N,) int64)}, frames without an entry have none (``annotations.keyframe_boxes``). ``bar``: a progress bar
        to advance by each step's frames, in place of one of its own."""
        n = source.num_frames if num_frames is None else int(num_frames)
        if not 1 <= n <= source.num_frames:
            raise ValueError(f"{source.path}: num_frames={n}, the source has {source.num_frames} frames")
        if (clip_source is None) != (self.modality == "rgb"):
            raise ValueError(f"{source.path}: a flow network (modality {self.modality!r}) takes its clips from the "
                             f"video's flow (clip_source), an RGB one from its frames: give clip_source to a flow "
                             f"network and only to it")
        if clip_source is not None and (clip_source.num_frames < n or tuple(clip_source.size) != tuple(source.size)):
            raise ValueError(f"{clip_source.path}: flow of {clip_source.num_frames} frames of "
                             f"{clip_source.size[0]}x{clip_source.size[1]} (h x w), the video has {n} frames of "
                             f"{source.size[0]}x{source.size[1]}")
        oracle = self.model.proposals == "gt"
        if oracle != (boxes is not None):
            raise ValueError(f"{source.path}: boxes are the proposals of a MODEL.PROPOSALS gt detector: give them "
                             f"to it and only to it (this one's proposals: {self.model.proposals!r})")
        h, w = (int(v) for v in source.size)
        size = resized_shape(h, w, self.short_side, self.max_size)

        def preparer(src: FrameSource):
            def prepare(frame: int, image: np.ndarray) -> np.ndarray:
                if image.shape[:2] != (h, w):
                    raise ValueError(f"{src.frame_name(frame)} is {image.shape[0]}x{image.shape[1]} (h x w), the "
                                     f"video's first frame {h}x{w}: all frames of a video must have one size")
                return resize_frame(image, size)
            return prepare

        cache = FrameCache()  # the current step's resized frames (read(..., retain=True))
        clip_cache = FrameCache() if clip_source is not None else cache

        def read(frames: Iterable[int]) -> Dict[int, np.ndarray]:
            return cache.read(source, frames, prepare=preparer(source), tag=size, retain=True)

        def read_flow(frames: Iterable[int]) -> Dict[int, np.ndarray]:
            return clip_cache.read(clip_source, frames, prepare=preparer(clip_source), tag=size, retain=True)

        readers = [read] if clip_source is None else [read, read_flow] if self.two_stream else [read_flow]

        if frames is not None:
            frames = [int(f) for f in frames]
            if any(not 1 <= f <= n for f in frames) or any(b <= a for a, b in zip(frames, frames[1:])):
                raise ValueError(f"{source.path}: frames must be increasing frame numbers within 1..{n}")
        subset = frames is not None
        decoded = source.decode_count
        self.stats = {"frames": n if frames is None else len(frames), "forwards_3d": 0, "positions_3d": 0}
        parts: List[FrameDetections] = []
        steps = self._per_keyframe(n, read, readers, frames) if self.mode == "per_keyframe" or frames is not None \
            else self._shared(n, read, readers)
        own_bar = bar is None
        total = n if frames is None else len(frames)
        bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False) if own_bar else bar
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                enabled=self.amp_dtype is not None):
                for keyframes, frames, clip, features in steps:
                    targets = [_scaled_boxes(boxes, k, (h, w), size) for k in keyframes] if oracle else None
                    parts.append(self._detect(keyframes, frames, clip, features, video_index, (h, w), targets))
                    bar.update(len(keyframes))
        finally:
            steps.close()  # stops a read-ahead thread
            if own_bar:
                bar.close()
        self.stats.update(decoded=source.decode_count - decoded,
                          max_frames_held=cache.max_held + (clip_cache.max_held if clip_cache is not cache else 0))
        dets = FrameDetections.concat(parts)
        if self.smooth_frames and not subset:  # smoothing averages neighbouring frames: none with a subset
            dets = smooth_detections(dets, {video_index: n}, window=self.smooth_frames)
        return dets.sorted_by_frame()  # one video: by frame, then score

    # -- the two modes: each yields (keyframes, their resized frames, clips (one (B, C, T, H, W) per stream) or
    #    None, features (one (B, C', T', h, w) per stream) or None) ------------------------------------------------
    def _backbones(self) -> List[Tuple[torch.nn.Module, str]]:
        """(3D network, its feature layer) of each stream, in the order of the readers and of ``features``."""
        streams = self.model.streams if self.two_stream else [self.model]
        return [(stream.backbone_3d, stream.feature_3d) for stream in streams]

    def _per_keyframe(self, n: int, read: Callable[[Iterable[int]], Dict[int, np.ndarray]],
                      readers: Sequence[Callable[[Iterable[int]], Dict[int, np.ndarray]]],
                      keyframes: Optional[Sequence[int]] = None):
        """``readers``: where each stream's clip frames come from (``read`` for RGB: the keyframes then come
        with them); ``keyframes``: the frames to detect on (default: 1..n)."""
        def load(keyframes: List[int]):
            clips = [clip_frames(k, n, self.clip_length, self.clip_stride, self.boundary, self.position)
                     for k in keyframes]
            wanted = [f for clip in clips for f in clip]
            per_stream = [reader(wanted) for reader in readers]
            frames = per_stream[0] if readers[0] is read else read(keyframes)
            return keyframes, frames, [self._clips(clips, frames_) for frames_ in per_stream]

        chosen = list(range(1, n + 1)) if keyframes is None else list(keyframes)
        batches = [chosen[i:i + self.batch_size] for i in range(0, len(chosen), self.batch_size)]
        for batch, frames, clip in _ahead(load, batches, self.read_ahead):
            self.stats["forwards_3d"] += 1
            self.stats["positions_3d"] += len(batch) * self.clip_length
            yield batch, frames, clip, None

    def _shared(self, n: int, read: Callable[[Iterable[int]], Dict[int, np.ndarray]],
                readers: Sequence[Callable[[Iterable[int]], Dict[int, np.ndarray]]]):
        """Anchor m is keyframe 1 + m st (those past n are virtual: their clips mapped by ``boundary`` like any
        other); keyframe f = 1 + m st + r takes anchor m's features, or for r > 0 anchors m and m + 1 mixed
        linearly (weight r / st on the later). Anchor m = j s + k (s the clip stride) is slice j of stream k: the
        clips of keyframes 1 + k st + j s st start st positions apart on one clip-stride grid of frames, so a
        window of the 3D network over that grid serves consecutive slices of the stream. Slice j of a window
        starting at feature step ``first`` is its steps j - first .. j - first + T' - 1."""
        st, steps, s = self.stride, self.steps, self.clip_stride
        anchors = -(-(n - 1) // st) + 1  # anchors 0 .. anchors - 1 serve keyframes 1..n
        streams = s
        plan = self._plan(total=-(-anchors // streams) + steps - 1)
        backbones = self._backbones()
        for backbone, _ in backbones:
            backbone.set_gating_window(self.clip_length if self.window > steps else None)
        slices: List[Dict[int, torch.Tensor]] = [{} for _ in backbones]

        def requests():
            """(group, its windows' frames, the first and last keyframe it serves), group by group."""
            keyframe = 1  # the first keyframe not yet served
            for group in self._groups(plan, streams):
                served = (group[-1][3] + 1) * streams - 1  # the last anchor these windows serve
                last = min(n, 1 + served * st)  # the keyframes up to it have both their anchors
                windows = [map_boundary(1 + k * st + (first * st + np.arange(self._positions(length))
                                                      - self.position) * s, n, self.boundary)
                           for first, length, _, _ in group for k in range(streams)]
                yield group, windows, keyframe, last
                keyframe = last + 1

        def load(request):
            group, windows, keyframe, last = request
            # the keyframes up to the windows' last frame too: the streams skip frames (clip stride s), and
            # the decoder would otherwise come back for them later, seeking backwards
            top = max(last, max(int(w.max()) for w in windows))
            wanted = np.concatenate(windows)
            if readers[0] is read:  # RGB clips: the keyframes come with them
                frames = read(np.concatenate(windows + [np.arange(keyframe, top + 1)]))
                clips = [self._clips(windows, frames)] + [self._clips(windows, r(wanted)) for r in readers[1:]]
            else:  # the keyframes from the frames, the clips from the flow
                frames = read(np.arange(keyframe, last + 1))
                clips = [self._clips(windows, r(wanted)) for r in readers]
            return request, frames, clips

        try:
            for (group, windows, keyframe, last), frames, clips in _ahead(load, requests(), self.read_ahead):
                sizes = [frames[keyframe].shape[:2]] * len(windows)  # the frames' size before padding
                formats = []
                for s_i, ((backbone, layer), stream_clips) in enumerate(zip(backbones, clips)):
                    features = backbone(stream_clips.to(self.device), sizes)[layer]
                    if features.shape[2] != group[0][1]:
                        raise ValueError(f"a window of {len(windows[0])} positions gave {features.shape[2]} feature "
                                         f"steps, expected {group[0][1]} (feature stride {st}): this network's "
                                         "temporal layout does not tile; use mode='per_keyframe'")
                    for g, (first, _, lo, hi) in enumerate(group):
                        for k in range(streams):
                            for j in range(lo, hi + 1):
                                slices[s_i][j * streams + k] = features[g * streams + k, :,
                                                                        j - first:j - first + steps]
                    formats.append(torch.channels_last_3d if features.is_contiguous(
                        memory_format=torch.channels_last_3d) else torch.contiguous_format)
                self.stats["forwards_3d"] += 1
                self.stats["positions_3d"] += sum(len(w) for w in windows)
                for b in range(keyframe, last + 1, self.batch_size):
                    chunk = list(range(b, min(b + self.batch_size, last + 1)))
                    sliced = [torch.stack([self._slice(stream_slices, f) for f in chunk]).contiguous(memory_format=fmt)
                              for stream_slices, fmt in zip(slices, formats)]
                    yield chunk, frames, None, sliced
                slices = [{m: value for m, value in stream_slices.items() if m >= last // st}
                          for stream_slices in slices]
        finally:
            for backbone, _ in backbones:
                backbone.set_gating_window(None)

    def _slice(self, slices: Mapping[int, torch.Tensor], keyframe: int) -> torch.Tensor:
        m, r = divmod(keyframe - 1, self.stride)
        if r == 0 or self.interpolation == "previous":
            return slices[m]
        return torch.lerp(slices[m], slices[m + 1], r / self.stride)

    def _positions(self, length: int) -> int:
        """Clip positions of a window of ``length`` feature steps (one clip: ``clip_length``)."""
        return (length - self.steps) * self.stride + self.clip_length

    def _plan(self, total: int) -> List[Tuple[int, int, int, int]]:
        """Windows ``(first, length, lo, hi)`` in feature steps covering steps 0..total - 1: each starts at step
        ``first``, holds ``length`` steps and serves the slices starting at lo..hi, those at least ``margin`` steps
        from its internal edges; consecutive windows serve consecutive slices."""
        windows, first, lo = [], 0, 0
        while True:
            length = min(self.window, total - first)
            last = first + length >= total
            hi = first + length - self.steps - (0 if last else self.margin)
            windows.append((first, length, lo, hi))
            if last:
                return windows
            lo = hi + 1
            first = lo - self.margin

    def _groups(self, plan, streams: int):
        """Consecutive windows of one length, batched so a forward takes about ``batch_size`` clips' positions."""
        per_forward = max(1, self.batch_size * self.clip_length // (streams * self._positions(self.window)))
        group = []
        for window in plan:
            if group and (len(group) == per_forward or window[1] != group[0][1]):
                yield group
                group = []
            group.append(window)
        yield group

    # -- shared steps -------------------------------------------------------------------------------------------
    def _clips(self, clips: Sequence[Sequence[int]], frames: Mapping[int, np.ndarray]) -> torch.Tensor:
        """(B, C, T, H, W): the frames (or flow) of each clip, raw (the network normalises them) and padded."""
        return stack_padded([to_tensor(np.stack([frames[int(f)] for f in clip])) for clip in clips],
                            self.size_divisible)

    def _detect(self, keyframes: Sequence[int], frames: Mapping[int, np.ndarray],
                clip: Optional[Sequence[torch.Tensor]], features: Optional[Sequence[torch.Tensor]], video_index: int,
                orig_size: Tuple[int, int],
                targets: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None) -> FrameDetections:
        """Detections of the 2D detector (or the ``targets``' boxes, in resized pixels) and the head on
        ``keyframes``, given their clips (``clip``, one tensor per stream) or their 3D ``features`` (one per
        stream)."""
        h, w = frames[keyframes[0]].shape[:2]
        num = len(keyframes)
        batch = {"image_sizes": [(h, w)] * num, "scale": [(h / orig_size[0], w / orig_size[1])] * num,
                 "flipped": [False] * num, "orig_size": [orig_size] * num}
        if targets is None:
            batch["keyframe"] = stack_padded([to_tensor(frames[k]) for k in keyframes], self.size_divisible)
        else:
            batch["boxes"] = [torch.from_numpy(b) for b, _ in targets]
            batch["labels"] = [torch.from_numpy(labels) for _, labels in targets]
        if clip is not None:
            batch["clip"] = clip[0]
            if self.two_stream:
                batch["flow_clip"] = clip[1]
        if features is not None and not self.two_stream:
            features = features[0]
        outputs = self.model(batch, features=features)
        outputs = [{k: (v.float() if v.is_floating_point() else v).cpu() for k, v in o.items()} for o in outputs]
        rows = detections_to_rows(outputs, {"video": ["video"] * num, "frame": list(keyframes)}, {"video": video_index})
        return FrameDetections.from_rows(rows)


def detect_dataset(detector: VideoDetector, dataset, *, progress: bool = True,
                   frames: Optional[Mapping[str, Sequence[int]]] = None) -> Detections:
    """``detector`` on every frame of every video of ``dataset`` (a ``TestClipDataset``: its videos, frame counts,
    frame sources and, for a ``MODEL.PROPOSALS gt`` detector, its boxes), one video at a time; with several
    processes each takes every world_size-th video. Returns ``Detections(videos=dataset.videos, ...)`` on every
    process, rows by video, frame, then score. The detector's clip and resize must be the dataset's (else a
    ValueError naming the setting), so that its detections are those of the dataset's samples. ``frames``: per
    video, the only frames to detect on (``VideoDetector``'s ``frames``; a video not in it gets none)."""
    expected = _dataset_input(dataset)
    for key, value in detector.input_settings().items():
        if expected[key] != value:
            raise ValueError(f"the detector's {key} {value!r} differs from the dataset's {expected[key]!r}: "
                             "evaluate with the test dataset's clip and resize (VideoDetector.for_dataset)")
    rank, world = get_rank(), get_world_size()
    videos = range(rank, len(dataset.videos), world)
    oracle = detector.model.proposals == "gt"
    parts = []
    total = sum(dataset.nframes[dataset.videos[i]] if frames is None else len(frames.get(dataset.videos[i], ()))
                for i in videos)
    with tqdm(total=total, desc="detect", unit="frame", disable=not (progress and is_main_process()),
              leave=False) as bar:
        for i in videos:
            video = dataset.videos[i]
            wanted = None if frames is None else list(frames.get(video, ()))
            if wanted is not None and not wanted:
                continue
            flow = dataset.source(video, flow=True) if dataset.modality.is_flow else None
            parts.append(detector(dataset.source(video), video_index=i, num_frames=dataset.nframes[video],
                                  boxes=dataset.annotations[video] if oracle else None, bar=bar, clip_source=flow,
                                  frames=wanted))
    dets = FrameDetections.concat(parts)
    if world > 1:
        dets = FrameDetections.concat(all_gather(dets))
    return Detections(videos=list(dataset.videos), frame_dets=dets.sorted_by_frame())


def _dataset_input(dataset) -> Dict[str, object]:
    """The clip and test resize of ``dataset`` (a ``ClipDataset`` with a transform that is not random)."""
    transform = dataset.transform
    if transform.is_random:
        raise ValueError(f"the test dataset's transform is random ({transform}); inference needs a fixed resize")
    side = transform.short_side if isinstance(transform.short_side, int) else int(transform.short_side[0])
    return {"clip_length": dataset.clip_length, "clip_stride": dataset.clip_stride, "boundary": dataset.boundary,
            "short_side": side, "max_size": transform.max_size, "modality": dataset.modality.name,
            "position": dataset.clip_length // 2}


def _scaled_boxes(boxes: Mapping[int, Tuple[np.ndarray, np.ndarray]], frame: int, orig_size: Tuple[int, int],
                  size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Frame ``frame``'s (boxes, labels) of ``boxes``, the boxes scaled from ``orig_size`` to ``size`` pixels as
    the test dataset scales them (``clips.scale_boxes``)."""
    frame_boxes, labels = boxes.get(frame, _NO_BOXES)
    return scale_boxes(np.asarray(frame_boxes, np.float32).reshape(-1, 4), orig_size, size), \
        np.asarray(labels, np.int64)


def _ahead(load: Callable, requests: Iterable, enabled: bool) -> Iterator:
    """``load(r)`` for each r of ``requests``, in order; ``enabled``: each loaded in a background thread while the
    caller works on the one before (frame decoding, OpenCV's resize and the tensor copies release the GIL)."""
    if not enabled:
        for request in requests:
            yield load(request)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = None
        try:
            for request in requests:
                future = pool.submit(load, request)
                if pending is not None:
                    yield pending.result()
                pending = future
            if pending is not None:
                yield pending.result()
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
