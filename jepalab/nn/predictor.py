"""The narrow mask-token predictor of I-JEPA (Assran et al., 2023), also used by V-JEPA.

It maps context tokens to predictions of the target tokens at given positions: context tokens
are projected to the narrower ``pred_dim`` and tagged with their positions; each target slot is
ONE shared learned mask token plus that target's position embedding, so the only thing that tells
two target slots apart is *where* they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepalab.errors import ShapeError
from jepalab.masks import apply_masks

from .blocks import Transformer, init_weights
from .posenc import sincos_1d
from .vit import check_keep


class MaskedPredictor(nn.Module):
    """``forward(ctx_tokens (B, Nc, D), ctx_idx (B, Nc), tgt_idx (B, Nt)) -> (B, Nt, D)``.

    ``pos`` is the fixed ``(num_patches, pred_dim)`` position table (e.g. ``sincos_2d`` of the
    encoder's grid); when None a 1D sin-cos table over the token index is used.
    """

    def __init__(
        self,
        num_patches: int,
        embed_dim: int,
        pred_dim: int | None = None,
        depth: int = 4,
        num_heads: int = 4,
        pos: Tensor | None = None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        pred_dim = pred_dim or embed_dim // 2
        if pos is None:
            pos = sincos_1d(torch.arange(num_patches), pred_dim)
        if tuple(pos.shape) != (num_patches, pred_dim):
            raise ShapeError(
                f"MaskedPredictor pos must be (num_patches={num_patches}, pred_dim={pred_dim}), "
                f"got {tuple(pos.shape)}; build it with sincos_2d/sincos_3d(grid..., pred_dim)."
            )
        self.num_patches, self.embed_dim, self.pred_dim = num_patches, embed_dim, pred_dim
        self.register_buffer("pos_embed", pos.detach().float().clone(), persistent=False)
        self.embed = nn.Linear(embed_dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.transformer = Transformer(pred_dim, depth, num_heads, mlp_ratio)
        self.proj = nn.Linear(pred_dim, embed_dim)
        init_weights(self.embed)
        init_weights(self.proj)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, ctx_tokens: Tensor, ctx_idx: Tensor, tgt_idx: Tensor) -> Tensor:
        if ctx_tokens.dim() != 3 or ctx_tokens.shape[-1] != self.embed_dim:
            raise ShapeError(
                f"MaskedPredictor expects ctx_tokens (B, Nc, {self.embed_dim}), got {tuple(ctx_tokens.shape)}."
            )
        b, nc = ctx_tokens.shape[:2]
        check_keep(ctx_idx, b, self.num_patches, "MaskedPredictor ctx_idx")
        check_keep(tgt_idx, b, self.num_patches, "MaskedPredictor tgt_idx")
        if ctx_idx.shape[1] != nc:
            raise ShapeError(f"ctx_idx has {ctx_idx.shape[1]} indices but ctx_tokens has {nc} tokens.")
        pos = self.pos_embed.unsqueeze(0).expand(b, -1, -1)
        ctx = self.embed(ctx_tokens) + apply_masks(pos, ctx_idx)
        nt = tgt_idx.shape[1]
        queries = self.mask_token.expand(b, nt, -1) + apply_masks(pos, tgt_idx)
        out = self.transformer(torch.cat([ctx, queries], dim=1))
        return self.proj(out[:, nc:])
