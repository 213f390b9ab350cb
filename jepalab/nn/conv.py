"""A small convolutional encoder with the ViT interface, for tiny models that train in a minute on CPU.

Used as a drop-in context/target encoder in the I-JEPA (Assran et al., 2023) and V-JEPA
(Bardes et al., 2024) recipes when a transformer is too slow. Tokens are the cells of the final
feature map plus fixed sin-cos positions, so masks and predictors work unchanged.

Masking is approximate for convs: with ``keep`` the pixels of dropped cells are zeroed before the
trunk (so the context encoder cannot read the targets' pixels), but a kept cell's receptive field
still spans its neighbours' (zeroed) area, unlike a ViT where dropped patches simply do not exist.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jepalab.errors import ShapeError
from jepalab.masks import apply_masks

from .posenc import sincos_grid
from .vit import check_keep


def check_conv_geometry(img_size: int, patch_size: int, num_frames: int = 1) -> int:
    """Raise :class:`ShapeError` unless the conv trunk can tile the image; return its number of
    stride-2 stages. Each stage halves the side, so a cell is ``2**stages`` pixels wide: patch
    sizes must be powers of two (a ViT takes any size that divides the image)."""
    stages = int(round(math.log2(patch_size))) if patch_size > 0 else -1
    if stages < 1 or 2**stages != patch_size:
        raise ShapeError(f"model.patch_size={patch_size}: the conv encoder needs a power of 2 (2, 4, 8, 16, ...); "
                         "pick one, or use model.encoder=vit for other patch sizes.")
    if img_size % patch_size:
        raise ShapeError(f"model.img_size={img_size} must be a multiple of model.patch_size={patch_size}.")
    if num_frames < 1:
        raise ShapeError(f"num_frames must be >= 1, got {num_frames}.")
    return stages


class ConvEncoder(nn.Module):
    """Conv trunk downsampling by ``patch_size`` (a power of 2) to one token per cell.

    Input ``(B, C, H, W)``, or ``(B, C, T, H, W)`` when ``num_frames > 1`` (frames are encoded
    independently, tokens numbered ``t*h*w + i*w + j``). ``forward(x, keep=None) -> (B, K or N, D)``.
    """

    def __init__(
        self,
        img_size: int = 64,
        in_chans: int = 3,
        embed_dim: int = 128,
        width: int = 32,
        num_frames: int = 1,
        patch_size: int = 8,
    ) -> None:
        super().__init__()
        stages = check_conv_geometry(img_size, patch_size, num_frames)
        self.img_size, self.in_chans, self.num_frames = img_size, in_chans, num_frames
        self.patch_size, self.embed_dim = patch_size, embed_dim
        side = img_size // patch_size
        self.grid: tuple[int, ...] = (num_frames, side, side) if num_frames > 1 else (side, side)
        self.num_patches = math.prod(self.grid)
        layers: list[nn.Module] = []
        c_in = in_chans
        for s in range(stages):
            c_out = width * min(2**s, 4)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.GELU(),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.trunk = nn.Sequential(*layers)
        # Normalizing the cells before adding positions keeps content and position on one scale.
        # Zero biases make an empty (black) region a zero feature, which the norm keeps at zero.
        self.feat_norm = nn.LayerNorm(embed_dim)
        for mod in self.trunk:
            if isinstance(mod, nn.Conv2d):
                nn.init.zeros_(mod.bias)
        pos = sincos_grid(self.grid, embed_dim)
        self.register_buffer("pos_embed", pos - pos.mean(0), persistent=False)
        self.head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.norm = nn.LayerNorm(embed_dim)

    def _check_input(self, x: Tensor) -> None:
        if self.num_frames > 1:
            want = (self.in_chans, self.num_frames, self.img_size, self.img_size)
            ok, layout = x.dim() == 5 and tuple(x.shape[1:]) == want, "(B, C, T, H, W)"
        else:
            want = (self.in_chans, self.img_size, self.img_size)
            ok, layout = x.dim() == 4 and tuple(x.shape[1:]) == want, "(B, C, H, W)"
        if not ok:
            raise ShapeError(f"ConvEncoder expects {layout} with (C, ...) = {want}, got {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise ShapeError(f"ConvEncoder expects a floating-point input, got {x.dtype}.")

    def _hide_dropped(self, x: Tensor, keep: Tensor) -> Tensor:
        """Zero the pixels of every cell not listed in ``keep``."""
        b = x.shape[0]
        visible = torch.zeros(b, self.num_patches, device=x.device, dtype=x.dtype)
        visible.scatter_(1, keep, 1.0)
        p = self.patch_size
        cells = visible.view(b, 1, *self.grid)
        pixels = cells.repeat_interleave(p, dim=-1).repeat_interleave(p, dim=-2)
        return x * pixels

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        self._check_input(x)
        b = x.shape[0]
        if keep is not None:
            check_keep(keep, b, self.num_patches, "ConvEncoder")
            x = self._hide_dropped(x, keep)
        if self.num_frames > 1:
            t = self.num_frames
            frames = x.transpose(1, 2).reshape(b * t, self.in_chans, self.img_size, self.img_size)
            feats = self.trunk(frames)  # (B*T, D, h, w)
            tokens = feats.flatten(2).transpose(1, 2).reshape(b, -1, self.embed_dim)
        else:
            tokens = self.trunk(x).flatten(2).transpose(1, 2)
        tokens = self.feat_norm(tokens) + self.pos_embed
        if keep is not None:
            tokens = apply_masks(tokens, keep)
        return self.norm(tokens + self.head(tokens))

    def pool(self, tokens: Tensor) -> Tensor:
        """Mean over tokens: ``(B, N, D) -> (B, D)``."""
        if tokens.dim() != 3:
            raise ShapeError(f"pool expects tokens (B, N, D), got {tuple(tokens.shape)}.")
        return tokens.mean(dim=1)
