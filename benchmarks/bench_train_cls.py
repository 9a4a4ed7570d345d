#!/usr/bin/env python
"""Training speed of the clip classifier beside the detector's: clips per second of each config's training step.

    python benchmarks/bench_train_cls.py [--cls-config CFG] [--det-config CFG | --no-detector] [--iters 10]
                                         [--repeats 3] [--warmup 2] [--threads N] [--json OUT.json] [KEY VALUE ...]
    python benchmarks/bench_train_cls.py --device cuda --amp bfloat16 --size 64x224 [--batch 8]

On the CPU (the default) it times the synthetic quick start's two trainings: the 3D network's pretraining on clips
(``configs/cls/synthetic/s3dg_tiny.yaml``, ``tools/train_cls.py``) and the detector that starts from it
(``configs/synthetic/s3dg_tiny.yaml``, ``tools/train_det.py``). Each is built with random weights and stepped exactly as
its tool steps it (``Trainer.run_step``: forward, loss, backward, optimizer, schedule) on one fixed batch of its
config's input size: the classifier ``SOLVER.BATCH_SIZE`` square clips of ``INPUT.CLIP_LENGTH`` x ``INPUT.CROP_SIZE``,
the detector the batch of ``benchmarks/bench_train.py`` (two person boxes a clip; the detector is timed as it starts,
before ``SOLVER.FREEZE_2D_AT``). A fixed batch measures the model alone, not the data loading. Both are built and warmed
up first; then come ``--repeats`` rounds, each timing ``--iters`` steps of one and then of the other, so the two are
compared under the same machine load. The table gives the median it/s and clips/s of each and the classifier's clips/s
over the detector's.

``--device cuda`` times S3D-G at the paper's input (``--size 64x224``: 64 frames of 224 x 224) as a classifier:
``configs/cls/kinetics/s3dg_64x224_scratch.yaml`` with ``--batch`` clips (default 8) and ``--amp`` autocast (default
bfloat16), and adds the peak GPU memory of its steps (``torch.cuda.max_memory_allocated``); the detector is left out
unless ``--det-config`` names one. ``--size`` and ``--batch`` apply to the classifier on the CPU too. Without CUDA,
``--device cuda`` ends with a one-line error (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import prepare_config, time_block  # noqa: E402  (the detector's preparation and timing, reused)

from s3d_det.config import load_config  # noqa: E402
from s3d_det.engine import Trainer, build_lr_scheduler, build_optimizer  # noqa: E402
from s3d_det.engine.defaults import known_num_classes  # noqa: E402
from s3d_det.modeling.s3dg import VideoClassifier  # noqa: E402
from s3d_det.utils.io import available_cores, write_json  # noqa: E402
from s3d_det.utils.table import format_table  # noqa: E402

CPU_CLS = "configs/cls/synthetic/s3dg_tiny.yaml"
CPU_DET = "configs/synthetic/s3dg_tiny.yaml"
GPU_CLS = "configs/cls/kinetics/s3dg_64x224_scratch.yaml"


def parse_size(text: str):
    """``"64x224"`` -> (64, 224): frames and the square crop's side."""
    try:
        t, s = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMESxSIDE, e.g. 64x224, got {text!r}") from None
    if t < 1 or s < 1:
        raise argparse.ArgumentTypeError(f"frames and side must be positive, got {text!r}")
    return t, s


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--cls-config", metavar="CFG", help=f"the classifier's config (default: {CPU_CLS} on the CPU, "
                                                            f"{GPU_CLS} on CUDA)")
    parser.add_argument("--det-config", metavar="CFG", help=f"the detector's config (default: {CPU_DET} on the CPU, "
                                                            "none on CUDA)")
    parser.add_argument("--no-detector", action="store_true", help="time the classifier only")
    parser.add_argument("--size", type=parse_size, metavar="TxS", help="the classifier's clip: frames x square side "
                                                                       "(default: the config's; 64x224 on CUDA)")
    parser.add_argument("--batch", type=int, help="the classifier's clips per step (default: the config's; 8 on CUDA)")
    parser.add_argument("--amp", choices=("bfloat16", "float16", "none"), default=None,
                        help="autocast dtype on CUDA (default: bfloat16; the CPU always runs fp32)")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per repeat (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="overrides for both configs")
    args = parser.parse_args(argv)
    if min(args.iters, args.repeats) < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        parser.error("--iters, --repeats and --batch must be at least 1, --warmup at least 0")
    cuda = args.device == "cuda"
    args.cls_config = args.cls_config or (GPU_CLS if cuda else CPU_CLS)
    args.det_config = None if args.no_detector else (args.det_config or (None if cuda else CPU_DET))
    args.size = args.size or ((64, 224) if cuda else None)
    args.batch = args.batch or (8 if cuda else None)
    args.amp = "" if args.amp == "none" else (args.amp or ("bfloat16" if cuda else ""))
    return args


