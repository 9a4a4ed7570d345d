"""Where training progress goes: ``metrics.json`` (one JSON object a line), TensorBoard scalars and a tqdm
bar with ETA. Only the main process writes; elsewhere the writer is a no-op."""
from __future__ import annotations

import json
import math
import os
import warnings
from typing import Dict, List, Mapping, Optional

from tqdm import tqdm

from ..utils.io import atomic_write

__all__ = ["METRICS_FILE", "truncate_metrics", "EventWriter"]

METRICS_FILE = "metrics.json"


def truncate_metrics(path: str, *, before: int) -> None:
    """Keeps the lines of ``path`` (a metrics.json) whose ``"iteration"`` is below ``before``, rewriting it
    atomically when that drops any. A last line cut short (no newline: the process died while writing it)
    is dropped with a warning; any other line that is not a JSON object with an integer iteration is an
    error naming the file and line."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    kept: List[str] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and not line.endswith("\n"):
                warnings.warn(f"{path}, line {number}: dropped a line cut short: {line[:80]!r}", stacklevel=2)
                continue
            raise ValueError(f"{path}, line {number}: not JSON: {line[:80]!r}") from None
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            raise ValueError(f"{path}, line {number}: expected a JSON object with an integer 'iteration', "
                             f"got {line[:80]!r}")
        if record["iteration"] < before:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        with atomic_write(path, ".json") as tmp:
            with open(tmp, "w") as f:
                f.writelines(kept)


class EventWriter:
    """Writes the scalars of iterations ``start_iter .. max_iter - 1`` of a run into ``output_dir``.

    On creation, lines of ``metrics.json`` from ``start_iter`` on (left by a run that went further than the
    checkpoint it is resumed from) are dropped, and TensorBoard is told to hide its events from there
    (``purge_step``). Each line and each TensorBoard point carries the 0-based iteration.

    Args:
        enabled: False on every process but the main one: then nothing is written or shown.
        tensorboard: also write TensorBoard events (``torch.utils.tensorboard``, imported on first use).
    """

    def __init__(self, output_dir: str, *, start_iter: int, max_iter: int, enabled: bool = True,
                 tensorboard: bool = True):
        self.output_dir, self.start_iter, self.enabled = output_dir, start_iter, enabled
        self.tensorboard = tensorboard and enabled
        self._window: Dict[str, List[float]] = {}
        self._tb = None
        self._file = None
        if enabled:
            path = os.path.join(output_dir, METRICS_FILE)
            os.makedirs(output_dir, exist_ok=True)
            truncate_metrics(path, before=start_iter)
            self._file = open(path, "a")
        self._bar = tqdm(total=max_iter, initial=start_iter, disable=not enabled, desc="train", dynamic_ncols=True)

    def add(self, scalars: Mapping[str, float]) -> None:
        """One iteration's numbers (losses, timings), averaged by the next ``flush``; advances the bar."""
        for key, value in scalars.items():
            self._window.setdefault(key, []).append(float(value))
        self._bar.update(1)

    def state_dict(self) -> Dict[str, List[float]]:
        """The numbers ``add``-ed since the last ``flush``: kept in a checkpoint, so that the first line a resumed
        run writes averages the same iterations as an uninterrupted run's."""
        return {"window": {key: list(values) for key, values in self._window.items()}}

    def load_state_dict(self, state: Mapping[str, Mapping[str, List[float]]]) -> None:
        """Restores ``state_dict()``'s window (before the first ``add``)."""
        self._window = {str(key): [float(v) for v in values] for key, values in state["window"].items()}

    def flush(self, iteration: int, extra: Optional[Mapping[str, float]] = None) -> None:
        """Writes the mean of each number ``add``-ed since the last flush, with ``extra`` as it is (e.g. the
        lr of ``iteration``)."""
        scalars = {key: math.fsum(values) / len(values) for key, values in self._window.items()}
        scalars.update(extra or {})
        self._window.clear()
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items() if k in ("total_loss", "lr")})
        self.write(iteration, scalars)

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        """Writes ``scalars`` of ``iteration`` now (a metrics.json line and TensorBoard points)."""
        if not self.enabled:
            return
        self._file.write(json.dumps({"iteration": iteration, **scalars}) + "\n")
        self._file.flush()
        if self.tensorboard:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(self.output_dir, purge_step=self.start_iter)
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, iteration)
            self._tb.flush()

    def close(self) -> None:
        self._bar.close()
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
