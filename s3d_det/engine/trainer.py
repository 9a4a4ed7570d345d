"""The training loop: any model whose training ``forward(batch)`` returns a dict of scalar losses.

Each iteration reads a batch (``TrainLoader``), runs forward under autocast (CUDA only), checks that the
losses are finite, steps SGD (with gradient clipping, and a GradScaler for float16) and the lr schedule,
then, at their periods, logs (``EventWriter``), checkpoints (``save_checkpoint``) and evaluates.
Iterations are numbered from 0; a checkpoint after iteration i records ``"iteration": i`` and a resumed
run continues at i + 1 with the same model, optimizer, schedule, RNG states and data position.
"""
from __future__ import annotations

import contextlib
import logging
import math
import numbers
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..checkpoint.training import (
    check_shapes,
    first_non_finite,
    last_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ..utils.io import remove_stale_temporaries
from .distributed import all_gather, all_reduce_mean, get_local_rank, get_rank, get_world_size, is_main_process
from .events import EventWriter
from .sampler import TrainLoader
from .threads import ThreadGovernor

__all__ = ["Trainer", "to_device"]

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (through dicts, lists and tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(value, device) for value in obj)
    return obj


def _amp_dtype(amp_dtype: Union[None, str, torch.dtype], device: torch.device) -> Optional[torch.dtype]:
    if amp_dtype is None:
        return None
    dtype = AMP_DTYPES.get(amp_dtype) if isinstance(amp_dtype, str) else amp_dtype
    if dtype not in AMP_DTYPES.values():
        raise ValueError(f"amp_dtype must be None, 'bfloat16' or 'float16' (or the torch dtype), got {amp_dtype!r}")
    if device.type != "cuda":
        warnings.warn(f"amp_dtype={amp_dtype!r} is for CUDA; training on {device} runs in float32", stacklevel=3)
        return None
    return dtype


def _check_losses(loss_dict: Any, iteration: int) -> Dict[str, torch.Tensor]:
    if not isinstance(loss_dict, Mapping) or not loss_dict:
        raise ValueError(f"iteration {iteration}: the model's training forward must return a non-empty dict of "
                         f"scalar losses, got {type(loss_dict).__name__}")
    for key, value in loss_dict.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"iteration {iteration}: loss {key!r} must be a scalar tensor, got {shape}")
    return dict(sorted(loss_dict.items()))  # the same order on every process, for all_reduce


def _check_metrics(metrics: Any) -> Dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"eval_fn must return a dict of scalar metrics, got {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, numbers.Real):
            raise ValueError(f"eval_fn's metric {key!r} must be a number, got {type(value).__name__}")
        out[str(key)] = float(value)
    return out


