"""VICReg recipe: two augmented views, encoder + expander, variance-invariance-covariance loss.

Bardes, Ponce & LeCun, 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning". Method: each image gives two random views; a shared encoder (here a
small ``jepalab.nn`` conv net or ViT, mean-pooled) and an MLP expander map them to ``z1, z2``;
the loss pulls ``z1`` to ``z2`` (weight 25), keeps each dimension's std above 1 (weight 25) and
decorrelates dimensions (weight 1). No teacher, no stop-gradient, no negatives.

This file also holds the two-view backbone (:class:`ViewBackbone`, :class:`ViewConfig`) shared
by the Barlow Twins and LeJEPA recipes, which differ only in their objective.

Under DDP the views are drawn per (seed, step, global image index) (``jepalab.draws``) and the
objective sees the projections of the *global* batch (``gather_rows``): VICReg's variance and
covariance and Barlow Twins' cross-correlation are batch statistics, so computing them on one
rank's rows would regularize another objective than one process does; the trainer makes the
projector's BatchNorm global too. ``W`` processes x ``B / W`` images thus train what 1 x ``B`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from jepalab.data.augment import AugmentConfig, ViewAugment
from jepalab.draws import Draws
from jepalab.errors import ConfigError, ShapeError
from jepalab.objectives.cross_rank import gather_rows
from jepalab.objectives.vicreg import VICRegLoss
from jepalab.recipes.base import Recipe


@dataclass
class ViewConfig:
    """Encoder, projector and view settings shared by the view-based recipes.

    ``encoder``: ``"conv"`` (``ConvEncoder``, CPU-friendly) or ``"vit"``; both downsample by
    ``patch_size``. The projector (expander) is ``Linear-BN-ReLU-Linear`` to ``proj_dim``;
    ``proj_hidden`` 0 makes it a single linear layer.
    """

    img_size: int = 16
    in_chans: int = 1
    encoder: str = "conv"
    embed_dim: int = 64
    patch_size: int = 4
    width: int = 16          # conv trunk width
    depth: int = 2           # ViT depth
    num_heads: int = 4       # ViT heads
    proj_hidden: int = 256
    proj_dim: int = 128
    num_views: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for settings no encoder can honour."""
        if self.encoder not in ("conv", "vit"):
            raise ConfigError(f"model.encoder must be 'conv' or 'vit', got {self.encoder!r}.")
        if self.num_views < 2:
            raise ConfigError(f"model.num_views must be >= 2 (the objective compares views), got {self.num_views}.")
        if self.proj_dim < 1 or self.proj_hidden < 0:
            raise ConfigError(f"model.proj_dim must be >= 1 and proj_hidden >= 0, got {self.proj_dim}, {self.proj_hidden}.")


def _he_init_convs(module: nn.Module) -> None:
    """He (Kaiming) normal init of every conv (He et al., 2015).

    Why: with PyTorch's default conv init the un-normalized conv trunk shrinks the signal by
    ~0.4x per layer, so on digits the per-image variation of its output is ~1e-3 of the
    positional part of the tokens and every image starts with nearly the same embedding.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ViewBackbone(nn.Module):
    """Encoder + learned pooling + projector: ``(B, C, H, W) -> (B, D)`` and ``(B, P)``.

    Why a learned pooling (a linear map of all ``N`` tokens to ``D``) instead of the mean: the
    encoders' tokens carry fixed sin-cos positions and are layer-normed, so at initialisation
    their mean is nearly the same vector for every image (effective rank ~1, measured on
    digits), which starves the objectives of signal; a linear read-out of the token grid keeps
    where things are.
    """

    def __init__(self, c: ViewConfig) -> None:
        super().__init__()
        c.validate()
        if c.encoder == "conv":
            from jepalab.nn.conv import ConvEncoder

            self.encoder: nn.Module = ConvEncoder(img_size=c.img_size, in_chans=c.in_chans, embed_dim=c.embed_dim,
                                                  width=c.width, patch_size=c.patch_size)
            _he_init_convs(self.encoder)
        else:
            from jepalab.nn.vit import ViT

            self.encoder = ViT(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans,
                               embed_dim=c.embed_dim, depth=c.depth, num_heads=c.num_heads)
        if c.proj_hidden:
            self.projector: nn.Module = nn.Sequential(
                nn.Linear(c.embed_dim, c.proj_hidden), nn.BatchNorm1d(c.proj_hidden), nn.ReLU(inplace=True),
                nn.Linear(c.proj_hidden, c.proj_dim),
            )
        else:
            self.projector = nn.Linear(c.embed_dim, c.proj_dim)
        with torch.no_grad():
            n_tokens = self.encoder(torch.zeros(1, c.in_chans, c.img_size, c.img_size)).shape[1]
        self.pool = nn.Linear(n_tokens * c.embed_dim, c.embed_dim)
        self.augment = ViewAugment(c.augment)
        self.img_shape = (c.in_chans, c.img_size, c.img_size)
        self.num_views = c.num_views

    def embed(self, x: Tensor) -> Tensor:
        """Pooled encoder output ``(B, C, H, W) -> (B, D)`` (what probes see)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            raise ShapeError(f"expected images (B, {', '.join(map(str, self.img_shape))}), got {tuple(x.shape)}; "
                             "set model.img_size / model.in_chans to match data.img_size / data.channels.")
        return self.pool(self.encoder(x).flatten(1))

    def views(self, batch: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Augment ``batch["images"]`` into ``num_views`` views, encode them in one pass.

        Returns the pooled embeddings of the first view ``(B, D)`` and the projections of every
        view, a list of ``num_views`` tensors ``(B, P)``.
        """
        if "images" not in batch:
            raise ShapeError(f"view recipes need batch['images'] (B, C, H, W); got keys {sorted(batch)}.")
        x = batch["images"]
        b = x.shape[0]
        if b < 2:
            raise ShapeError(f"view recipes need at least 2 images per batch (per rank), got {b}.")
        views = self.augment.views(x, self.num_views, Draws.of(batch, b))
        h = self.embed(torch.cat(views))
        z = self.projector(h)
        return h[:b], list(z.split(b))

    def first_view_pairs(self, objective: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Apply a two-view ``objective`` (a dict of loss terms) between the first view and each
        other view of the global batch and average the terms; adds this rank's detached
        ``embeddings`` for the monitor."""
        h, z = self.views(batch)
        z = [gather_rows(zv) for zv in z]
        terms = [objective(z[0], zv) for zv in z[1:]]
        out = {k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]}
        out["embeddings"] = h.detach()
        return out


@dataclass
class VICRegConfig(ViewConfig):
    """:class:`ViewConfig` plus the VICReg weights of Bardes et al. (2022)."""

    inv_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0


class VICReg(Recipe):
    """VICReg (Bardes et al., 2022) on pairs of augmented views; more than two views are
    compared pairwise with the first."""

    name = "vicreg"
    config_class = VICRegConfig

    def __init__(self, config: VICRegConfig) -> None:
        super().__init__(config)
        self.backbone = ViewBackbone(config)
        self.objective = VICRegLoss(config.inv_weight, config.var_weight, config.cov_weight)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        return self.backbone.first_view_pairs(self.objective, batch)

    def encode(self, x: Tensor) -> Tensor:
        """Pooled encoder embedding ``(B, C, H, W) -> (B, D)``."""
        return self.backbone.embed(x)


RECIPE = VICReg
