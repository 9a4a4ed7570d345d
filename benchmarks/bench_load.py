#!/usr/bin/env python
"""Training speed on a busy machine: another process holds a core; fixed threads against the ThreadGovernor.

    python benchmarks/bench_load.py [--config-file configs/synthetic/s3dg_tiny.yaml] [--seconds 15] [--repeats 3]
                                    [--interval 2] [--hog spin|torch] [--json OUT.json]

The config's training step (``Trainer.run_step`` on one fixed batch, as ``bench_train.py``) is timed in five
conditions, side by side in each of ``--repeats`` rounds (their order rotating): a quiet machine with every core's
thread (``fixed``), a quiet machine under the ``ThreadGovernor`` (``engine/threads.py``, what ``tools/train_det.py``
uses), and with one core held by another process ("busy"): fixed threads, the governor, and one fixed thread. The
other process is ``--hog spin`` (a Python busy loop) or ``--hog torch`` (one-thread matrix products, like a
neighbour's test run). Before each timed block the steps run untimed for two governor intervals so that the
governor has looked at the machine; its thread count and the other process's measured share are printed. The
table gives the median iterations/s and each condition's share of the quiet fixed speed; the issue's target is
busy + governor at least 45% of it, quiet + governor unchanged.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import prepare_config  # noqa: E402  (the benchmarks are scripts, not a package)

from s3d_det.config import load_config  # noqa: E402
from s3d_det.engine.threads import ThreadGovernor  # noqa: E402
from s3d_det.utils.io import available_cores, write_json  # noqa: E402
from s3d_det.utils.table import format_table  # noqa: E402

HOGS = {
    "spin": "while True:\n    pass",
    "torch": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a",
}
CONDITIONS = ("quiet, fixed", "quiet, governor", "busy, fixed", "busy, governor", "busy, 1 thread")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="configs/synthetic/s3dg_tiny.yaml", metavar="CFG")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per block (default: 15)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the five conditions (default: 3)")
    parser.add_argument("--interval", type=float, default=2.0, help="the governor's interval in s (default: 2)")
    parser.add_argument("--hog", choices=sorted(HOGS), default="spin", help="the other process (default: spin)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS), metavar="C",
                        help="the conditions to time (default: all five; 'quiet, fixed' is always timed)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or args.interval <= 0:
        parser.error("--seconds and --interval must be positive, --repeats at least 1")
    args.conditions = tuple(c for c in CONDITIONS if c in args.conditions or c == "quiet, fixed")
    return args


def start_other_process(code: str) -> int:
    """Starts ``python -c code`` as another process's, not a child of this one (the governor counts its own
    children, the data-loading workers, as its own): a shell starts it in the background and exits, so it is
    re-parented. Returns its pid."""
    shell = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!', code],
                           capture_output=True, text=True, check=True)
    return int(shell.stdout.strip())


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_block(trainer, batches, *, seconds: float, governor: Optional[ThreadGovernor], settle: float) -> Dict:
    """Untimed steps for ``settle`` seconds (the governor looks), then steps for ``seconds``: iterations/s."""
    end = time.perf_counter() + settle
    while time.perf_counter() < end:
        if governor is not None:
            governor.step()
        trainer.run_step(next(batches), 0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if governor is not None:
            governor.step()
        trainer.run_step(next(batches), 0)
        steps += 1
    return {"iters_per_s": steps / (time.perf_counter() - start), "threads": torch.get_num_threads(),
            "others": governor.history[-1][1] if governor is not None and governor.history else None}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cores = available_cores()
    if cores < 2:
        raise SystemExit("bench_load needs at least 2 cores: one for the other process")
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.DEVICE", "cpu"])
    bench_args = argparse.Namespace(with_loader=False, warmup=3)
    machine = f"{platform.processor() or platform.machine()}, {cores} cores"
    print(f"training step speed with one core busy ({args.hog}) on {machine}, torch {torch.__version__}; "
          f"median of {args.repeats} blocks of {args.seconds:g} s; governor interval {args.interval:g} s")
    conditions = args.conditions
    results: Dict[str, List[Dict]] = {c: [] for c in conditions}
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(cores)
        run = prepare_config(args.config_file, cfg, bench_args, torch.device("cpu"), tmp)
        trainer, batches = run["trainer"], run["streams"]["fixed"]
        for r in range(args.repeats):
            order = conditions[r % len(conditions):] + conditions[:r % len(conditions)]
            for condition in order:
                hog = start_other_process(HOGS[args.hog]) if condition.startswith("busy") else None
                try:
                    governor = None
                    if condition.endswith("governor"):
                        governor = ThreadGovernor(max_threads=cores, interval=args.interval)
                    else:
                        torch.set_num_threads(1 if condition.endswith("1 thread") else cores)
                    settle = 2.2 * args.interval if governor is not None else 1.0
                    result = run_block(trainer, batches, seconds=args.seconds, governor=governor, settle=settle)
                finally:
                    if hog is not None:
                        stop(hog)
                results[condition].append(result)
                print(f"  round {r + 1}, {condition}: {result['iters_per_s']:.2f} it/s, {result['threads']} "
                      f"threads" + (f" (others {result['others']:.2f} cores)" if result["others"] is not None
                                    else ""), file=sys.stderr, flush=True)
    quiet = statistics.median(x["iters_per_s"] for x in results["quiet, fixed"])
    rows = []
    for condition in conditions:
        speed = statistics.median(x["iters_per_s"] for x in results[condition])
        threads = sorted({x["threads"] for x in results[condition]})
        rows.append([condition, "/".join(map(str, threads)), f"{speed:.2f}", f"{100 * speed / quiet:.0f}%"])
    print(format_table(["condition", "threads", "it/s", "of quiet, fixed"], rows))
    if args.json:
        write_json(args.json, {"machine": machine, "torch": torch.__version__, "hog": args.hog,
                               "interval": args.interval, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
