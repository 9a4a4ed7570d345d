"""Parameter and FLOP counting, shared by ``tools/model_stats.py`` and ``benchmarks/``.

FLOPs are multiply-adds, the convention of the S3D-G paper (Xie et al., ECCV 2018): one fused
multiply-add is one FLOP, which is also how fvcore's ``FlopCountAnalysis`` counts convolutions and
matrix products. What is counted:

* counted: convolutions (``aten::_convolution``: C_in/groups x prod(kernel) multiply-adds per output
  element; bias additions are not counted) and matrix products (``aten::linear``, ``aten::addmm``,
  ``aten::matmul``, ``aten::mm``, ``aten::bmm``, ``aten::einsum``: the feature-gating FCs of S3D-G;
  M x N x K multiply-adds per product).
* not counted: BatchNorm (``aten::batch_norm``, which fvcore counts by default and we drop: at
  inference it folds into the preceding convolution; it would add about 0.5% to S3D), max and
  average pooling (``aten::max_pool3d``, ``aten::avg_pool3d``), the means of feature gating and of
  the classifier head (``aten::mean``), the gate's ``aten::sigmoid`` and its broadcast product
  (``aten::mul``), additions (``aten::add``), ReLU, padding, concatenation, splits, dropout and other
  data movement (fvcore's ignored ops).

fvcore's warnings about operators without a handle are silenced; ``FlopCount.skipped`` lists, with
their number of calls, the operators that were met in the trace and left out.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Sequence, Tuple, Union

import torch
from torch import nn

with warnings.catch_warnings():
    # fvcore scripts a few functions at import time, which newer torch releases mark as deprecated.
    warnings.simplefilter("ignore")
    from fvcore.nn import FlopCountAnalysis, parameter_count
    from fvcore.nn.jit_handles import (
        addmm_flop_jit,
        bmm_flop_jit,
        conv_flop_jit,
        einsum_flop_jit,
        linear_flop_jit,
        matmul_flop_jit,
    )

__all__ = ["COUNTED_OPS", "FlopCount", "clip_input", "count_flops", "count_params"]

# The only operators counted, with fvcore's multiply-add handles. fvcore's other defaults (batch_norm,
# group/layer/instance norm, upsampling, adaptive pooling, grid_sample) are dropped, so that they show
# up in ``FlopCount.skipped`` instead of the total.
COUNTED_OPS: Dict[str, Callable] = {
    "aten::_convolution": conv_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::addmm": addmm_flop_jit,
    "aten::matmul": matmul_flop_jit,
    "aten::mm": matmul_flop_jit,
    "aten::bmm": bmm_flop_jit,
    "aten::einsum": einsum_flop_jit,
}


@dataclass
class FlopCount:
    """The result of ``count_flops``.

    Attributes:
        total (int): multiply-adds of one forward pass over the given inputs (the whole batch).
        skipped (Counter): operators met in the trace and not counted -> number of calls.
    """

    total: int
    skipped: Counter = field(default_factory=Counter)

    @property
    def gflops(self) -> float:
        """``total`` in units of 1e9 multiply-adds."""
        return self.total / 1e9


def count_flops(model: nn.Module, inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]]) -> FlopCount:
    """Multiply-adds of ``model(*inputs)``, traced once with fvcore (see the module docstring).

    Args:
        model (nn.Module): put it in eval mode first (dropout and BN are traced as they run).
        inputs (Tensor or tuple of Tensors): e.g. a clip (B, 3, T, H, W); FLOPs cover the whole batch.

    Returns:
        FlopCount.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    analysis = FlopCountAnalysis(model, inputs)
    analysis.clear_op_handles()
    analysis.set_op_handle(**COUNTED_OPS)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings():
        # fvcore calls torch.jit APIs that newer torch releases mark as deprecated.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            total = analysis.total()
            skipped = Counter(analysis.unsupported_ops())
    return FlopCount(int(total), skipped)


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once; buffers such as BN statistics excluded)."""
    return int(parameter_count(model)[""])


def clip_input(size: Sequence[int], batch: int = 1, channels: int = 3) -> torch.Tensor:
    """A random clip of shape (batch, channels, T, H, W) for ``size`` = (T, H, W)."""
    return torch.randn(batch, channels, *size)
