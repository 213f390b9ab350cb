"""Regression losses between predicted and target embeddings.

I-JEPA (Assran et al., 2023, "Self-Supervised Learning from Images with a Joint-Embedding
Predictive Architecture") regresses the teacher's patch embeddings with an L2 loss (its public
code uses smooth-L1); V-JEPA (Bardes et al., 2024) uses L1. All variants are offered here so that
a recipe picks one by name from its config.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from jepalab.errors import ConfigError, ShapeError

KINDS = ("l1", "l2", "smooth_l1", "cosine")


def prediction_loss(pred: Tensor, target: Tensor, kind: str = "l2") -> Tensor:
    """Mean regression loss between ``pred`` and ``target`` of identical shape ``(..., D)``.

    ``kind``: ``"l1"`` mean absolute error, ``"l2"`` mean squared error, ``"smooth_l1"`` Huber
    with beta 1, ``"cosine"`` mean of ``1 - cos(pred, target)`` along the last dim ``D``.
    The target is used as given: stop-gradient (if any) is the caller's choice.
    """
    if kind not in KINDS:
        raise ConfigError(f"Unknown prediction loss '{kind}'; choose one of {', '.join(KINDS)}.")
    if pred.shape != target.shape:
        raise ShapeError(
            f"prediction_loss needs pred and target of the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}; gather the target tokens with the same indices."
        )
    if pred.ndim == 0:
        raise ShapeError("prediction_loss needs tensors with at least one dimension (..., D).")
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "l2":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=1.0)
    return (1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)).mean()
