"""Barlow Twins: redundancy reduction via the cross-correlation matrix.

Zbontar, Jing, Misra, LeCun & Deny, 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction". Each view's embeddings are standardized along the batch; their ``D x D``
cross-correlation is pushed to the identity: diagonal to 1 (invariance), off-diagonal to 0
(redundancy reduction) with weight lambda ~ 5e-3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepalab.objectives.vicreg import check_pair


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins objective (Zbontar et al., 2021) on two views ``(N, D)``.

    ``c = z1n.T @ z2n / N`` with ``zin`` standardized per dim over the batch (biased std, as
    batch-norm without affine). ``on_diag = sum_i (1 - c_ii)^2``, ``off_diag = sum_{i!=j} c_ij^2``
    (unweighted), ``loss = on_diag + lambda_offdiag * off_diag``.
    """

    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        self.lambda_offdiag, self.eps = float(lambda_offdiag), float(eps)

    def _standardize(self, z: Tensor) -> Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + self.eps)

    def forward(self, z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        check_pair(z1, z2, "BarlowTwinsLoss")
        n = z1.shape[0]
        with torch.autocast(device_type=z1.device.type, enabled=False):  # correlations in fp32
            c = self._standardize(z1.float()).T @ self._standardize(z2.float()) / n
        diag = torch.diagonal(c)
        on_diag = (1.0 - diag).pow(2).sum()
        off_diag = c.pow(2).sum() - diag.pow(2).sum()
        return {"loss": on_diag + self.lambda_offdiag * off_diag, "on_diag": on_diag, "off_diag": off_diag}
