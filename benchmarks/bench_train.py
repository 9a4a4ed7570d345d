#!/usr/bin/env python
"""Training speed of the action detector: iterations per second of a config's training step.

    python benchmarks/bench_train.py [--config-file CFG ...] [--iters 20] [--repeats 3] [--with-loader]
                                     [--device cpu|cuda] [--json OUT.json] [KEY VALUE ...]

Each config (default: ``configs/synthetic/s3dg_tiny.yaml`` and its i2d, i3d and s3d siblings on the CPU;
``configs/jhmdb/s3dg_r50_16x1_split1.yaml`` on CUDA) is built with random weights and trained, exactly as
``tools/train_det.py`` steps it (``Trainer.run_step``: forward, losses, backward, optimizer and schedule), on
one fixed batch made of the config's input size: ``SOLVER.BATCH_SIZE`` clips of ``INPUT.CLIP_LENGTH`` frames,
shorter side the first ``INPUT.SHORT_SIDE_TRAIN``, 4:3, each with two person boxes. A fixed batch measures the
model alone; ``--with-loader`` also times steps fed by the real data loader on the synthetic set (made under
``$S3D_DET_DATASETS`` on first use), which is what the quick start sees. Every config is built and given
``--warmup`` steps first; then come ``--repeats`` rounds, each timing ``--iters`` steps of every config in
turn, so the configs are compared side by side under the same machine load. The table gives the median
iterations/s and clips/s, and on CUDA the peak memory (with several configs, their resident weights count in
each other's peaks). On the CPU, torch uses one thread per core (``--threads``), as train_det.py does with 0 workers.
A config that changes its model during training (``SOLVER.FREEZE_2D_AT``) is timed twice: as it starts, and, in
a row named "from iteration N", with every change made (as from iteration N on).

The figures in README.md come from this script; the machine is printed with them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch

from s3d_det.config import load_config
from s3d_det.engine import Trainer, build_lr_scheduler, build_optimizer
from s3d_det.engine.defaults import KNOWN_NUM_CLASSES, known_num_classes
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

CPU_CONFIGS = [f"configs/synthetic/{v}_tiny.yaml" for v in ("s3dg", "s3d", "i3d", "i2d")]
GPU_CONFIGS = ["configs/jhmdb/s3dg_r50_16x1_split1.yaml"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", action="append", dest="configs", metavar="CFG",
                        help="a config to time (repeatable; default: the tiny synthetic configs on CPU, the JHMDB "
                             "R50 + S3D-G config on CUDA)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--iters", type=int, default=20, help="timed steps per repeat (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--with-loader", action="store_true", help="also time steps fed by the data loader")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="overrides for every config")
    args = parser.parse_args(argv)
    if min(args.iters, args.repeats) < 1 or args.warmup < 0:
        parser.error("--iters and --repeats must be at least 1, --warmup at least 0")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.configs = args.configs or (GPU_CONFIGS if args.device == "cuda" else CPU_CONFIGS)
    return args


def fixed_batch(cfg, num_classes: int, generator: torch.Generator) -> Dict:
    """``SOLVER.BATCH_SIZE`` random clips at the config's training size, with two boxes and labels each, in
    the layout ``s3d_det.data.dataset.collate`` makes."""
    b, t = cfg.SOLVER.BATCH_SIZE, cfg.INPUT.CLIP_LENGTH
    h = int(cfg.INPUT.SHORT_SIDE_TRAIN[0])
    w = h * 4 // 3
    div = cfg.INPUT.SIZE_DIVISIBLE or 1
    ph, pw = -(-h // div) * div, -(-w // div) * div
    clip = torch.randn(b, 3, t, ph, pw, generator=generator)
    boxes = torch.tensor([[0.1 * w, 0.2 * h, 0.4 * w, 0.9 * h], [0.5 * w, 0.1 * h, 0.8 * w, 0.8 * h]])
    return {"clip": clip, "keyframe": clip[:, :, t // 2].clone(), "image_sizes": [(h, w)] * b,
            "boxes": [boxes.clone() for _ in range(b)],
            "labels": [torch.randint(0, num_classes, (2,), generator=generator) for _ in range(b)]}


def time_block(trainer: Trainer, batches, *, iters: int, device) -> float:
    """Seconds per step over ``iters`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(iters):
        trainer.run_step(next(batches), i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def prepare_config(path: str, cfg, args, device: torch.device, tmp: str, changes=()) -> Dict:
    """The trainer (random weights) of ``cfg`` (loaded from ``path``) and its batch streams: "fixed" (one batch,
    again and again) and, with ``--with-loader``, "loader" (the real training loader on the synthetic set); each
    warmed up. ``changes``: the config's ``model_changes``, made first when given."""
    from s3d_det.engine.defaults import batch_collate, build_datasets, build_model, load_dataset_gt

    num_classes = cfg.MODEL.ROI_HEAD.NUM_CLASSES or known_num_classes(cfg)
    if not num_classes:
        raise SystemExit(f"{path}: set MODEL.ROI_HEAD.NUM_CLASSES (DATASETS.NAME {cfg.DATASETS.NAME!r} is not one of "
                         f"synthetic, synthetic_clips, {', '.join(KNOWN_NUM_CLASSES)})")
    torch.manual_seed(cfg.SEED)
    model = build_model(cfg, num_classes).to(device)
    optimizer = build_optimizer(model, name=cfg.SOLVER.OPTIMIZER, lr=cfg.SOLVER.BASE_LR,
                                momentum=cfg.SOLVER.MOMENTUM, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    scheduler = build_lr_scheduler(optimizer, max_iter=10 ** 6, warmup_iters=0)
    trainer = Trainer(model, dataset=[0], batch_size=1, optimizer=optimizer, scheduler=scheduler,
                      max_iter=10 ** 6, output_dir=tmp, checkpoint_period=0, amp_dtype=cfg.SOLVER.AMP_DTYPE or None,
                      device=device, tensorboard=False)
    trainer.model.train()
    for _, change in changes:
        change(model)
    label = f"{path}, from iteration {changes[-1][0]}" if changes else path
    batch = fixed_batch(cfg, num_classes, torch.Generator().manual_seed(0))

    def repeat():
        while True:
            yield batch

    streams = {"fixed": repeat()}
    if args.with_loader:
        gt, root = load_dataset_gt(cfg)
        train_set, _ = build_datasets(cfg, gt, root)
        loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.SOLVER.BATCH_SIZE, shuffle=True,
                                             num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=batch_collate(cfg),
                                             persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0)

        def forever():
            while True:
                yield from loader

        streams["loader"] = forever()
    for stream in streams.values():
        for i in range(args.warmup):
            trainer.run_step(next(stream), i)
    return {"config": label, "batch": cfg.SOLVER.BATCH_SIZE,
            "input": f"{cfg.INPUT.CLIP_LENGTH}x{int(cfg.INPUT.SHORT_SIDE_TRAIN[0])}",
            "trainer": trainer, "streams": streams, "step_s": {name: [] for name in streams}}


def bench_configs(paths: Sequence[str], args, device: torch.device, tmp: str) -> List[Dict]:
    """Every config prepared first, then ``--repeats`` rounds, each timing one block of ``--iters`` steps per
    config and stream in turn: a slow spell of the machine then falls on every config alike, so their ratios
    hold even where the absolute figures drift."""
    from s3d_det.engine.defaults import model_changes

    runs = []
    for path in paths:
        cfg = load_config(path, list(args.opts) + ["MODEL.DEVICE", device.type])
        runs.append(prepare_config(path, cfg, args, device, tmp))
        changes = model_changes(cfg)
        if changes:
            runs.append(prepare_config(path, cfg, args, device, tmp, changes=changes))
    for _ in range(args.repeats):
        for run in runs:
            for name, stream in run["streams"].items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                run["step_s"][name].append(time_block(run["trainer"], stream, iters=args.iters, device=device))
                if device.type == "cuda":
                    run["peak"] = max(run.get("peak", 0), torch.cuda.max_memory_allocated(device))
    rows = []
    for run in runs:
        row = {k: run[k] for k in ("config", "batch", "input", "step_s")}
        row["iters_per_s"] = 1 / statistics.median(run["step_s"]["fixed"])
        row["clips_per_s"] = row["iters_per_s"] * row["batch"]
        if "loader" in run["step_s"]:
            row["loader_iters_per_s"] = 1 / statistics.median(run["step_s"]["loader"])
        if "peak" in run:  # includes the weights and optimizer state of the other configs, resident too
            row["peak_mem_gib"] = run["peak"] / 2 ** 30
        rows.append(row)
        print(f"  {row['config']}: {row['iters_per_s']:.2f} it/s", file=sys.stderr, flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or available_cores())
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"training step speed on {device.type} ({machine}), torch {torch.__version__}; median of "
          f"{args.repeats} x {args.iters} steps after {args.warmup} warm-up steps")
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_configs(args.configs, args, device, tmp)
    headers = ["config", "batch", "T x short side", "it/s", "clips/s"]
    table = [[os.path.basename(r["config"]), r["batch"], r["input"], f"{r['iters_per_s']:.2f}",
              f"{r['clips_per_s']:.1f}"] for r in rows]
    if device.type == "cuda":
        headers.append("peak GiB")
        for line, r in zip(table, rows):
            line.append(f"{r['peak_mem_gib']:.2f}")
    if args.with_loader:
        headers.append("it/s with loader")
        for line, r in zip(table, rows):
            line.append(f"{r['loader_iters_per_s']:.2f}")
    print(format_table(headers, table))
    if args.json:
        write_json(args.json, {"device": device.type, "machine": machine, "torch": torch.__version__,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
