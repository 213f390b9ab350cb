"""Collapse monitors: cheap statistics of a batch of embeddings that reveal (partial) collapse.

Silent collapse is a known pain of JEPA training (the loss drops suddenly while embeddings stop
carrying information). Two numbers catch it:
- RankMe effective rank (Garrido, Balestriero, Najman & LeCun, 2023, "RankMe: Assessing the
  Downstream Performance of Pretrained Self-Supervised Representations by Their Rank");
- the mean per-dimension std of L2-normalized embeddings (used as a collapse indicator in
  SimSiam, Chen & He, 2021): ``~1/sqrt(D)`` for isotropic embeddings, ``0`` when collapsed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from jepalab.errors import ShapeError

#: A batch is flagged when its normalized std is below this fraction of the isotropic ``1/sqrt(D)``.
STD_FRACTION = 0.1
#: ... or when its centered effective rank is below this (a rank-1 batch has rank ~1).
MIN_RANK = 2.0


def _as_matrix(z: Tensor) -> Tensor:
    """Flatten ``(..., D)`` to ``(N, D)`` in float32 without a graph."""
    if not isinstance(z, Tensor) or z.ndim < 2 or z.shape[-1] < 1:
        raise ShapeError(f"collapse monitors expect embeddings (N, D) or (..., D), got {getattr(z, 'shape', type(z))}.")
    z = z.detach().reshape(-1, z.shape[-1])
    if z.shape[0] < 2:
        raise ShapeError(f"collapse monitors need at least 2 embeddings, got {z.shape[0]}.")
    return z.float()


def effective_rank(z: Tensor, center: bool = False, eps: float = 1e-7) -> float:
    """RankMe: ``exp(H(p))`` with ``p`` the singular values of ``z (N, D)`` normalized to sum 1.

    Between 1 and ``min(N, D)``; equals ``k`` for a rank-``k`` matrix with equal singular values.
    Not centered by default (as in RankMe), so an all-identical batch has rank ~1; with
    ``center=True`` the batch mean is removed first (an all-identical batch then has rank 0).
    """
    z = _as_matrix(z)
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(z)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def embedding_std(z: Tensor) -> float:
    """Mean over dims of the batch std of L2-normalized rows of ``z (N, D)``; collapse -> 0."""
    z = _as_matrix(z)
    zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float(zn.std(dim=0).mean())


def collapse_stats(z: Tensor) -> dict[str, float]:
    """``rank`` (RankMe), ``rank_centered``, ``std``, ``std_ref`` (``1/sqrt(D)``) and
    ``collapsed`` for embeddings ``(N, D)``.

    ``collapsed`` is True when ``std < 0.1 / sqrt(D)`` (all embeddings nearly the same
    direction: ten times below an isotropic batch) or ``rank_centered < 2`` (the batch varies
    along at most one line, e.g. a rank-1 batch whose norms or signs still vary). The centered
    rank is used for the flag because a large shared offset makes RankMe ~1 while the
    variation around it can still be rich. A Gaussian batch has ``std ~ 1/sqrt(D)`` and both
    ranks close to ``min(N, D)``, so it is not flagged.
    """
    z = _as_matrix(z)
    d = z.shape[1]
    rank, rank_c, std = effective_rank(z), effective_rank(z, center=True), embedding_std(z)
    std_ref = 1.0 / math.sqrt(d)
    collapsed = bool(std < STD_FRACTION * std_ref or rank_c < MIN_RANK)
    return {"rank": rank, "rank_centered": rank_c, "std": std, "std_ref": std_ref, "collapsed": collapsed}