def prepare_classifier(cfg, *, args, device: torch.device, tmp: str) -> Dict:
    """The classifier's trainer (random weights) on one fixed batch of random clips at the config's size, warmed up."""
    num_classes = known_num_classes(cfg) or 400  # the head's size; speed hardly depends on it
    torch.manual_seed(cfg.SEED)
    model = VideoClassifier.from_config(cfg, num_classes).to(device)
    optimizer = build_optimizer(model, name=cfg.SOLVER.OPTIMIZER, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                                weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    scheduler = build_lr_scheduler(optimizer, max_iter=10 ** 6, warmup_iters=0)
    trainer = Trainer(model, dataset=[0], batch_size=1, optimizer=optimizer, scheduler=scheduler, max_iter=10 ** 6,
                      output_dir=tmp, checkpoint_period=0, amp_dtype=cfg.SOLVER.AMP_DTYPE or None, device=device,
                      tensorboard=False, clip_grad_norm=cfg.SOLVER.CLIP_GRAD_NORM or None)
    trainer.model.train()
    b, t, s = cfg.SOLVER.BATCH_SIZE, cfg.INPUT.CLIP_LENGTH, cfg.INPUT.CROP_SIZE
    generator = torch.Generator().manual_seed(0)
    batch = {"clip": torch.rand(b, 3, t, s, s, generator=generator) * 255,  # raw RGB in [0, 255], as the loader gives
             "label": torch.randint(0, num_classes, (b,), generator=generator)}

    def repeat():
        while True:
            yield batch

    stream = repeat()
    for i in range(args.warmup):
        trainer.run_step(next(stream), i)
    return {"config": args.cls_config, "kind": "classifier", "batch": b, "input": f"{t}x{s}x{s}", "trainer": trainer,
            "stream": stream, "step_s": []}


def prepare_detector(path: str, cfg, *, args, device: torch.device, tmp: str) -> Dict:
    """The detector's trainer and fixed batch, from ``bench_train.prepare_config`` (no loader), warmed up."""
    run = prepare_config(path, cfg, SimpleNamespace(with_loader=False, warmup=args.warmup), device, tmp)
    return {"config": path, "kind": "detector", "batch": run["batch"], "input": run["input"],
            "trainer": run["trainer"], "stream": run["streams"]["fixed"], "step_s": []}


def bench(args, device: torch.device, tmp: str) -> List[Dict]:
    """Both trainers prepared, then ``--repeats`` rounds of one ``--iters`` block each, in turn; rows of medians."""
    common = list(args.opts) + ["MODEL.DEVICE", device.type, "SOLVER.AMP_DTYPE", args.amp]
    cls_over = list(common)
    if args.size:
        cls_over += ["INPUT.CLIP_LENGTH", str(args.size[0]), "INPUT.CROP_SIZE", str(args.size[1])]
    if args.batch:
        cls_over += ["SOLVER.BATCH_SIZE", str(args.batch)]
    runs = [prepare_classifier(load_config(args.cls_config, cls_over), args=args, device=device, tmp=tmp)]
    if args.det_config:
        runs.append(prepare_detector(args.det_config, load_config(args.det_config, common), args=args, device=device,
                                     tmp=tmp))
    for _ in range(args.repeats):
        for run in runs:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run["step_s"].append(time_block(run["trainer"], run["stream"], iters=args.iters, device=device))
            if device.type == "cuda":  # with two models resident, each peak includes the other's weights and state
                run["peak"] = max(run.get("peak", 0), torch.cuda.max_memory_allocated(device))
    rows = []
    for run in runs:
        row = {k: run[k] for k in ("config", "kind", "batch", "input", "step_s")}
        row["iters_per_s"] = 1 / statistics.median(run["step_s"])
        row["clips_per_s"] = row["iters_per_s"] * row["batch"]
        if "peak" in run:
            row["peak_mem_gib"] = run["peak"] / 2 ** 30
        rows.append(row)
    return rows


def format_rows(rows: List[Dict], cuda: bool) -> str:
    """The table: one row per config, and the classifier's clips/s over each other row's."""
    base = rows[0]["clips_per_s"]
    headers = ["config", "training", "batch", "clip", "it/s", "clips/s", "classifier clips/s over this"]
    if cuda:
        headers.append("peak GiB")
    table = []
    for r in rows:
        line = [os.path.relpath(r["config"]), r["kind"], r["batch"], r["input"], f"{r['iters_per_s']:.2f}",
                f"{r['clips_per_s']:.1f}", f"{base / r['clips_per_s']:.2f}"]
        if cuda:
            line.append(f"{r['peak_mem_gib']:.2f}")
        table.append(line)
    return format_table(headers, table)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: CUDA is not available on this machine (torch "
              f"{torch.__version__}); run on a machine with a GPU, or leave --device out for the CPU", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or available_cores())
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    amp = f", autocast {args.amp}" if device.type == "cuda" and args.amp else ""
    print(f"training step speed on {device.type} ({machine}{amp}), torch {torch.__version__}; median of "
          f"{args.repeats} x {args.iters} steps after {args.warmup} warm-up steps, one fixed batch, random weights")
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench(args, device, tmp)
    print(format_rows(rows, device.type == "cuda"))
    if args.json:
        write_json(args.json, {"device": device.type, "machine": machine, "torch": torch.__version__,
                               "amp": args.amp, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
