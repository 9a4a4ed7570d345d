#!/usr/bin/env python
"""The S3D-G paper's architecture study on the synthetic clip set: top-1 against FLOPs of every variant.

    python benchmarks/bench_architectures.py [--variants i2d i3d s3d s3dg bottom_heavy_i3d top_heavy_i3d]
        [--splits mixed_3b mixed_4b mixed_5b] [--seeds 0 1 2] [--iters N] [--config CFG] [--paper-flops]
        [--out output/architectures] [KEY VALUE ...]

Xie et al. (ECCV 2018) compare I2D, I3D, S3D, S3D-G and the "bottom-heavy" / "top-heavy" I3Ds, whose 3D convolutions
stop or start at a layer (their accuracy against FLOPs figure). Here each architecture trains the synthetic clip
classifier (``--config``, default ``configs/cls/synthetic/s3dg_tiny.yaml``: a quarter-width network on 8 x 64 x 64 clips
of actors whose class is their motion) through ``s3d_det.engine.classification.train_classifier``, with
``MODEL.BACKBONE_3D.VARIANT`` (and ``SPLIT_AT``) set, once per seed (``SEED``). ``bottom_heavy_i3d`` and
``top_heavy_i3d`` are swept over ``--splits`` (the first layer of the upper part, one of
``s3d_det.modeling.s3dg.TEMPORAL_LAYERS`` or ``end``); an entry ``top_heavy_i3d@mixed_4c`` names one point. ``--iters``
shortens every training (warm-up and checkpoint period scaled with it; default: the config's ``SOLVER.MAX_ITER``); ``KEY
VALUE`` overrides go to every run (e.g. a smaller synthetic set: ``DATASETS.ROOT /tmp/clips
DATASETS.SYNTHETIC_NUM_VIDEOS 12 DATASETS.SYNTHETIC_TEST_VIDEOS 4``).

Every run has its own ``OUTPUT_DIR``, ``--out/<architecture>/seed<k>``; a run whose ``weights_3d.pth`` (trained with the
same config: its meta's digest) and ``cls_results.json`` are there is read, not trained again, and an interrupted run
resumes from its last checkpoint, so the study can be stopped and started again. A folder holding another config's
weights is an error: it is never overwritten. Then:

* a table: architecture, runs, top-1 mean +- standard deviation over the seeds (percent, multi-view test of the config),
  parameters and GFLOPs (multiply-adds of one forward pass over one clip of the config's training input, counted as
  ``tools/model_stats.py`` counts them: ``s3d_det.utils.flops.count_flops``); with ``--paper-flops`` also the GFLOPs of
  the full-width network of that architecture at the paper's 64 x 224 x 224;
* ``--out/architectures.json``: every run (variant, split, seed, folder, top-1, top-5, mean class accuracy) and the
  summary rows, written atomically after every run;
* ``--out/architectures.png``: top-1 against GFLOPs, one labelled point per architecture with its standard deviation
  as error bar, written atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from s3d_det.config import ConfigError, load_config
from s3d_det.modeling.s3dg import S3DG, SPLIT_END, TEMPORAL_LAYERS, VARIANTS, VideoClassifier
from s3d_det.utils.errors import run_tool
from s3d_det.utils.flops import clip_input, count_flops, count_params
from s3d_det.utils.io import atomic_write, write_json
from s3d_det.utils.table import format_table

DEFAULT_CONFIG = "configs/cls/synthetic/s3dg_tiny.yaml"
DEFAULT_VARIANTS = ("i2d", "i3d", "s3d", "s3dg", "bottom_heavy_i3d", "top_heavy_i3d")
DEFAULT_SPLITS = ("mixed_3b", "mixed_4b", "mixed_5b")
HEAVY = ("bottom_heavy_i3d", "top_heavy_i3d")
PAPER_INPUT = (64, 224, 224)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), metavar="VARIANT",
                        help=f"architectures: {', '.join(VARIANTS)}, or a heavy one at one split point as "
                             "top_heavy_i3d@mixed_4c (default: all, the heavy ones at every --splits point)")
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), metavar="LAYER",
                        help=f"split points of bottom_heavy_i3d / top_heavy_i3d (default: {' '.join(DEFAULT_SPLITS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds, one run each (default: 0 1 2)")
    parser.add_argument("--iters", type=int, default=None, help="training iterations per run (default: the config's)")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"the classification config (default: {DEFAULT_CONFIG})")
    parser.add_argument("--out", default="output/architectures", help="folder of the runs, the JSON and the plot")
    parser.add_argument("--paper-flops", action="store_true",
                        help="also count the full-width network's GFLOPs at 64x224x224 (a few seconds each)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error(f"--iters must be at least 1, got {args.iters}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeat a seed: {args.seeds}")
    for split in args.splits:
        if split not in TEMPORAL_LAYERS + (SPLIT_END,):
            parser.error(f"--splits: {split!r} is not one of {', '.join(TEMPORAL_LAYERS + (SPLIT_END,))}")
    try:
        args.architectures = architectures(args.variants, args.splits)
    except ValueError as e:
        parser.error(str(e))
    return args


def architectures(variants: Sequence[str], splits: Sequence[str]) -> List[Tuple[str, str, str]]:
    """(name, variant, split_at) of every architecture to train, in order, without repeats: a heavy variant once per
    split point (named ``variant@split``), the others once (split_at is then unused: the config's)."""
    out: List[Tuple[str, str, str]] = []
    for entry in variants:
        variant, _, split = entry.partition("@")
        if variant not in VARIANTS:
            raise ValueError(f"--variants: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if split and variant not in HEAVY:
            raise ValueError(f"--variants: {entry!r}: only {' and '.join(HEAVY)} take a split point")
        if split and split not in TEMPORAL_LAYERS + (SPLIT_END,):
            raise ValueError(f"--variants: {entry!r}: {split!r} is not one of "
                             f"{', '.join(TEMPORAL_LAYERS + (SPLIT_END,))}")
        points = [split] if split else (list(splits) if variant in HEAVY else [""])
        for point in points:
            item = (f"{variant}@{point}" if point else variant, variant, point)
            if item not in out:
                out.append(item)
    return out


def run_config(args, variant: str, split_at: str, seed: int, output_dir: str):
    """The frozen config of one run: ``--config`` with the architecture, seed, ``--iters`` (warm-up and checkpoint
    period scaled with it) and ``OUTPUT_DIR``; then the user's overrides."""
    base = load_config(args.config, list(args.opts))
    overrides = ["MODEL.BACKBONE_3D.VARIANT", variant, "SEED", str(seed), "OUTPUT_DIR", output_dir]
    if split_at:
        overrides += ["MODEL.BACKBONE_3D.SPLIT_AT", split_at]
    if args.iters is not None:
        scale = args.iters / base.SOLVER.MAX_ITER
        overrides += ["SOLVER.MAX_ITER", str(args.iters),
                      "SOLVER.WARMUP_ITERS", str(int(base.SOLVER.WARMUP_ITERS * scale)),
                      "SOLVER.STEPS", str([max(1, int(s * scale)) for s in base.SOLVER.STEPS]),
                      "SOLVER.CHECKPOINT_PERIOD", str(max(1, int(base.SOLVER.CHECKPOINT_PERIOD * scale)))]
    return load_config(args.config, overrides + list(args.opts))


def finished_run(cfg) -> Optional[dict]:
    """The results of a run already trained with exactly ``cfg`` in its OUTPUT_DIR; None when it is not finished.
    ConfigError when the folder holds weights trained with another config."""
    from s3d_det.checkpoint.video import load_converted
    from s3d_det.engine.classification import WEIGHTS_3D_NAME, config_digest

    weights = os.path.join(cfg.OUTPUT_DIR, WEIGHTS_3D_NAME)
    results = os.path.join(cfg.OUTPUT_DIR, "cls_results.json")
    if not os.path.isfile(weights):
        return None
    _, meta = load_converted(weights)
    if meta.get("config_digest") != config_digest(cfg):
        raise ConfigError(f"{weights} was trained with another config than this run's: remove {cfg.OUTPUT_DIR} to "
                          "train it again, or give another --out")
    if not os.path.isfile(results):
        return None
    with open(results) as f:
        return json.load(f)


def train_run(cfg) -> dict:
    """Trains (or resumes) one run; its cls_results.json."""
    from s3d_det.engine.classification import train_classifier

    train_classifier(cfg, resume=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "cls_results.json")) as f:
        return json.load(f)


def model_cost(cfg, num_classes: int) -> Tuple[int, float]:
    """Parameters and GFLOPs of the run's classifier over one clip of its training input (CLIP_LENGTH x CROP_SIZE^2)."""
    model = VideoClassifier.from_config(cfg, num_classes).eval()
    clip = clip_input((cfg.INPUT.CLIP_LENGTH, cfg.INPUT.CROP_SIZE, cfg.INPUT.CROP_SIZE))
    return count_params(model), count_flops(model, clip).gflops


def paper_gflops(variant: str, split_at: str) -> float:
    """GFLOPs of the full-width default network of this architecture at 64x224x224, 400 classes."""
    kwargs = {"split_at": split_at} if split_at else {}
    model = VideoClassifier(S3DG(variant, out_features=("mixed_5c",), **kwargs), 400).eval()
    return count_flops(model, clip_input(PAPER_INPUT)).gflops


def summarize(runs: List[dict], names: Sequence[str]) -> List[dict]:
    """One row per architecture with runs: top-1 mean and standard deviation (0 for one run), params, GFLOPs."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["architecture"] == name]
        if not mine:
            continue
        top1 = [r["top1"] for r in mine]
        row = {"architecture": name, "variant": mine[0]["variant"], "split_at": mine[0]["split_at"], "runs": len(mine),
               "seeds": [r["seed"] for r in mine], "top1_mean": statistics.fmean(top1),
               "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
               "params": mine[0]["params"], "gflops": mine[0]["gflops"]}
        if "paper_gflops" in mine[0]:
            row["paper_gflops"] = mine[0]["paper_gflops"]
        rows.append(row)
    return rows


def format_summary(rows: List[dict]) -> str:
    headers = ["architecture", "runs", "top-1 %", "params (M)", "GFLOPs (trained input)"]
    paper = any("paper_gflops" in r for r in rows)
    if paper:
        headers.append("GFLOPs full width 64x224")
    table = []
    for r in rows:
        line = [r["architecture"], r["runs"], f"{r['top1_mean']:.1f} +- {r['top1_std']:.1f}",
                f"{r['params'] / 1e6:.3f}", f"{r['gflops']:.3f}"]
        if paper:
            line.append(f"{r['paper_gflops']:.2f}" if "paper_gflops" in r else "-")
        table.append(line)
    return format_table(headers, table)


def plot(rows: List[dict], path: str, title: str) -> None:
    """Top-1 against GFLOPs, a labelled point with a standard-deviation error bar per architecture; written
    atomically (matplotlib's Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        color = {"bottom_heavy_i3d": "tab:orange", "top_heavy_i3d": "tab:green"}.get(r["variant"], "tab:blue")
        ax.errorbar(r["gflops"], r["top1_mean"], yerr=r["top1_std"], fmt="o", color=color, capsize=3)
        ax.annotate(r["architecture"], (r["gflops"], r["top1_mean"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.set_xlabel("GFLOPs (multiply-adds of one clip of the trained input)")
    ax.set_ylabel("top-1 accuracy (%), mean +- std over seeds")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "architectures.json")
    names = [name for name, _, _ in args.architectures]
    runs: List[dict] = []
    costs: Dict[str, dict] = {}
    total = len(args.architectures) * len(args.seeds)
    for name, variant, split_at in args.architectures:
        for seed in args.seeds:
            output_dir = os.path.join(args.out, name.replace("@", "_at_"), f"seed{seed}")
            cfg = run_config(args, variant, split_at, seed, output_dir)
            results = finished_run(cfg)
            state = "done before, read" if results is not None else "training"
            print(f"[{len(runs) + 1}/{total}] {name}, seed {seed}: {state} ({output_dir})", flush=True)
            if results is None:
                results = train_run(cfg)
            if name not in costs:
                params, gflops = model_cost(cfg, len(results["classes"]))
                costs[name] = {"params": params, "gflops": gflops}
                if args.paper_flops:
                    costs[name]["paper_gflops"] = paper_gflops(variant, split_at)
            runs.append({"architecture": name, "variant": variant, "split_at": split_at or None, "seed": seed,
                         "output_dir": output_dir, "top1": results["top1"], "top5": results["top5"],
                         "mean_class_accuracy": results["mean_class_accuracy"], **costs[name]})
            write_json(json_path, {"config": args.config, "iters": args.iters, "overrides": list(args.opts),
                                   "runs": runs, "summary": summarize(runs, names)})
    rows = summarize(runs, names)
    first = run_config(args, args.architectures[0][1], args.architectures[0][2], args.seeds[0], args.out)
    print(f"{args.config} ({first.SOLVER.MAX_ITER} iterations, clips {first.INPUT.CLIP_LENGTH}x{first.INPUT.CROP_SIZE}"
          f"x{first.INPUT.CROP_SIZE}, width {first.MODEL.BACKBONE_3D.WIDTH}); seeds {' '.join(map(str, args.seeds))}; "
          f"top-1 on the test split, {first.TEST.NUM_CLIPS} clips x {first.TEST.NUM_CROPS} crops")
    print(format_summary(rows))
    plot_path = os.path.join(args.out, "architectures.png")
    plot(rows, plot_path, f"{os.path.basename(args.config)}, {first.SOLVER.MAX_ITER} iterations, "
                          f"seeds {' '.join(map(str, args.seeds))}")
    print(f"wrote {json_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
