"""Batch statistics over the rows of every DDP rank, with gradients.

Why: VICReg's variance and covariance, Barlow Twins' cross-correlation and BatchNorm's mean and
variance are functions of the whole batch, but under DDP a rank holds only its ``B / W`` rows.
Computed on one rank's rows they regularize another objective than one process does on ``B``
rows. These collectives compute them on all rows and route each row's gradient back to the rank
that owns it, so ``W`` processes x ``B / W`` rows train what 1 process x ``B`` rows trains.

Gradient convention (the same as SIGReg's): the backward of a reduction also sums over ranks.
When every rank computes the same global quantity, each rank's local gradient is then ``W`` x the
single-process one, and DDP's average over ``W`` ranks gives the single-process gradient exactly.
Without an initialised process group (or with one rank) every function is the identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D401
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D401
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # all_reduce + slice instead of reduce_scatter, which gloo lacks.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks (gradient summed over ranks too)."""
    return _AllReduceSum.apply(x) if distributed() else x


def gather_rows(x: Tensor) -> Tensor:
    """All ranks' ``x (n, ...)`` concatenated in rank order, ``(W * n, ...)``: the global batch
    when every rank holds ``n`` consecutive rows of it (``jepalab.data.source.rank_rows``)."""
    return _GatherRows.apply(x) if distributed() else x
