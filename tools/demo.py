#!/usr/bin/env python
"""Detects actions live: on a camera, a network stream or a video file read as a stream.

    python tools/demo.py --config-file CFG --weights W --input 0|rtsp://...|http://...|FILE
        [--show] [--output OUT.mp4] [--json OUT.jsonl] [--delay D] [--score-thresh 0.5] [--max-frames N]
        [--fps FPS] [--backend auto|pytorch|onnxruntime] [--exported DIR] [--force] [KEY VALUE ...]

Frames come one at a time from OpenCV (a camera index such as 0, a URL, or a file, with no frame count asked
for); each frame's detections come out ``--delay`` D frames later (``s3d_det.engine.streaming``): D = 0 gives
causal clips that end at the frame, the default the smallest D that gives training's centred clips. Boxes carry
track IDs from online tube linking (``evaluation.linking.OnlineLinker``, per action, every drawn detection
kept); the frame rate of the detections and each frame's latency (arrival to detections, the D frames' wait
included) are drawn on the frame. The networks run in onnxruntime when it is installed (``--backend auto``, the
default: 1.2-1.4x PyTorch's frame rate for the quick-start model, 1.1-1.2x for R50 + S3D-G on 2 CPU cores,
docs/benchmarks.md), on the model's two parts (the 3D part per anchor, the frame part per frame) exported to ONNX
on first use and cached (``$S3D_DET_CACHE``, default ``~/.cache/s3d_det``); ``--backend pytorch`` runs the model
itself; ``--exported DIR`` runs the files ``tools/export.py --parts`` wrote.

Outputs, each optional: ``--show`` a window ('q' or Esc stops), ``--output`` the drawn video (.mp4 or .avi, at the
input's frame rate, else ``--fps``, default 25), ``--json`` one JSON record per input frame, in order::

    {"frame": 1, "time": 0.0, "emitted_at": 8, "latency_ms": 812.4,
     "detections": [{"track": 0, "action": "wave", "label": 3, "score": 0.91, "box": [x1, y1, x2, y2]}, ...]}

(``time``: seconds into the stream, (frame - 1) / fps; ``emitted_at``: the frames read when the record was made,
frame + D, or the last frame read for the frames owed when the stream stops; boxes in pixels of the input frames;
detections scoring at least ``--score-thresh``). Ctrl-C (or SIGTERM), 'q', ``--max-frames`` or the end of the
stream stop it with complete outputs: every frame read gets its record and its drawn frame. The outputs are written
under temporary names and renamed at the end: an error leaves no half-written file, and an existing file is kept
unless ``--force``.

Exit codes: 0 done; 2 bad input (a missing file, a stream that does not open, frames changing size, an existing
output, ...), reported on one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from typing import List, Optional, Sequence

import numpy as np

from s3d_det.utils.errors import run_tool

logger = logging.getLogger("demo")
_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
_LIVE_RETRIES = 25  # failed reads in a row a camera or network stream may have before it counts as ended


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="CFG", help="model config")
    parser.add_argument("--weights", required=True, metavar="W", help="model weights")
    parser.add_argument("--input", required=True, metavar="0|URL|FILE",
                        help="a camera index, a stream URL (rtsp://, http://, ...) or a video file")
    parser.add_argument("--show", action="store_true", help="show the frames in a window")
    parser.add_argument("--output", metavar="OUT.mp4", help="write the drawn frames (.mp4 or .avi)")
    parser.add_argument("--json", metavar="OUT.jsonl", help="write one JSON record per input frame")
    parser.add_argument("--delay", type=int, metavar="D",
                        help="frames between a frame and its detections (default: the centred clips')")
    parser.add_argument("--backend", choices=("auto", "pytorch", "onnxruntime"), default="auto",
                        help="how the networks run: PyTorch, or onnxruntime on the model's parts exported to ONNX "
                             "once (cached); auto (default): onnxruntime when it is installed, else PyTorch")
    parser.add_argument("--exported", metavar="DIR",
                        help="run the networks from the files tools/export.py --parts wrote (onnxruntime, "
                             "torch.export or TorchScript) instead of PyTorch")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="keep detections scoring at least this")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--fps", type=float, help="frame rate of the stream when it gives none (default 25)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if not (args.show or args.output or args.json):
        parser.error("nothing to do: give --show, --output and/or --json")
    if len(args.opts) % 2:
        parser.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    if args.delay is not None and args.delay < 0:
        parser.error(f"--delay must be at least 0 frames, got {args.delay}")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.fps is not None and not 0 < args.fps <= 1000:
        parser.error(f"--fps must be in (0, 1000], got {args.fps}")
    if args.output and os.path.splitext(args.output)[1].lower() not in _CODECS:
        parser.error(f"--output {args.output}: the video must end in {' or '.join(_CODECS)}")
    return args


def check_outputs(args) -> None:
    """FileExistsError for an existing output without ``--force``: said before the model is built (and exported)."""
    for path in (args.output, args.json):
        if path and os.path.exists(path) and not args.force:
            raise FileExistsError(f"{path} exists: give another path, or --force to replace it")


def open_stream(spec: str):
    """An opened ``cv2.VideoCapture`` of a camera index, a URL or a file, and whether it is live (a camera or a
    network stream, whose reads may fail now and then)."""
    import cv2

    live = spec.isdigit() or "://" in spec
    if not live and not os.path.isfile(spec):
        raise FileNotFoundError(f"--input: no such file: {spec} (expected a camera index, a stream URL or a video "
                                "file)")
    capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    if not capture.isOpened():
        what = "camera" if spec.isdigit() else "stream" if live else "video file"
        raise ValueError(f"--input {spec}: OpenCV cannot open this {what}")
    return capture, live


def read_frames(capture, spec: str, live: bool):
    """Yields the stream's frames, (H, W, 3) uint8 RGB, until it ends (a file's end; a live source's
    ``_LIVE_RETRIES`` failed reads in a row)."""
    import cv2

    failed = 0
    while True:
        ok, image = capture.read()
        if not ok or image is None:
            failed += 1
            if not live or failed >= _LIVE_RETRIES:
                return
            time.sleep(0.02)
            continue
        failed = 0
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Outputs:
    """The drawn video, the JSONL records and the window, fed one result at a time. Files are written under
    temporary names beside their targets and renamed by ``close(ok=True)``; ``close(ok=False)`` removes them."""

    def __init__(self, args, names: List[str], fps: float):
        self.args, self.names, self.fps = args, names, fps
        self.paths = {key: path for key, path in (("video", args.output), ("json", args.json)) if path}
        check_outputs(args)
        for path in self.paths.values():
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self.writer = self.json = self.window = None
        if args.show:
            import cv2

            display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            if sys.platform.startswith("linux") and not display:
                # OpenCV's Qt windows abort the process (no exception) without a display
                raise ValueError("--show needs a display (DISPLAY is not set): write --output instead")
            try:
                cv2.namedWindow("s3d_det demo", cv2.WINDOW_NORMAL)
            except cv2.error:
                raise ValueError("--show: this OpenCV has no window support (e.g. opencv-python-headless); write "
                                 "--output instead") from None
            self.window = "s3d_det demo"
        self.temps = {key: f"{path}.part{os.getpid()}{os.path.splitext(path)[1]}" for key, path in self.paths.items()}
        self.json = open(self.temps["json"], "w") if "json" in self.temps else None
        self.frames = 0
        self.stop_requested = False

    def write(self, image: np.ndarray, frame: int, dets, tracks: np.ndarray, latency: float, rate: float,
              delay: int, emitted_at: int) -> None:
        import cv2

        from s3d_det.vis import draw_caption, draw_frame

        if self.json is not None:
            record = {"frame": frame, "time": round((frame - 1) / self.fps, 6), "emitted_at": emitted_at,
                      "latency_ms": round(latency * 1e3, 1),
                      "detections": [{"track": int(t), "action": self.names[int(label)], "label": int(label),
                                      "score": round(float(score), 5), "box": [round(float(v), 2) for v in box]}
                                     for t, label, score, box in zip(tracks, dets.label, dets.score, dets.boxes)]}
            self.json.write(json.dumps(record) + "\n")
            self.json.flush()
        if "video" in self.temps or self.window:
            drawn = draw_frame(image, frame, dets, tracks, self.names)
            drawn = draw_caption(drawn, f"{rate:.1f} fps  latency {latency * 1e3:.0f} ms  delay {delay}")
            bgr = cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
            if "video" in self.temps:
                h, w = bgr.shape[:2]
                bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)  # the writers need even sizes
                if self.writer is None:
                    codec = _CODECS[os.path.splitext(self.paths["video"])[1].lower()]
                    self.writer = cv2.VideoWriter(self.temps["video"], cv2.VideoWriter_fourcc(*codec), self.fps,
                                                  (bgr.shape[1], bgr.shape[0]))
                    if not self.writer.isOpened():
                        raise ValueError(f"OpenCV cannot write the video {self.paths['video']} ({codec}, "
                                         f"{bgr.shape[1]}x{bgr.shape[0]}, {self.fps} fps)")
                self.writer.write(bgr)
            if self.window:
                cv2.imshow(self.window, bgr)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    self.stop_requested = True
        self.frames += 1

    def close(self, ok: bool) -> List[str]:
        """Closes the files; ``ok``: renames them onto their targets (checking the video reads back), else
        removes them. Returns the paths written."""
        if self.json is not None:
            self.json.close()
        if self.writer is not None:
            self.writer.release()
        if self.window:
            import cv2

            cv2.destroyAllWindows()
        written = []
        try:
            if ok and "video" in self.temps:
                self._check_video()
            for key, tmp in self.temps.items():
                if ok and os.path.exists(tmp):
                    os.replace(tmp, self.paths[key])
                    written.append(self.paths[key])
        finally:
            for tmp in self.temps.values():
                if os.path.exists(tmp):
                    os.remove(tmp)
        return written

    def _check_video(self) -> None:
        """OSError unless the video written reads back with every frame (OpenCV's writer fails silently, e.g. on a
        full disk)."""
        import cv2

        capture = cv2.VideoCapture(self.temps["video"])
        decoded = 0
        while capture.isOpened() and capture.grab():
            decoded += 1
        capture.release()
        if decoded != self.frames:
            raise OSError(f"{self.paths['video']}: the video OpenCV wrote does not read back ({decoded} of "
                          f"{self.frames} frames; is the disk full?); nothing was written")


def backend_parts(args, cfg, model, names: List[str]):
    """The exported parts the stream runs (``--exported``, or for ``--backend onnxruntime``, and ``auto`` with
    onnxruntime installed, the model's parts exported to ONNX, once per model, in the cache), or None: PyTorch.
    Under ``auto`` a model that does not export runs in PyTorch, with a warning saying why."""
    import importlib.util

    import torch

    from s3d_det.deploy.export import cached_parts, parts_cache_folder
    from s3d_det.engine.streaming import ExportedParts

    threads = torch.get_num_threads()
    if args.exported:
        return ExportedParts(args.exported, threads=threads)
    missing = [m for m in ("onnxruntime", "onnxscript", "onnx") if importlib.util.find_spec(m) is None]
    from s3d_det.engine.defaults import resolve_device

    cuda = resolve_device(cfg.MODEL.DEVICE).type == "cuda"
    if args.backend == "pytorch" or (args.backend == "auto" and (missing or cuda)):  # onnxruntime runs on the CPU
        return None
    if missing:
        raise ValueError(f"--backend onnxruntime: {', '.join(missing)} not installed (pip install onnxruntime onnx "
                         "onnxscript, or the dev extra)")
    folder = parts_cache_folder(cfg, weights=args.weights)
    if not os.path.isfile(os.path.join(folder, "meta.json")):
        logger.warning("exporting the model's parts to ONNX for onnxruntime, once (about 30 s for the quick-start "
                       "model, minutes for R50 + S3D-G; kept in %s; --backend pytorch skips it)", folder)
    try:
        folder, _ = cached_parts(model, cfg, weights=args.weights, class_names=names)
    except Exception as e:  # noqa: BLE001 - an exporter failure, whatever its type, is one line
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        if args.backend == "onnxruntime" or isinstance(e, OSError):
            raise ValueError(f"--backend {args.backend}: the model's parts could not be exported to ONNX "
                             f"({why})") from None
        logger.warning("the model's parts do not export to ONNX (%s): running it in PyTorch", why)
        return None
    return ExportedParts(folder, threads=threads)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    from s3d_det.config import load_config
    from s3d_det.data.frames import usable_fps
    from s3d_det.engine.defaults import action_names, build_model, flow_stream
    from s3d_det.engine.streaming import FrameSizeChanged, StreamingDetector
    from s3d_det.evaluation.linking import OnlineLinker

    check_outputs(args)
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights: no such file: {args.weights}")
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.WEIGHTS", args.weights])
    if flow_stream(cfg, args.config_file, list(args.opts), tool="tools/demo.py") is not None:
        raise ValueError(f"{args.config_file}: a two-stream model needs optical flow, which the demo does not "
                         "compute on a live stream; use its RGB stream's config")
    names = action_names(cfg, args.weights)
    capture, live = open_stream(args.input)
    fps = args.fps or usable_fps(capture.get(5)) or 25.0  # 5: cv2.CAP_PROP_FPS
    model = build_model(cfg, num_classes=len(names))
    parts = backend_parts(args, cfg, model, names)
    stream = StreamingDetector.from_config(model, cfg, parts=parts,
                                           **({} if args.delay is None else {"delay": args.delay}))
    if cfg.TEST.SMOOTH_FRAMES:
        logger.warning("TEST.SMOOTH_FRAMES %d: a stream is not smoothed (it would wait for later frames)",
                       cfg.TEST.SMOOTH_FRAMES)
    linker = OnlineLinker(nms_iou=None, top_k=1 << 20)
    pending = {}  # the input frames not yet drawn, by number
    latencies: List[float] = []
    stop = {"signal": None, "reason": ""}

    def request_stop(signum, _frame):
        if stop["signal"] is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        stop["signal"] = signum

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    ok = False
    start = time.perf_counter()
    done_times: List[float] = []
    with ExitStack() as stack:
        stack.callback(capture.release)
        for sig, handler in handlers.items():
            stack.callback(signal.signal, sig, handler)
        outputs = Outputs(args, names, fps)
        try:
            def emit(results):
                for result in results:
                    dets = result.detections
                    dets = dets.select(dets.score >= args.score_thresh)
                    tracks = linker.update(result.frame, dets)
                    done_times.append(result.done)
                    recent = [t for t in done_times[-30:] if result.done - t <= 2.0]
                    rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and \
                        recent[-1] > recent[0] else 0.0
                    latencies.append(result.latency)
                    outputs.write(pending.pop(result.frame), result.frame, dets, tracks, result.latency, rate,
                                  stream.delay, stream.count)

            with torch.inference_mode():
                for image in read_frames(capture, args.input, live):
                    try:
                        ready = stream.push(image)
                    except FrameSizeChanged as e:  # the frames so far stay a complete stream
                        logger.warning("%s: %s; the stream ends at frame %d", args.input, e, stream.count)
                        stop["reason"] = f" (stopped: frame {stream.count + 1} changed size)"
                        break
                    pending[stream.count] = image
                    emit(ready)
                    if not args.quiet and stream.count % 25 == 0:
                        print(f"\r{stream.count} frames", end="", file=sys.stderr, flush=True)
                    if stop["signal"] is not None or outputs.stop_requested or stream.count == args.max_frames:
                        break
                if stream.count == 0:
                    raise ValueError(f"--input {args.input}: no frame could be read")
                emit(stream.finish())
            ok = True
        finally:
            written = outputs.close(ok)
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print("", file=sys.stderr)
    lat = np.array(latencies) * 1e3
    reason = {None: stop["reason"], signal.SIGINT: " (stopped by Ctrl-C)",
              signal.SIGTERM: " (stopped by SIGTERM)"}[stop["signal"]]
    backend = parts.backend if parts is not None else "pytorch"
    print(f"{stream.count} frames of {args.input}{reason}, delay {stream.delay} frames, {backend}: "
          f"{stream.count / elapsed:.1f} "
          f"frames/s, latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
          + (f"; wrote {', '.join(written)}" if written else ""))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(run_tool(main))
    except KeyboardInterrupt:  # before the stream started (e.g. in the first export), or a second Ctrl-C
        print("error: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)
