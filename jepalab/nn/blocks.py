"""Pre-norm transformer blocks on top of ``F.scaled_dot_product_attention``.

Shared by the encoders (ViT) and the predictors. One fused ``qkv`` linear and the fused attention
kernel keep a tiny model fast on CPU: no Python loop runs over tokens or heads.
Architecture as in ViT (Dosovitskiy et al., 2021), the backbone of I-JEPA and V-JEPA.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ShapeError


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) that adds its bias after the GEMM.

    Why: on CPU ``addmm`` first broadcasts the bias into the whole ``(B*N, out)`` output and then
    runs the GEMM with beta=1; a plain GEMM followed by an in-place bias add measured 3-5% faster
    on a whole I-JEPA training step (2 threads) and gives the same values up to float rounding.
    ``(..., in) -> (..., out)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight)
        return out if self.bias is None else out.add_(self.bias)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection. ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ShapeError(f"dim {dim} is not divisible by heads {heads}; choose heads that divide it.")
        self.heads = heads
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        # q, k, v as strided (B, H, N, d/H) views of the qkv output: no copy forward, and in
        # backward ``unbind`` stacks the three gradients straight into the (B, N, 3, H, d/H)
        # layout the qkv linear needs (indexing qkv[0..2] would zero-fill and copy a full-size
        # gradient per slice: 3 fills + 3 copies per block, ~35% of attention's time on CPU).
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``. ``(B, N, D) -> (B, N, D)``.

    ``attn_mask`` (optional) is passed to ``F.scaled_dot_product_attention``: a bool mask
    ``(N, N)`` or ``(B, 1, N, N)`` where True means *may attend*, or an additive float mask.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(Linear(dim, hidden), nn.GELU(), Linear(hidden, dim))

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        # Residuals are added in place into the branch outputs (fresh tensors from the last
        # Linear, saved by no backward): one (B, N, D) allocation less per residual, same sum.
        x = self.attn(self.norm1(x), attn_mask).add_(x)
        return self.mlp(self.norm2(x)).add_(x)


class Transformer(nn.Module):
    """A stack of ``depth`` ``Block``s followed by a final LayerNorm. ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if depth < 0:
            raise ShapeError(f"depth must be >= 0, got {depth}.")
        self.dim = dim
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.apply(init_weights)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"Transformer expects (B, N, {self.dim}) tokens, got {tuple(x.shape)}.")
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.norm(x)


def init_weights(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorm: the usual ViT init."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
