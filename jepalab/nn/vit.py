"""Vision Transformer encoder with 2D patches or 3D space-time tubelets.

The context/target encoder of I-JEPA (Assran et al., 2023) and V-JEPA (Bardes et al., 2024):
fixed sin-cos positions, pre-norm blocks, a final LayerNorm, and a ``keep`` argument so the context
encoder only ever sees (and pays for) the visible patches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.masks import apply_masks

from .blocks import Transformer
from .posenc import sincos_grid


def check_keep(keep: Tensor, batch: int, num_patches: int, who: str) -> None:
    """Validate a ``(B, K)`` index tensor of kept tokens against ``num_patches``."""
    if not isinstance(keep, Tensor) or keep.dim() != 2 or keep.shape[0] != batch:
        shape = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep).__name__
        raise ShapeError(f"{who}: keep must be a LongTensor (B={batch}, K), got {shape}.")
    if keep.dtype != torch.long:
        raise ShapeError(f"{who}: keep must be int64 (torch.long) indices, got {keep.dtype}.")
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= num_patches):
        raise ShapeError(
            f"{who}: keep indices must lie in [0, {num_patches}), got [{int(keep.min())}, "
            f"{int(keep.max())}]; build masks from this encoder's .grid."
        )


class ViT(nn.Module):
    """ViT over images ``(B, C, H, W)`` or, with ``num_frames > 1``, clips ``(B, C, T, H, W)``.

    ``forward(x, keep=None) -> (B, K or N, D)``: normalized tokens of the kept patches (all when
    ``keep`` is None). Tokens are numbered row-major, time first: ``t*h*w + i*w + j``.
    """

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 8,
        in_chans: int = 3,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        num_frames: int = 1,
        tubelet: int = 1,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ShapeError(f"img_size {img_size} must be a multiple of patch_size {patch_size}.")
        if num_frames < 1 or tubelet < 1 or num_frames % tubelet:
            raise ShapeError(f"num_frames {num_frames} must be a positive multiple of tubelet {tubelet}.")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.num_frames, self.tubelet = num_frames, tubelet
        self.embed_dim = embed_dim
        side = img_size // patch_size
        self.video = num_frames > 1
        if self.video:
            self.grid: tuple[int, ...] = (num_frames // tubelet, side, side)
            self.patch_embed: nn.Module = nn.Conv3d(
                in_chans, embed_dim, (tubelet, patch_size, patch_size), stride=(tubelet, patch_size, patch_size)
            )
        else:
            self.grid = (side, side)
            self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.num_patches = math.prod(self.grid)
        pos = sincos_grid(self.grid, embed_dim)
        self.register_buffer("pos_embed", pos - pos.mean(0), persistent=False)
        self.transformer = Transformer(embed_dim, depth, num_heads, mlp_ratio)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)

    def _check_input(self, x: Tensor) -> None:
        if self.video:
            want = (self.in_chans, self.num_frames, self.img_size, self.img_size)
            ok = x.dim() == 5 and tuple(x.shape[1:]) == want
            layout = "(B, C, T, H, W)"
        else:
            want = (self.in_chans, self.img_size, self.img_size)
            ok = x.dim() == 4 and tuple(x.shape[1:]) == want
            layout = "(B, C, H, W)"
        if not ok:
            raise ShapeError(f"ViT expects {layout} with (C, ...) = {want}, got {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise ShapeError(f"ViT expects a floating-point input, got {x.dtype}; convert with x.float().")

    def patchify(self, x: Tensor) -> Tensor:
        """Patch tokens plus positions, before the transformer: ``(B, N, D)``."""
        self._check_input(x)
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        tokens = self.patchify(x)
        if keep is not None:
            check_keep(keep, x.shape[0], self.num_patches, "ViT")
            tokens = apply_masks(tokens, keep)
        return self.transformer(tokens)

    def block_outputs(self, x: Tensor, last: int) -> list[Tensor]:
        """Outputs ``(B, N, D)`` of the last ``last`` transformer blocks on the full input, before
        the final LayerNorm (data2vec-style multi-layer targets, pre-norm probing)."""
        blocks = self.transformer.blocks
        if not 1 <= last <= len(blocks):
            raise ConfigError(f"asked for the last {last} blocks of a {len(blocks)}-block ViT; use 1..{len(blocks)}.")
        h = self.patchify(x)
        outs = []
        for i, blk in enumerate(blocks):
            h = blk(h)
            if i >= len(blocks) - last:
                outs.append(h)
        return outs

    def pool(self, tokens: Tensor) -> Tensor:
        """Mean over tokens: ``(B, N, D) -> (B, D)``."""
        if tokens.dim() != 3:
            raise ShapeError(f"pool expects tokens (B, N, D), got {tuple(tokens.shape)}.")
        return tokens.mean(dim=1)