class Trainer:
    """Trains ``model`` for ``max_iter`` iterations on endless batches of ``dataset``.

    Args:
        model: on ``device``; in training mode ``model(batch)`` returns ``{name: scalar loss tensor}``; the sum
            of the losses is optimised. With several processes it is wrapped in DistributedDataParallel.
        dataset: a map-style dataset; ``collate_fn`` (default: torch's) makes a batch of ``batch_size`` of
            its samples, per process; the batch (tensors in dicts, lists, tuples) is moved to ``device``.
        optimizer, scheduler: over ``model``'s parameters (``build_optimizer``, ``build_lr_scheduler``); the
            scheduler is stepped once per iteration.
        max_iter: iterations 0 .. max_iter - 1.
        output_dir: checkpoints, ``last_checkpoint``, ``metrics.json`` and TensorBoard events.
        checkpoint_period: ``model_{i:07d}.pth`` after each iteration i with (i + 1) % period == 0 (0: none),
            and ``model_final.pth`` after the last one instead.
        eval_period: ``eval_fn`` after each such iteration (0: none) and after the last.
        eval_fn: ``eval_fn(model) -> {name: number}`` (e.g. ``{"frame_mAP": 41.2}``), called on every
            process with the unwrapped model in eval mode under ``torch.no_grad()``; it may split the work
            and ``all_gather`` the results. The main process logs what it returns. The RNG states are put
            back afterwards, so evaluating never changes training.
        log_period: a metrics.json line every log_period iterations (and after the last) with the mean
            losses, ``time`` (seconds per iteration) and ``data_time`` since the previous line, and the lr.
        clip_grad_norm: clip the gradients' total L2 norm to this (None: no clipping).
        amp_dtype: None, ``"bfloat16"`` or ``"float16"`` (or the torch dtype): autocast on CUDA (float16 with a
            GradScaler); on the CPU it is ignored with a warning and training runs in float32.
        device: where the model and batches are.
        seed: of the data order (``TrainLoader``); seed the process's RNGs with ``seed_all`` beforehand.
        num_workers, pin_memory, shuffle: of the data loading.
        find_unused_parameters: of DistributedDataParallel.
        tensorboard: also write TensorBoard events.
        model_changes: ``(i, fn)`` pairs: ``fn(model)`` is called once before iteration ``i`` runs (at the start
            of ``train`` when it resumes at or after ``i``), e.g. to freeze a part of the model. With several
            processes the DDP wrapper is then rebuilt, since the parameters that train may have changed.
        thread_governor: a ``ThreadGovernor`` (``engine/threads.py``) stepped before every iteration: the CPU
            threads follow the cores other processes leave free. None: the thread count is left alone.
    """

    def __init__(self, model: nn.Module, *, dataset: Dataset, batch_size: int,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, max_iter: int,
                 output_dir: str, checkpoint_period: int, eval_period: int = 0,
                 eval_fn: Optional[Callable[[nn.Module], Mapping[str, float]]] = None, log_period: int = 20,
                 clip_grad_norm: Optional[float] = None, amp_dtype: Union[None, str, torch.dtype] = None,
                 device: Union[str, torch.device] = "cpu", collate_fn: Optional[Callable[[list], Any]] = None,
                 seed: int = 0, num_workers: int = 0, pin_memory: bool = False, shuffle: bool = True,
                 find_unused_parameters: bool = False, tensorboard: bool = True,
                 model_changes: Sequence[Tuple[int, Callable[[nn.Module], None]]] = (),
                 thread_governor: Optional[ThreadGovernor] = None):
        for name, value in (("max_iter", max_iter), ("log_period", log_period)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, value in (("checkpoint_period", checkpoint_period), ("eval_period", eval_period)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if clip_grad_norm is not None and clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {clip_grad_norm}")
        for k, change in enumerate(model_changes):
            if len(change) != 2 or not isinstance(change[0], int) or change[0] < 0 or not callable(change[1]):
                raise ValueError(f"model_changes[{k}] must be (iteration >= 0, callable), got {change!r}")
        self.model_changes = sorted(model_changes, key=lambda change: change[0])
        self.thread_governor = thread_governor
        self._changes_done = 0
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.max_iter, self.output_dir = max_iter, output_dir
        self.checkpoint_period, self.eval_period, self.eval_fn = checkpoint_period, eval_period, eval_fn
        self.log_period, self.clip_grad_norm, self.tensorboard = log_period, clip_grad_norm, tensorboard
        self.amp_dtype = _amp_dtype(amp_dtype, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.loader = TrainLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, seed=seed,
                                  rank=get_rank(), world_size=get_world_size(), shuffle=shuffle,
                                  num_workers=num_workers, pin_memory=pin_memory)
        self.find_unused_parameters = find_unused_parameters
        self.train_model = self._wrap()  # what training calls: the model, or its DDP wrapper with several processes
        self.start_iter = 0
        self.resumed_from: Optional[str] = None  # the checkpoint resume_or_load loaded
        self._events: Optional[EventWriter] = None
        self._events_state: Optional[Mapping[str, Any]] = None  # the metrics window a resumed checkpoint held

    def _wrap(self) -> nn.Module:
        if get_world_size() == 1:
            return self.model
        device_ids = [get_local_rank()] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids,
                                       find_unused_parameters=self.find_unused_parameters)

    def _apply_model_changes(self, iteration: int) -> None:
        """Calls the ``model_changes`` due at or before ``iteration`` that have not run yet."""
        due = [change for at, change in self.model_changes[self._changes_done:] if at <= iteration]
        for change in due:
            change(self.model)
            logger.info("before iteration %d: %s", iteration, getattr(change, "__name__", repr(change)))
        self._changes_done += len(due)
        if due and get_world_size() > 1:
            self.train_model = self._wrap()

    def resume_or_load(self, resume: bool = True) -> int:
        """With ``resume`` and a ``last_checkpoint`` in output_dir, loads the checkpoint it names (model,
        optimizer, scheduler, GradScaler, RNG states, data position) and continues after its iteration;
        otherwise starts at iteration 0 with the model as it is. Returns the first iteration to run. Every
        process reads the checkpoint, so with several machines output_dir must be shared storage.

        ``resume`` without a checkpoint starts at 0 with a warning, as detectron2 does (a job that is restarted
        after preemption passes --resume on every launch, the first included). The temporaries that a process
        killed while saving left in output_dir (``atomic_write``'s, and only those) are removed first."""
        if is_main_process():
            for stale in remove_stale_temporaries(self.output_dir):
                logger.warning("removed %s, left by a run killed while saving", stale)
        path = last_checkpoint(self.output_dir) if resume else None
        self.start_iter, self.resumed_from = 0, None
        if path is not None:
            self.load_state(load_checkpoint(path), path)
            self.resumed_from = path
            logger.info("resuming from %s at iteration %d", path, self.start_iter)
        elif resume:
            logger.warning("--resume: no checkpoint in %s (no %s file): starting from iteration 0",
                           self.output_dir, "last_checkpoint")
        return self.start_iter

    def load_state(self, state: Mapping[str, Any], path: str) -> None:
        """Restores what ``save`` wrote (``path`` names the file in errors)."""
        for key in ("model", "optimizer", "scheduler", "iteration", "rng", "data"):
            if key not in state:
                raise ValueError(f"{path}: not a training checkpoint: no {key!r} entry")
        check_shapes(state["model"], self.model, path)
        bad = first_non_finite(state["model"])
        if bad is not None:
            raise FloatingPointError(f"{path}: the weights are not finite ({bad}); resume from an earlier checkpoint "
                                     f"(write its file name into {self.output_dir}/last_checkpoint)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["data"])
        rngs = state["rng"]
        if len(rngs) == get_world_size():
            set_rng_state(rngs[get_rank()])
        else:
            warnings.warn(f"{path} was saved by {len(rngs)} processes, this job has {get_world_size()}: the RNG "
                          "states are not restored and the data order differs from an uninterrupted run",
                          stacklevel=2)
        self._events_state = state.get("events")
        self.start_iter = int(state["iteration"]) + 1

    def save(self, name: str, iteration: int) -> None:
        """Checkpoints the state after ``iteration`` as ``output_dir/<name>.pth`` (every process takes
        part: the RNG states of all are kept; the main process writes).

        Weights that are not finite are never saved: FloatingPointError names the iteration and the first such
        tensor, and ``last_checkpoint`` keeps naming the last finite checkpoint."""
        model_state = self.model.state_dict()
        bad = first_non_finite(model_state)  # the same weights on every process: all stop together
        if bad is not None:
            previous = last_checkpoint(self.output_dir)
            raise FloatingPointError(f"iteration {iteration}: the weights are not finite ({bad}); not saving {name}.pth"
                                     f" and stopping; the last finite checkpoint is {previous or 'none'}")
        rngs = all_gather(rng_state())
        if not is_main_process():
            return
        state = {"model": model_state, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "iteration": iteration, "rng": rngs,
                 "data": self.loader.state_dict()}
        if self._events is not None:  # the numbers since the last metrics.json line: a resumed run averages them too
            state["events"] = self._events.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        path = save_checkpoint(self.output_dir, name, state)
        logger.info("saved %s", path)

    def train(self) -> None:
        """Runs iterations ``start_iter .. max_iter - 1`` (see ``resume_or_load``)."""
        events = EventWriter(self.output_dir, start_iter=self.start_iter, max_iter=self.max_iter,
                             enabled=is_main_process(), tensorboard=self.tensorboard)
        if self.start_iter and self._events_state:
            events.load_state_dict(self._events_state)
        self._events = events
        batches = iter(self.loader)
        self.model.train()
        try:
            for iteration in range(self.start_iter, self.max_iter):
                self._apply_model_changes(iteration)
                self._iteration(iteration, batches, events)
        finally:
            events.close()
            self._events = None

    def _iteration(self, iteration: int, batches: Iterator[Any], events: EventWriter) -> None:
        if self.thread_governor is not None and self.thread_governor.step() is not None:
            logger.info("iteration %d: %d CPU threads (other processes use %.2f cores)", iteration,
                        torch.get_num_threads(), self.thread_governor.history[-1][1])
        start = time.perf_counter()
        batch = next(batches)
        data_time = time.perf_counter() - start
        lr = self.optimizer.param_groups[0]["lr"]
        losses = self.run_step(batch, iteration)
        events.add({**losses, "time": time.perf_counter() - start, "data_time": data_time})
        last = iteration == self.max_iter - 1
        if last or (iteration + 1) % self.log_period == 0:
            events.flush(iteration, {"lr": lr})
        if last:
            self.save("model_final", iteration)
        elif self.checkpoint_period and (iteration + 1) % self.checkpoint_period == 0:
            self.save(f"model_{iteration:07d}", iteration)
        if self.eval_fn is not None and (last or self.eval_period and (iteration + 1) % self.eval_period == 0):
            events.write(iteration, self.evaluate())

    def run_step(self, batch: Any, iteration: int) -> Dict[str, float]:
        """One optimisation step on ``batch``. Returns ``total_loss`` and each loss, averaged over the
        processes. A loss that is NaN or infinite on any process raises FloatingPointError before the step."""
        batch = to_device(batch, self.device)
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            loss_dict = _check_losses(self.train_model(batch), iteration)
        total = sum(loss.float() for loss in loss_dict.values())
        values = all_reduce_mean(torch.stack([total.detach(), *(v.detach().float() for v in loss_dict.values())]))
        losses = dict(zip(["total_loss", *loss_dict], values.tolist()))
        if not all(math.isfinite(v) for v in losses.values()):
            terms = ", ".join(f"{key}={value}" for key, value in losses.items())
            raise FloatingPointError(f"iteration {iteration}: the loss is not finite: {terms}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
        else:
            total.backward()
        if self.clip_grad_norm is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return losses

    def evaluate(self) -> Dict[str, float]:
        """``eval_fn(model)`` in eval mode, without gradients, leaving the RNG states as they were."""
        rng = rng_state()
        self.model.eval()
        try:
            with torch.no_grad():
                metrics = _check_metrics(self.eval_fn(self.model))
        finally:
            self.model.train()
            set_rng_state(rng)
        logger.info("evaluation: %s", metrics)
        return metrics
