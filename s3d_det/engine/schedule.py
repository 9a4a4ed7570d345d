"""The optimizer (SGD with momentum, or AdamW; weight decay chosen per kind of parameter) and its learning-rate
schedule (linear warm-up, then steps or a cosine), stepped once per iteration."""
from __future__ import annotations

import functools
import math
import warnings
from bisect import bisect_right
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["NORM_TYPES", "OPTIMIZERS", "build_optimizer", "lr_factor", "build_lr_scheduler"]

# Layers whose parameters (scale and shift) get ``weight_decay_norm``.
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.RMSNorm)

SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                    weight_decay_norm: float = 0.0, weight_decay_bias: Optional[float] = None,
                    nesterov: bool = False, name: str = "sgd",
                    lr_factors: Optional[Mapping[str, float]] = None) -> torch.optim.Optimizer:
    """SGD (``name="sgd"``, with ``momentum`` and ``nesterov``) or AdamW (``"adamw"``, betas (``momentum``,
    0.999): decoupled weight decay, the usual choice for networks trained from scratch in few iterations) over
    the trainable parameters of ``model``, one parameter group per weight decay.

    Parameters of normalisation layers (``NORM_TYPES``; their biases too) get ``weight_decay_norm``, other
    biases ``weight_decay_bias`` (None: ``weight_decay``), everything else ``weight_decay``. Each group holds
    ``"weight_decay"``; all share ``lr`` (the schedule scales it), except the parameters under a module named in
    ``lr_factors`` (``{"backbone_3d": 0.1}``: a prefix of the parameter names, up to a dot), whose groups get
    ``lr`` times its factor (the first prefix that matches). A parameter shared by several modules is optimised
    once.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay_bias is None:
        weight_decay_bias = weight_decay
    for key, value in (("weight_decay", weight_decay), ("weight_decay_norm", weight_decay_norm),
                       ("weight_decay_bias", weight_decay_bias)):
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    lr_factors = dict(lr_factors or {})
    for prefix, factor in lr_factors.items():
        if factor <= 0:
            raise ValueError(f"lr factor of {prefix!r} must be positive, got {factor}")

    names: Dict[int, List[str]] = {}  # a module shared by two parents (the detector's stage 5) has both names
    for module_name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(module_name)

    def factor_of(module: nn.Module) -> float:
        for prefix, factor in lr_factors.items():
            if any(name == prefix or name.startswith(prefix + ".") for name in names[id(module)]):
                return factor
        return 1.0

    groups: Dict[Tuple[float, float], List[nn.Parameter]] = {}
    seen = set()
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, NORM_TYPES):
                decay = weight_decay_norm
            elif param_name == "bias":
                decay = weight_decay_bias
            else:
                decay = weight_decay
            groups.setdefault((decay, factor_of(module)), []).append(param)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    param_groups = [{"params": params, "weight_decay": decay, "lr": lr * factor}
                    for (decay, factor), params in groups.items()]
    if name == "adamw":
        # PyTorch's fused kernel: one pass over all parameters instead of ~10 small ops each
        # (docs/experiments/faster-steps.md has the figures)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                    for params in groups.values() for p in params)
        return torch.optim.AdamW(param_groups, lr=lr, betas=(momentum, 0.999), fused=fused or None)
    return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, nesterov=nesterov)


def lr_factor(iteration: int, *, max_iter: int, schedule: str = "step", steps: Sequence[int] = (),
              gamma: float = 0.1, final_factor: float = 0.0, warmup_iters: int = 0,
              warmup_factor: float = 0.001) -> float:
    """The learning rate of ``iteration`` (0-based) as a multiple of the base rate.

    The main schedule, ``"step"``: ``gamma ** (number of steps <= iteration)``; ``"cosine"``:
    ``final_factor + (1 - final_factor) * (1 + cos(pi * iteration / max_iter)) / 2``. During the warm-up
    (``iteration < warmup_iters``) it is multiplied by ``warmup_factor + (1 - warmup_factor) * iteration /
    warmup_iters``, a line from ``warmup_factor`` at iteration 0 to 1 at ``warmup_iters``.
    """
    if schedule == "step":
        factor = gamma ** bisect_right(steps, iteration)
    else:
        progress = min(iteration, max_iter) / max_iter
        factor = final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_lr_scheduler(optimizer: torch.optim.Optimizer, *, max_iter: int, schedule: str = "step",
                       steps: Sequence[int] = (), gamma: float = 0.1, final_factor: float = 0.0,
                       warmup_iters: int = 0, warmup_factor: float = 0.001) -> LambdaLR:
    """A ``LambdaLR`` giving iteration i the rate ``base_lr * lr_factor(i, ...)`` (arguments as there); call
    its ``step()`` once after each optimizer step. Its ``state_dict()`` holds the position only: the schedule
    itself always comes from these arguments, so a resumed run follows the arguments it is given."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {SCHEDULES}")
    steps = tuple(int(s) for s in steps)
    if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"steps must be increasing positive iterations, got {steps}")
    if schedule == "step" and steps and steps[-1] >= max_iter:
        warnings.warn(f"lr steps {[s for s in steps if s >= max_iter]} are at or after max_iter={max_iter} "
                      "and have no effect", stacklevel=2)
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if not 0 <= final_factor <= 1:
        raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
    if warmup_iters < 0 or not 0 <= warmup_factor <= 1:
        raise ValueError(f"warmup_iters must be >= 0 and warmup_factor in [0, 1], got {warmup_iters} and "
                         f"{warmup_factor}")
    factor = functools.partial(lr_factor, max_iter=max_iter, schedule=schedule, steps=steps, gamma=gamma,
                               final_factor=final_factor, warmup_iters=warmup_iters, warmup_factor=warmup_factor)
    return LambdaLR(optimizer, factor)
