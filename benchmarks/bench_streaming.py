#!/usr/bin/env python
"""Streaming speed: throughput and per-frame latency of ``StreamingDetector`` (``tools/demo.py``'s engine).

    python benchmarks/bench_streaming.py [--configs tiny r50] [--tiny-weights W] [--frames 96] [--r50-frames 32]
        [--repeats 3] [--threads N] [--device cpu|cuda] [--backends pytorch onnxruntime] [--input-fps 25]
        [--json OUT.json]

A synthetic video (``s3d_det.data.synthetic``, 320x240) is rendered into memory (no decoding is timed) and pushed
frame by frame, as fast as the detector takes them, through ``StreamingDetector`` with the causal delay (D = 0)
and the centred one (``centred_delay``), for the quick-start config ("tiny", ``configs/synthetic/s3dg_tiny.yaml``)
and the R50 + S3D-G one ("r50", ``configs/jhmdb/s3dg_r50_16x1_split1.yaml``, 21 actions). Weights are random
unless given (``--tiny-weights``: with ``SCORING person`` a random RPN's objectness keeps few proposals, a
trained one most, so time a trained tiny model). Each setting runs once on 8 frames to warm up, then
``--repeats`` times, the settings alternating; the table gives medians over the runs. Backends: ``pytorch``
(the model itself, BatchNorm folded) and ``onnxruntime`` (the model's two parts exported to ONNX first,
``deploy.export.export_parts_folder``, and run by ``engine.streaming.ExportedParts``; the export is not timed).

Columns: frames/s (frames over the run's wall time); compute latency p50 / p95 (from the start of the push of
frame f + D to frame f's detections: the work a frame waits for once its last needed frame is there); latency
at ``--input-fps`` (a live source: D frames at that rate plus the compute latency, when the detector keeps up,
i.e. frames/s >= input fps; else "falls behind"). ``--json`` writes every figure.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from s3d_det.config import load_config
from s3d_det.data.synthetic import plan_video, render_frame
from s3d_det.deploy.export import export_parts_folder
from s3d_det.engine.defaults import build_model
from s3d_det.engine.streaming import ExportedParts, StreamingDetector, centred_delay
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

CONFIGS = {"tiny": ("configs/synthetic/s3dg_tiny.yaml", 6), "r50": ("configs/jhmdb/s3dg_r50_16x1_split1.yaml", 21)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--tiny-weights", metavar="W", help="trained weights of the tiny config (default: random)")
    parser.add_argument("--frames", type=int, default=96, help="frames pushed per run, tiny config (default: 96)")
    parser.add_argument("--r50-frames", type=int, default=32, help="frames pushed per run, r50 config (default: 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (default: 3)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--backends", nargs="+", choices=("pytorch", "onnxruntime"), default=None,
                        help="how the networks run (default: both on the CPU, pytorch on CUDA)")
    parser.add_argument("--input-fps", type=float, default=25.0, help="the live source's rate (default: 25)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args(argv)
    if min(args.frames, args.r50_frames) < 16 or args.repeats < 1 or args.input_fps <= 0:
        parser.error("--frames and --r50-frames must be at least 16, --repeats at least 1, --input-fps positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.backends = args.backends or (["pytorch"] if args.device == "cuda" else ["pytorch", "onnxruntime"])
    if args.device == "cuda" and "onnxruntime" in args.backends:
        parser.error("--device cuda: the onnxruntime backend runs on the CPU; give --backends pytorch")
    return args


def frames(n: int) -> List[np.ndarray]:
    plan = plan_video(seed=0, index=3, size=(240, 320), min_frames=n, max_frames=n)
    return [np.ascontiguousarray(render_frame(plan, t)[0][..., ::-1]) for t in range(1, n + 1)]  # BGR -> RGB


def run(stream: StreamingDetector, images: List[np.ndarray]) -> Dict[str, object]:
    """One pass over ``images``: wall time and each frame's compute latency (s)."""
    stream.reset()
    latency = []
    start = time.perf_counter()
    with torch.inference_mode():
        for image in images:
            began = time.perf_counter()
            latency += [r.done - began for r in stream.push(image)]
        began = time.perf_counter()
        latency += [r.done - began for r in stream.finish()]
    return {"seconds": time.perf_counter() - start, "latency": latency[:len(images) - stream.delay]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = []
    tmp = tempfile.mkdtemp(prefix="bench_streaming_")
    for name in args.configs:
        path, classes = CONFIGS[name]
        weights = args.tiny_weights if name == "tiny" else None
        opts = ["MODEL.DEVICE", args.device, "MODEL.BACKBONE_3D.PRETRAIN", ""]
        cfg = load_config(os.path.join(ROOT, path), opts + (["MODEL.WEIGHTS", weights] if weights else []))
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=classes)
        n = args.frames if name == "tiny" else args.r50_frames
        images = frames(n)
        for backend in args.backends:
            parts = None
            if backend == "onnxruntime":
                folder = os.path.join(tmp, f"{name}_parts")
                export_parts_folder(model, cfg, "onnx", folder, class_names=[str(k) for k in range(classes)])
                parts = ExportedParts(folder, threads=torch.get_num_threads())
            for delay in (0, None):
                stream = StreamingDetector.from_config(model, cfg, parts=parts,
                                                       **({} if delay is None else {"delay": delay}))
                run(stream, images[:8])  # warm-up
                settings.append({"config": name, "backend": backend, "delay": stream.delay, "stream": stream,
                                 "images": images, "runs": [], "centred": stream.delay == centred_delay(
                                     clip_length=cfg.INPUT.CLIP_LENGTH, clip_stride=cfg.INPUT.CLIP_STRIDE,
                                     feature_stride=stream.detector.stride)})
    for _ in range(args.repeats):
        for s in settings:
            s["runs"].append(run(s["stream"], s["images"]))
    rows, figures = [], []
    for s in settings:
        fps = statistics.median(len(s["images"]) / r["seconds"] for r in s["runs"])
        lat = np.concatenate([r["latency"] for r in s["runs"]]) * 1e3
        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
        live = s["delay"] * 1e3 / args.input_fps + p50 if fps >= args.input_fps else None
        placement = s["stream"].placement
        figures.append({"config": s["config"], "backend": s["backend"], "delay": s["delay"],
                        "position": placement.position, "interpolation": placement.interpolation, "fps": fps,
                        "latency_p50_ms": p50, "latency_p95_ms": p95, "live_latency_ms": live,
                        "frames": len(s["images"])})
        rows.append([f"{s['config']}, {s['backend']}, D = {s['delay']}" + (" (centred)" if s["centred"] else
                                                                             " (causal)"),
                     f"{fps:.2f}", f"{p50:.0f}", f"{p95:.0f}", "falls behind" if live is None else f"{live:.0f}"])
    print(f"StreamingDetector on {args.device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads of {available_cores()} cores), torch {torch.__version__}, 320x240, "
          f"median of {args.repeats} runs")
    shutil.rmtree(tmp, ignore_errors=True)
    print(format_table(["config, backend, delay", "frames/s", "compute latency p50 (ms)", "p95 (ms)",
                        f"latency at {args.input_fps:g} fps (ms)"], rows))
    if args.json:
        write_json(args.json, {"device": args.device, "threads": torch.get_num_threads(), "rows": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
