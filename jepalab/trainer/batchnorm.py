"""BatchNorm over the global batch under DDP: the trainer swaps every BatchNorm for one whose
training statistics are taken over the rows of all ranks, and swaps the originals back after.

Why: a BatchNorm normalises each row by its batch's mean and variance. Under DDP a rank sees
``B / W`` rows, so per-rank statistics give other activations, other gradients and other running
averages than one process on ``B`` rows (the world model's projector ends in a BatchNorm; the
view recipes' projector has one too). With global statistics ``W`` processes train what one does.

Why not ``torch.nn.SyncBatchNorm``: it refuses CPU tensors, so it cannot run under gloo, where
the multi-process tests (and CPU users) run. This module does the same thing with two all-reduces
of per-channel sums on any device; the gradient flows through the reductions
(``jepalab.objectives.cross_rank``). The swapped-in module shares the original's parameters and
buffers, so the optimizer, checkpoints and ``state_dict`` keys are unchanged; in eval mode it is a
plain BatchNorm on the running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.objectives.cross_rank import all_reduce_sum, distributed

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class GlobalBatchNorm(nn.Module):
    """A BatchNorm (built from ``bn``, sharing its tensors) with statistics over all ranks."""

    def __init__(self, bn: nn.Module) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.track_running_stats = bn.track_running_stats
        self.weight, self.bias = bn.weight, bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name))
        self.check_input = bn._check_input_dim
        self.train(bn.training)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        batch_stats = self.training or not self.track_running_stats
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        if not batch_stats or not distributed():
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                batch_stats, factor, self.eps)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in fp32 (or fp64) under autocast
        n = all_reduce_sum(torch.tensor(float(x.numel() // x.shape[1]), device=x.device))
        if float(n) < 2:
            raise ValueError(f"BatchNorm needs more than 1 value per channel over all ranks, got input {tuple(x.shape)}.")
        mean = all_reduce_sum(xf.sum(dims)) / n
        xc = xf - mean.view(shape)
        var = all_reduce_sum((xc * xc).sum(dims)) / n
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


Swaps = list[tuple[nn.Module, str, nn.Module]]


def use_global_batchnorm(model: nn.Module) -> Swaps:
    """Replace every ``BatchNorm{1,2,3}d`` in ``model`` by a :class:`GlobalBatchNorm`; returns
    what :func:`restore_batchnorm` needs to undo it."""
    swaps: Swaps = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BATCHNORMS):
                setattr(parent, name, GlobalBatchNorm(child))
                swaps.append((parent, name, child))
    return swaps


def restore_batchnorm(swaps: Swaps) -> None:
    """Put the original BatchNorm modules back (their tensors hold the trained values)."""
    for parent, name, bn in reversed(swaps):
        bn.train(getattr(parent, name).training)
        setattr(parent, name, bn)
