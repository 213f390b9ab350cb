"""VICReg: Variance-Invariance-Covariance Regularization.

Bardes, Ponce & LeCun, 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning". Two views' embeddings are pulled together (invariance, MSE) while
each branch keeps every dimension's std above 1 (hinge) and decorrelates its dimensions
(squared off-diagonal covariance). Paper weights: invariance 25, variance 25, covariance 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ShapeError


def check_pair(z1: Tensor, z2: Tensor, who: str) -> None:
    """Raise ``ShapeError`` unless two views' embeddings are both ``(N, D)`` (shared by the two-view losses)."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ShapeError(
            f"{who} needs two embeddings of the same shape (N, D), got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}; pool tokens to one vector per sample first."
        )
    if z1.shape[0] < 2:
        raise ShapeError(f"{who} needs a batch of at least 2 samples to estimate statistics, got {z1.shape[0]}.")


def variance_term(z: Tensor, eps: float = 1e-4) -> Tensor:
    """Mean over dims of ``relu(1 - sqrt(var + eps))``; ``z`` is ``(N, D)``, unbiased variance."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by ``D``; ``z`` is ``(N, D)``."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


class VICRegLoss(nn.Module):
    """VICReg objective (Bardes et al., 2022) on two views ``z1, z2`` of shape ``(N, D)``.

    Terms (returned unweighted, total weighted in ``loss``):
    ``invariance`` = mean squared error between the views;
    ``variance`` = average over the two branches of the std hinge at 1;
    ``covariance`` = sum over the two branches of squared off-diagonal covariance / D.
    Statistics are over the rows given (the VICReg recipe gives the global batch's rows under DDP).
    """

    def __init__(self, inv: float = 25.0, var: float = 25.0, cov: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        self.inv, self.var, self.cov, self.eps = float(inv), float(var), float(cov), float(eps)

    def forward(self, z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        check_pair(z1, z2, "VICRegLoss")
        with torch.autocast(device_type=z1.device.type, enabled=False):  # statistics in fp32
            return self._terms(z1.float(), z2.float())

    def _terms(self, z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        invariance = F.mse_loss(z1, z2)
        variance = 0.5 * (variance_term(z1, self.eps) + variance_term(z2, self.eps))
        covariance = covariance_term(z1) + covariance_term(z2)
        loss = self.inv * invariance + self.var * variance + self.cov * covariance
        return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
