"""Bidirectional InfoNCE with a learned temperature: VL-JEPA's loss in the shared embedding space.

VL-JEPA (Chen, Shukor, ..., LeCun, Fung; arXiv 2512.10942) trains its predictor by contrasting each
predicted answer embedding with the target embeddings of the batch, in both directions, as CLIP
does for image-text pairs (Radford et al. 2021, symmetric cross-entropy over the similarity
matrix, temperature learned as ``log(1 / tau)``). The paper's reading: the positive term aligns a
prediction with its target, the negatives spread the predictions over the sphere (alignment +
uniformity, Wang & Isola 2020), which is why a predictor trained this way does not collapse
without an EMA teacher or a variance term.

Why ``same``: with short answers many rows of a batch share one target ("two", "red"); treating
those rows as negatives of each other would push identical meanings apart. Rows marked equal in
``same`` count as positives together: each row's loss is ``-log`` of the softmax mass on all its
positives (zero when all the mass is there), which equals the plain InfoNCE when all targets are
distinct.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ShapeError


def infonce(pred: Tensor, target: Tensor, logit_scale: Tensor | float, same: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between ``pred (B, D)`` and ``target (B, D)`` (both L2-normalised here).

    ``logit_scale`` multiplies the cosine similarities (1 / temperature). ``same (B, B)`` bool:
    which rows share a target (defaults to the identity). Returns the mean of the pred->target
    and target->pred cross-entropies, a scalar."""
    if pred.dim() != 2 or pred.shape != target.shape:
        raise ShapeError(f"infonce expects pred and target of one shape (B, D); got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}.")
    b = pred.shape[0]
    if same is None:
        same = torch.eye(b, dtype=torch.bool, device=pred.device)
    elif same.shape != (b, b):
        raise ShapeError(f"infonce: same must be ({b}, {b}); got {tuple(same.shape)}.")
    p, t = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    logits = logit_scale * p @ t.T
    same = same.to(torch.bool) | torch.eye(b, dtype=torch.bool, device=pred.device)

    def one_way(lg: Tensor, pos: Tensor) -> Tensor:
        return (lg.logsumexp(1) - lg.masked_fill(~pos, float("-inf")).logsumexp(1)).mean()

    return 0.5 * (one_way(logits, same) + one_way(logits.T, same.T))


class InfoNCE(nn.Module):
    """:func:`infonce` with a learned temperature, ``log(1/tau)`` initialised at ``log(1/init_tau)``
    and clamped so that ``1/tau <= max_scale`` (CLIP's guard against a runaway scale)."""

    def __init__(self, init_tau: float = 0.07, max_scale: float = 100.0, learn: bool = True) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_tau)), requires_grad=learn)
        self.max_log = math.log(max_scale)

    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()

    def forward(self, pred: Tensor, target: Tensor, same: Tensor | None = None) -> Tensor:
        return infonce(pred, target, self.scale(), same)


def same_rows(keys: Tensor) -> Tensor:
    """``(B, B)`` bool: rows whose ``keys (B, ...)`` are equal (e.g. the token ids of their target text)."""
    flat = keys.reshape(keys.shape[0], -1)
    return (flat[:, None, :] == flat[None, :, :]).all(-1)


__all__ = ["InfoNCE", "infonce", "same_rows"]
