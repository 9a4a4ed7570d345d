#!/usr/bin/env python
"""Video inference speed: frames per second of the shared and the per-keyframe mode, where the time goes, memory.

    python benchmarks/bench_video_inference.py [--config-file CFG] [--weights W] [--frames 300]
        [--long-window 128] [--repeats 3] [--threads N] [--device cpu|cuda] [--json OUT.json] [KEY VALUE ...]

A synthetic video (``s3d_det.data.synthetic``: stick figures on a moving background) of ``--frames`` frames at
320x240 is written as an MP4, and ``VideoDetector`` (``s3d_det.engine.inference``) detects in every frame of it,
decoding included, in each mode: ``per_keyframe`` (one clip per keyframe), ``shared`` with the config's
``TEST.WINDOW`` (default: one clip per window; every st-th keyframe's clip serves its neighbours too) and ``shared``
with ``--long-window`` positions per window (0: not timed). The model is the config's (default: the quick-start
``configs/synthetic/s3dg_tiny.yaml`` on the CPU; on CUDA the R50 + S3D-G JHMDB config, bf16 autocast from its
``SOLVER.AMP_DTYPE``) with random weights unless ``--weights`` is given. The weights change the work only where
the head scores people (``MODEL.ROI_HEAD.SCORING person``): it skips the proposals whose objectness is not above
``SCORE_THRESH``, few with random weights (objectness about 0.5), most of the ``POST_NMS_TOP_N_TEST`` with trained
ones; time a trained model there.

Each mode runs once on 16 frames to warm up, then ``--repeats`` times over the whole video, the modes alternating
(on a busy machine each is slowed alike); the table gives the median frames/s and, from the median run, the CPU
time a frame (all threads; on a shared machine it moves less than the wall time) and the time a frame in each
stage (forward hooks, and a wrapper of the RPN's ``propose``: the 3D network, the 2D backbone + RPN, the RoI
head; "rest" is decoding, resizing, normalising, slicing and the rows; CPU time on the CPU, wall time on CUDA),
the clip positions the 3D network took a frame, and the most decoded frames held at once. Peak memory: the
process's peak resident set (``ru_maxrss``, all modes together) and on CUDA each mode's peak allocated GPU memory.
The last line gives the speed-up of the shared mode and the most any sharing of the 3D network could give: the
per-keyframe time a frame over the same less its 3D network's (the 2D detector, the RoI head and the rest run on
every frame in both modes). ``--json`` writes ``{"shared_fps", "per_keyframe_fps", "peak_rss_mb", "free_3d_bound",
"rows": [...], ...}``.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import cv2
import torch

from s3d_det.config import load_config
from s3d_det.data.synthetic import plan_video, render_frame
from s3d_det.engine.defaults import build_model, known_num_classes
from s3d_det.engine.inference import VideoDetector, open_video
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

CPU_CONFIG = "configs/synthetic/s3dg_tiny.yaml"
GPU_CONFIG = "configs/jhmdb/s3dg_r50_16x1_split1.yaml"
STAGES = {"3D network": "backbone_3d", "2D + RPN": ("backbone_2d", "rpn"), "RoI head": "roi_head"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", metavar="CFG", help=f"default: {CPU_CONFIG} (CPU), {GPU_CONFIG} (CUDA)")
    parser.add_argument("--weights", metavar="W", help="trained weights (default: random)")
    parser.add_argument("--frames", type=int, default=300, help="frames of the test video (default: 300)")
    parser.add_argument("--long-window", type=int, default=128,
                        help="also time the shared mode with windows of this many positions (0: not)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.frames < 16 or args.repeats < 1 or args.long_window < 0:
        parser.error("--frames must be at least 16, --repeats at least 1, --long-window at least 0")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.config_file = args.config_file or (GPU_CONFIG if args.device == "cuda" else CPU_CONFIG)
    return args


def write_video(path: str, frames: int) -> None:
    """A synthetic 320x240 video of ``frames`` frames at 25 fps (MPEG-4 Part 2)."""
    plan = plan_video(seed=0, index=0, size=(240, 320), min_frames=frames, max_frames=frames)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for t in range(1, frames + 1):
        writer.write(render_frame(plan, t)[0])
    writer.release()


class StageTimer:
    """Wall and CPU seconds spent in named submodules of the models (CUDA synchronised): forward hooks, and for
    an RPN with ``propose`` (``ScoredRPN``, which the detector calls directly, not through ``forward``) a wrapper
    of that method on the instance."""

    def __init__(self, models: Sequence[torch.nn.Module], device: torch.device):
        self.device = device
        self.handles = []
        for model in models:
            for stage, names in STAGES.items():
                for name in (names,) if isinstance(names, str) else names:
                    module = getattr(model, name)
                    if hasattr(module, "propose"):
                        module.propose = self._timed(module.propose, stage)
                        continue
                    self.handles.append(module.register_forward_pre_hook(lambda m, a, s=stage: self._start(s)))
                    self.handles.append(module.register_forward_hook(lambda m, a, o, s=stage: self._stop(s)))
        self._started: Dict[str, tuple] = {}
        self.reset()

    def _timed(self, method, stage: str):
        def timed(*args, **kwargs):
            self._start(stage)
            try:
                return method(*args, **kwargs)
            finally:
                self._stop(stage)
        return timed

    def _now(self) -> tuple:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def _start(self, stage: str) -> None:
        self._started[stage] = self._now()

    def _stop(self, stage: str) -> None:
        (wall, cpu), (wall0, cpu0) = self._now(), self._started.pop(stage)
        self.wall[stage] += wall - wall0
        self.cpu[stage] += cpu - cpu0

    def reset(self) -> None:
        self.wall: Dict[str, float] = defaultdict(float)
        self.cpu: Dict[str, float] = defaultdict(float)


def run_once(detector: VideoDetector, video: str, timer: StageTimer) -> Dict:
    """One pass over the whole video with a fresh decoder (decoding is part of the time): wall and CPU seconds,
    seconds by stage."""
    device = detector.device
    source = open_video(video)
    timer.reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    detector(source)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "stages": dict(timer.wall),
            "stages_cpu": dict(timer.cpu)}


def summarize(detector: VideoDetector, runs: List[Dict]) -> Dict:
    """The row of one mode: median frames/s; the stages and CPU time of the median run."""
    n = detector.stats["frames"]
    walls = [r["wall"] for r in runs]
    median = runs[walls.index(statistics.median_low(walls))]
    by_stage = {}
    for clock, total, stages in (("wall", median["wall"], median["stages"]),
                                 ("cpu", median["cpu"], median["stages_cpu"])):
        ms = {stage: 1000 * stages.get(stage, 0.0) / n for stage in STAGES}
        ms["rest"] = 1000 * total / n - sum(ms.values())
        by_stage[clock] = ms
    return {"mode": detector.mode, "window": detector.window_positions if detector.mode == "shared" else "-",
            "fps": n / statistics.median(walls), "run_s": walls, "cpu_ms_per_frame": 1000 * median["cpu"] / n,
            "ms_per_frame": by_stage["wall"], "cpu_ms_per_frame_by_stage": by_stage["cpu"],
            "positions_3d_per_frame": detector.stats["positions_3d"] / n,
            "max_frames_held": detector.stats["max_frames_held"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or available_cores())
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.DEVICE", device.type]
                      + (["MODEL.WEIGHTS", args.weights] if args.weights else []))
    num_classes = cfg.MODEL.ROI_HEAD.NUM_CLASSES or known_num_classes(cfg)
    if not num_classes:
        raise SystemExit(f"{args.config_file}: set MODEL.ROI_HEAD.NUM_CLASSES")
    torch.manual_seed(cfg.SEED)
    model = build_model(cfg, num_classes).to(device).eval()
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    modes = [("per_keyframe", None), ("shared", cfg.TEST.WINDOW)] + ([("shared", args.long_window)]
                                                                     if args.long_window else [])
    detectors = [VideoDetector.from_config(model, cfg, mode=mode, window=window) for mode, window in modes]
    timer = StageTimer([detector.model for detector in detectors], device)  # each runs its copy (BatchNorm folded)
    runs: List[List[Dict]] = [[] for _ in detectors]
    peak_gpu = [0.0 for _ in detectors]
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "video.mp4")
        write_video(video, args.frames)
        for detector in detectors:  # warm-up
            detector(open_video(video), num_frames=16)
        for repeat in range(args.repeats):  # the modes alternate, so that a busy machine slows each alike
            for i, detector in enumerate(detectors):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                runs[i].append(run_once(detector, video, timer))
                if device.type == "cuda":
                    peak_gpu[i] = max(peak_gpu[i], torch.cuda.max_memory_allocated(device) / 2 ** 20)
                window = f", window {detector.window_positions}" if detector.mode == "shared" else ""
                print(f"  run {repeat + 1}, {detector.mode}{window}: {args.frames / runs[i][-1]['wall']:.1f} frames/s",
                      file=sys.stderr, flush=True)
    rows = [summarize(detector, r) for detector, r in zip(detectors, runs)]
    if device.type == "cuda":
        for row, peak in zip(rows, peak_gpu):
            row["peak_gpu_mib"] = peak
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    amp = f", {cfg.SOLVER.AMP_DTYPE} autocast" if device.type == "cuda" and cfg.SOLVER.AMP_DTYPE else ""
    print(f"video inference on {device.type} ({machine}{amp}), torch {torch.__version__}: {args.config_file}, "
          f"{args.frames} frames 320x240, batch {cfg.TEST.BATCH_SIZE}, {cfg.MODEL.RPN.POST_NMS_TOP_N_TEST} proposals "
          f"a frame; median of {args.repeats}")
    # stages in CPU time on the CPU (it moves less than the wall time on a shared machine), wall time on CUDA
    key, unit = ("ms_per_frame", "ms") if device.type == "cuda" else ("cpu_ms_per_frame_by_stage", "CPU ms")
    headers = (["mode", "window", "frames/s", "ms/frame", "CPU ms/frame"] + [f"{s} {unit}" for s in STAGES]
               + [f"rest {unit}", "3D positions/frame", "frames held"])
    table = [[r["mode"], r["window"], f"{r['fps']:.1f}", f"{1000 / r['fps']:.1f}", f"{r['cpu_ms_per_frame']:.1f}"]
             + [f"{r[key][s]:.1f}" for s in list(STAGES) + ["rest"]]
             + [f"{r['positions_3d_per_frame']:.1f}", r["max_frames_held"]] for r in rows]
    if device.type == "cuda":
        headers.append("peak GPU MiB")
        for line, r in zip(table, rows):
            line.append(f"{r['peak_gpu_mib']:.0f}")
    print(format_table(headers, table))
    shared, per_keyframe = rows[1]["fps"], rows[0]["fps"]
    cpu_ratio = rows[0]["cpu_ms_per_frame"] / rows[1]["cpu_ms_per_frame"]
    # the most any sharing of the 3D network can give: the per-keyframe frame without its 3D network's time
    frame_ms = rows[0]["cpu_ms_per_frame"] if device.type == "cpu" else 1000 / per_keyframe
    free_3d = frame_ms / (frame_ms - rows[0][key]["3D network"])
    print(f"shared / per-keyframe: {shared / per_keyframe:.2f}x in frames/s, {cpu_ratio:.2f}x in CPU time a frame; "
          f"at most {free_3d:.2f}x if the 3D network cost nothing; peak RSS {peak_rss:.0f} MB")
    if args.json:
        write_json(args.json, {"shared_fps": shared, "per_keyframe_fps": per_keyframe, "peak_rss_mb": peak_rss,
                               "free_3d_bound": free_3d,
                               "device": device.type, "machine": machine, "torch": torch.__version__,
                               "config": args.config_file, "frames": args.frames, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
