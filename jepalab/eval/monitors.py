"""Collapse monitors: cheap statistics of a batch of embeddings that reveal (partial) collapse.

Silent collapse is a known pain of JEPA training (the loss drops suddenly while embeddings stop
carrying information). Two numbers catch it:
- RankMe effective rank (Garrido, Balestriero, Najman & LeCun, 2023, "RankMe: Assessing the
  Downstream Performance of Pretrained Self-Supervised Representations by Their Rank");
- the mean per-dimension std of L2-normalized embeddings (used as a collapse indicator in
  SimSiam, Chen & He, 2021): ``~1/sqrt(D)`` for isotropic embeddings, ``0`` when collapsed.

Absolute thresholds only catch total collapse. A partial collapse keeps a handful of directions
(LeJEPA without its SIGReg term: RankMe ~7 of 64 dims, spread still normal), which no fixed bound
separates from a model whose embeddings are naturally low-rank (a tiny I-JEPA has RankMe ~8 from
its first step on). So training runs are also compared with their own start: given the ranks at
step 0 (``reference``), a batch is flagged when both ranks fell below :data:`REL_RANK_FRACTION`
of them. Measured on this repository's configs (300 CPU steps): healthy runs keep 0.55-1.0 of
their starting RankMe (VICReg 0.55 at its lowest, LeJEPA 0.59, I-JEPA 0.82, V-JEPA ~1.0), LeJEPA
with ``sigreg_weight=0`` falls to 0.25 within 50 steps and to 0.19 by step 300.
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
#: ... or, given the run's starting ranks, when both ranks fell below this fraction of them.
REL_RANK_FRACTION = 0.35


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


def collapse_stats(z: Tensor, reference: dict[str, float] | None = None) -> dict[str, float]:
    """``rank`` (RankMe), ``rank_centered``, ``std``, ``std_ref`` (``1/sqrt(D)``) and
    ``collapsed`` for embeddings ``(N, D)``.

    ``collapsed`` is True when ``std < 0.1 / sqrt(D)`` (all embeddings nearly the same
    direction: ten times below an isotropic batch) or ``rank_centered < 2`` (the batch varies
    along at most one line, e.g. a rank-1 batch whose norms or signs still vary). The centered
    rank is used for the flag because a large shared offset makes RankMe ~1 while the
    variation around it can still be rich. A Gaussian batch has ``std ~ 1/sqrt(D)`` and both
    ranks close to ``min(N, D)``, so it is not flagged.

    ``reference``: the ``rank`` and ``rank_centered`` of the same run's embeddings at its start
    (same batch size). Then ``rank_ratio`` (``rank / reference["rank"]``) is added, and the
    batch is also flagged when RankMe *and* the centered rank both fell below
    ``REL_RANK_FRACTION`` of their starting values (both, so that a shared offset alone, which
    lowers only RankMe, is not taken for collapse).
    """
    z = _as_matrix(z)
    d = z.shape[1]
    rank, rank_c, std = effective_rank(z), effective_rank(z, center=True), embedding_std(z)
    std_ref = 1.0 / math.sqrt(d)
    collapsed = bool(std < STD_FRACTION * std_ref or rank_c < MIN_RANK)
    out = {"rank": rank, "rank_centered": rank_c, "std": std, "std_ref": std_ref}
    if reference and reference.get("rank", 0) > 0 and reference.get("rank_centered", 0) > 0:
        out["rank_ratio"] = rank / reference["rank"]
        fell = (out["rank_ratio"] < REL_RANK_FRACTION
                and rank_c / reference["rank_centered"] < REL_RANK_FRACTION)
        collapsed = collapsed or bool(fell)
    out["collapsed"] = collapsed
    return out
