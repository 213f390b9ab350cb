"""Barlow Twins recipe: two augmented views, encoder + projector, cross-correlation to identity.

Zbontar, Jing, Misra, LeCun & Deny, 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction". Method: two random views of each image pass through a shared encoder (a small
``jepalab.nn`` encoder, mean-pooled) and projector; the batch-standardized projections' D x D
cross-correlation matrix is pushed to the identity, off-diagonal terms weighted by ~5e-3.
Under DDP the correlation is taken over the global batch (see ``ViewBackbone`` in ``vicreg.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from jepalab.objectives.barlow import BarlowTwinsLoss
from jepalab.recipes.base import Recipe
from jepalab.recipes.vicreg import ViewBackbone, ViewConfig


@dataclass
class BarlowConfig(ViewConfig):
    """:class:`ViewConfig` plus the off-diagonal weight lambda of Zbontar et al. (2021)."""

    lambda_offdiag: float = 5e-3


class BarlowTwins(Recipe):
    """Barlow Twins (Zbontar et al., 2021); extra views are compared pairwise with the first."""

    name = "barlow"
    config_class = BarlowConfig

    def __init__(self, config: BarlowConfig) -> None:
        super().__init__(config)
        self.backbone = ViewBackbone(config)
        self.objective = BarlowTwinsLoss(config.lambda_offdiag)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        return self.backbone.first_view_pairs(self.objective, batch)

    def encode(self, x: Tensor) -> Tensor:
        """Pooled encoder embedding ``(B, C, H, W) -> (B, D)``."""
        return self.backbone.embed(x)


RECIPE = BarlowTwins
