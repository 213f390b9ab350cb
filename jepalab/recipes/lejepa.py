"""LeJEPA recipe: several views, predict their mean embedding, SIGReg, and nothing else.

Balestriero & LeCun, 2025, "LeJEPA: Provable and Scalable Self-Supervised Learning Without the
Heuristics". Method: ``V`` augmented views of each image go through one encoder + projector
(no EMA teacher, no stop-gradient); the prediction loss pulls every view's projection to the
views' mean, and SIGReg pushes the projections towards an isotropic Gaussian:
``loss = (1 - lambda) * pred + lambda * SIGReg`` with ``lambda ~ 0.05``. The paper's centres are
the global views' mean; all views here are global (same resolution).

Multi-process: views are drawn per (seed, step, global image index) (``jepalab.draws``), the
prediction term is a mean over rows (DDP's gradient average makes it the global mean) and SIGReg
reduces its statistics over all ranks, so ``W`` processes train what one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from jepalab.errors import ConfigError
from jepalab.objectives.sigreg import SIGReg
from jepalab.recipes.base import Recipe
from jepalab.recipes.vicreg import ViewBackbone, ViewConfig


@dataclass
class LeJEPAConfig(ViewConfig):
    """:class:`ViewConfig` plus LeJEPA's weight ``lambda`` and SIGReg's sketch size."""

    num_views: int = 4
    proj_dim: int = 64
    sigreg_weight: float = 0.05
    sigreg_proj: int = 256
    sigreg_points: int = 17
    sigreg_tmax: float = 3.0

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.sigreg_weight <= 1.0:
            raise ConfigError(f"model.sigreg_weight (lambda) must be in [0, 1], got {self.sigreg_weight}.")


class LeJEPA(Recipe):
    """LeJEPA (Balestriero & LeCun, 2025) over ``num_views`` augmented views."""

    name = "lejepa"
    config_class = LeJEPAConfig

    def __init__(self, config: LeJEPAConfig) -> None:
        super().__init__(config)
        config.validate()
        self.backbone = ViewBackbone(config)
        self.sigreg = SIGReg(config.sigreg_proj, config.sigreg_points, config.sigreg_tmax)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        h, z = self.backbone.views(batch)
        zs = torch.stack(z)  # (V, B, P)
        centre = zs.mean(dim=0, keepdim=True)
        # Mean over views, samples AND projection dims, as in the paper: lambda then has the
        # paper's meaning (a per-dim sum would shrink lambda's effect by the projection width).
        pred = (zs - centre).pow(2).mean()
        # Same projections for all views in a step, and (seeded by step) on every DDP rank.
        sig = torch.stack([self.sigreg(zv, step=step) for zv in z]).mean()
        lam = self.config.sigreg_weight
        loss = (1.0 - lam) * pred + lam * sig
        return {"loss": loss, "prediction": pred.detach(), "sigreg": sig.detach(), "embeddings": h.detach()}

    def encode(self, x: Tensor) -> Tensor:
        """Pooled encoder embedding ``(B, C, H, W) -> (B, D)``."""
        return self.backbone.embed(x)


RECIPE = LeJEPA
