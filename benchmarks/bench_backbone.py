#!/usr/bin/env python
"""Backbone speed: our S3D against torchvision's, S3D-G against I3D, and GPU throughput.

Three sections, each printed as a table:

1. ``build_video_classifier("s3d", 400, preset="torchvision")`` against ``torchvision.models.video.s3d()``
   (both random init, eval, ``torch.inference_mode``), CPU, 16x224x224, batch 1 and 4, all given the
   same contiguous (B, 3, T, H, W) clip. A third column gives torchvision's S3D fed the clip in
   ``channels_last_3d`` memory format, which ours switches to internally: it shows how much of the
   gain is the memory format. Times are medians over ``--repeats``; the models alternate within each
   repeat (A B C, then C B A, ...) so that load changes on the machine hit all alike. Then the largest
   absolute difference of the logits after loading torchvision's state dict (with randomised BN
   statistics) into ours through ``convert_checkpoint(..., "torchvision_s3d")``.
2. ``s3dg`` against ``i3d`` (default architecture), CPU, batch 1, ``--size`` (default 16x224x224):
   wall-time ratio beside the FLOP ratio (multiply-adds, ``s3d_det.utils.flops.count_flops``).
3. With CUDA: clips/s and peak memory for ``s3dg`` and ``s3d`` at batch 8, 32x224x224, bf16 autocast,
   channels_last_3d, inference mode. Without CUDA the section says it was skipped.

Options: ``--repeats`` (default 5), ``--threads`` (default: all cores), ``--quick`` (small sizes, for
a smoke run), ``--json FILE`` (every figure, written atomically).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torchvision
from torch import nn

from s3d_det.checkpoint import convert_checkpoint
from s3d_det.modeling import build_video_classifier
from s3d_det.utils.flops import clip_input, count_flops
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

TV_SIZE = (16, 224, 224)  # torchvision's S3D needs at least 14x193x193 for its 2x7x7 head pool


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--size", nargs=3, type=int, default=[16, 224, 224], metavar=("T", "H", "W"),
                        help="clip size of the s3dg vs i3d section (default: 16 224 224)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 repeats, batch 1 only, 8x112x112 for s3dg vs i3d, small GPU batch")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write every figure to FILE")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.batches = (1, 4)
    args.gpu = dict(batch=8, size=(32, 224, 224), iters=20)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.batches = (1,)
        args.size = [8, 112, 112]
        args.gpu = dict(batch=2, size=(16, 112, 112), iters=3)
    return args


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
def time_once_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def time_alternating(models: Dict[str, nn.Module], clip: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Median forward time (ms) of each model on ``clip``, CPU, inference mode.

    One warm-up forward each; then every repeat runs each model once, the order reversed on every
    other repeat, so that both see the same machine load.
    """
    names = list(models)
    times: Dict[str, List[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for name in names:
            models[name](clip)
        for i in range(repeats):
            for name in names if i % 2 == 0 else reversed(names):
                times[name].append(time_once_ms(lambda: models[name](clip)))
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------------------------
# Section 1: ours vs torchvision
# ----------------------------------------------------------------------------------------------
class ChannelsLastInput(nn.Module):
    """Runs ``model`` on its input converted to ``channels_last_3d`` (the conversion is timed too)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last_3d))


def build_pair() -> Dict[str, nn.Module]:
    """Our S3D under the torchvision preset and torchvision's S3D (plain, and fed channels_last_3d),
    seeded random init, eval."""
    torch.manual_seed(0)
    ours = build_video_classifier("s3d", 400, preset="torchvision").eval()
    torch.manual_seed(0)
    tv = torchvision.models.video.s3d().eval()
    return {"ours": ours, "torchvision": tv, "torchvision_cl": ChannelsLastInput(tv)}


def bench_vs_torchvision(pair: Dict[str, nn.Module], batches: Sequence[int], repeats: int) -> List[dict]:
    rows = []
    for batch in batches:
        ms = time_alternating(pair, clip_input(TV_SIZE, batch), repeats)
        rows.append({"batch": batch, "ours_ms": ms["ours"], "torchvision_ms": ms["torchvision"],
                     "torchvision_cl_ms": ms["torchvision_cl"], "ratio": ms["ours"] / ms["torchvision"],
                     "ratio_cl": ms["ours"] / ms["torchvision_cl"]})
    return rows


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Gives every BatchNorm non-trivial affine parameters and running statistics (so that a
    conversion that drops or swaps them shows in the logits)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(1 + 0.1 * torch.rand(n, generator=gen))


def logits_max_abs_diff(pair: Dict[str, nn.Module]) -> float:
    """Max |ours - torchvision| of the logits on one 16x224x224 clip after converting torchvision's
    state dict into ours."""
    tv, ours = pair["torchvision"], pair["ours"]
    randomize_bn(tv)
    ours.load_state_dict(convert_checkpoint(tv.state_dict(), "torchvision_s3d").state_dict, strict=True)
    clip = clip_input(TV_SIZE)
    with torch.inference_mode():
        return (ours(clip) - tv(clip)).abs().max().item()


# ----------------------------------------------------------------------------------------------
# Section 2: s3dg vs i3d
# ----------------------------------------------------------------------------------------------
def bench_s3dg_vs_i3d(size: Sequence[int], repeats: int) -> Dict[str, float]:
    torch.manual_seed(0)
    models = {name: build_video_classifier(name, 400).eval() for name in ("s3dg", "i3d")}
    clip = clip_input(size)
    ms = time_alternating(models, clip, repeats)
    gflops = {name: count_flops(model, clip).gflops for name, model in models.items()}
    return {"size": list(size), "s3dg_ms": ms["s3dg"], "i3d_ms": ms["i3d"], "time_ratio": ms["s3dg"] / ms["i3d"],
            "s3dg_gflops": gflops["s3dg"], "i3d_gflops": gflops["i3d"], "flops_ratio": gflops["s3dg"] / gflops["i3d"]}


# ----------------------------------------------------------------------------------------------
# Section 3: GPU throughput
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_throughput(variant: str, batch: int, size: Sequence[int], iters: int, device: str = "cuda") -> Dict[str, float]:
    """clips/s and peak memory of ``variant``: bf16 autocast, channels_last_3d, inference mode, 3
    warm-up batches then ``iters`` timed ones. ``device`` other than CUDA only for smoke tests (no
    peak memory then)."""
    device = torch.device(device)
    model = build_video_classifier(variant, 400).eval().to(device)  # runs in channels_last_3d itself
    clip = clip_input(size, batch).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for _ in range(3):
            model(clip)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(clip)
        _sync(device)
        elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, clip
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"variant": variant, "batch": batch, "size": list(size), "clips_per_s": batch * iters / elapsed,
            "ms_per_batch": elapsed / iters * 1e3, "peak_mem_gib": peak}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def print_section(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print(f"\n== {title}")
    print(format_table(header, rows))


def run_torchvision_section(args: argparse.Namespace) -> dict:
    pair = build_pair()
    rows = bench_vs_torchvision(pair, args.batches, args.repeats)
    t, h, w = TV_SIZE
    print_section(
        f"S3D: ours (preset=torchvision) vs torchvision.models.video.s3d, CPU, {t}x{h}x{w}, "
        f"median of {args.repeats}, {args.threads} threads",
        ["batch", "ours ms", "torchvision ms", "ours/tv", "tv channels_last ms", "ours/tv channels_last"],
        [[r["batch"], f"{r['ours_ms']:.0f}", f"{r['torchvision_ms']:.0f}", f"{r['ratio']:.3f}",
          f"{r['torchvision_cl_ms']:.0f}", f"{r['ratio_cl']:.3f}"] for r in rows],
    )
    diff = logits_max_abs_diff(pair)
    print(f"logits max |ours - tv| after convert_checkpoint(tv, 'torchvision_s3d'): {diff:.3e}")
    return {"rows": rows, "logits_max_abs_diff": diff}


def run_s3dg_section(args: argparse.Namespace) -> dict:
    r = bench_s3dg_vs_i3d(args.size, args.repeats)
    t, h, w = args.size
    print_section(
        f"s3dg vs i3d (default architecture), CPU, batch 1, {t}x{h}x{w}, median of {args.repeats}",
        ["model", "ms", "GFLOPs"],
        [["s3dg", f"{r['s3dg_ms']:.0f}", f"{r['s3dg_gflops']:.2f}"],
         ["i3d", f"{r['i3d_ms']:.0f}", f"{r['i3d_gflops']:.2f}"],
         ["s3dg/i3d", f"{r['time_ratio']:.3f}", f"{r['flops_ratio']:.3f}"]],
    )
    return r


def run_gpu_section(args: argparse.Namespace) -> Optional[List[dict]]:
    if not torch.cuda.is_available():
        print("\n== GPU: skipped (torch.cuda.is_available() is False)")
        return None
    g = args.gpu
    rows = [gpu_throughput(v, g["batch"], g["size"], g["iters"]) for v in ("s3dg", "s3d")]
    t, h, w = g["size"]
    print_section(
        f"GPU ({torch.cuda.get_device_name()}), batch {g['batch']}, {t}x{h}x{w}, bf16 autocast, channels_last_3d",
        ["variant", "clips/s", "ms/batch", "peak GiB"],
        [[r["variant"], f"{r['clips_per_s']:.1f}", f"{r['ms_per_batch']:.1f}", f"{r['peak_mem_gib']:.2f}"]
         for r in rows],
    )
    return rows


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    args.threads = args.threads or available_cores()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {args.threads} CPU threads")
    results = {
        "threads": args.threads,
        "repeats": args.repeats,
        "vs_torchvision": run_torchvision_section(args),
        "s3dg_vs_i3d": run_s3dg_section(args),
        "gpu": run_gpu_section(args),
    }
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
