"""Exponential-moving-average teacher: the anti-collapse device of I-JEPA and V-JEPA.

I-JEPA (Assran et al., 2023) computes targets with a teacher whose weights are an EMA of the
context encoder, momentum rising linearly from 0.996 to 1.0 over training; no gradient ever
reaches it (stop-gradient). V-JEPA (Bardes et al., 2024) uses 0.998 -> 1.0.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from jepalab.errors import ConfigError


class EMATeacher(nn.Module):
    """A frozen deep copy of ``student`` updated as ``t <- m t + (1 - m) s``.

    It is an ``nn.Module`` so that its weights live in the recipe's ``state_dict`` (saved in
    checkpoints, moved by ``.to(device)``) while ``requires_grad=False`` keeps them out of the
    optimizer. Calling it runs the copy under ``no_grad`` and detaches the outputs.
    """

    def __init__(self, student: nn.Module, momentum: tuple[float, float] = (0.996, 1.0), total_steps: int = 1) -> None:
        super().__init__()
        if len(momentum) != 2 or not all(0.0 <= m <= 1.0 for m in momentum):
            raise ConfigError(f"EMA momentum must be a pair (start, end) in [0, 1], got {momentum}.")
        if int(total_steps) < 1:
            raise ConfigError(f"EMA total_steps must be >= 1, got {total_steps}; set it to the run length.")
        self.momentum = (float(momentum[0]), float(momentum[1]))
        self.total_steps = int(total_steps)
        self.module = copy.deepcopy(student)
        for p in self.module.parameters():
            p.requires_grad_(False)

    def momentum_at(self, step: int) -> float:
        """Linear schedule: ``start`` at step 0, ``end`` at ``total_steps`` and after."""
        frac = min(max(step, 0) / self.total_steps, 1.0)
        m0, m1 = self.momentum
        return m0 + (m1 - m0) * frac

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> float:
        """Move the teacher towards ``student`` with the momentum of ``step``; returns it.

        Buffers (norm statistics, fixed position tables) are copied, not averaged: averaging a
        constant table with itself drifts it by rounding, and running statistics belong to the
        network that produced them.
        """
        m = self.momentum_at(step)
        t_params = list(self.module.parameters())
        s_params = list(student.parameters())
        if len(t_params) != len(s_params):
            raise ConfigError("EMATeacher.update got a student with a different architecture than the teacher.")
        for pt, ps in zip(t_params, s_params):
            pt.mul_(m).add_(ps.detach().to(pt.dtype), alpha=1.0 - m)
        for bt, bs in zip(self.module.buffers(), student.buffers()):
            bt.copy_(bs)
        return m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher without building a graph; tensor outputs are detached."""
        with torch.no_grad():
            out = self.module(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.detach()
        if isinstance(out, (tuple, list)):
            return type(out)(o.detach() if isinstance(o, torch.Tensor) else o for o in out)
        return out
