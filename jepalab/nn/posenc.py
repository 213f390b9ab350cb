"""Fixed sine-cosine position embeddings for patch grids.

Fixed (not learned) positions, as in I-JEPA (2D) and V-JEPA (3D, space-time), let the predictor be
told *where* a target patch is without any parameters to fit, and make a tiny model trainable
from step one. Each axis gets its own slice of the channels; within a slice half the channels
are ``sin(pos * w_k)`` and half ``cos(pos * w_k)`` with geometric frequencies ``w_k``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jepalab.errors import ShapeError


def sincos_1d(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Embed positions ``(L,)`` into ``(L, dim)``; ``dim`` must be even."""
    if dim <= 0 or dim % 2:
        raise ShapeError(f"sin-cos embedding needs a positive even dimension, got {dim}.")
    half = dim // 2
    freqs = 1.0 / base ** (torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def _split_even(dim: int, parts: int) -> list[int]:
    """Split ``dim`` channels into ``parts`` even slices as equal as possible (last takes the rest)."""
    if dim % 2 or dim < 2 * parts:
        raise ShapeError(
            f"a {parts}-axis sin-cos embedding needs an even dimension >= {2 * parts}, got {dim}; "
            "pick an embed_dim that is a multiple of 2 (ideally of 4 for 2D, 6 for 3D)."
        )
    each = 2 * (dim // (2 * parts))
    sizes = [each] * (parts - 1)
    sizes.append(dim - each * (parts - 1))
    return sizes


def sincos_2d(grid_h: int, grid_w: int, dim: int) -> Tensor:
    """Positions of an ``grid_h x grid_w`` patch grid, row-major: returns ``(H*W, D)``."""
    if grid_h < 1 or grid_w < 1:
        raise ShapeError(f"grid must be at least 1x1, got {grid_h}x{grid_w}.")
    d_h, d_w = _split_even(dim, 2)
    hh, ww = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat([sincos_1d(hh.reshape(-1), d_h), sincos_1d(ww.reshape(-1), d_w)], dim=1)


def sincos_3d(t: int, h: int, w: int, dim: int) -> Tensor:
    """Positions of a ``t x h x w`` space-time grid, flattened time-major: returns ``(T*H*W, D)``.

    Index ``i*H*W + j*W + k`` is frame ``i``, row ``j``, column ``k`` -- the order in which
    ``jepalab.nn.ViT`` flattens its 3D patch embedding and ``jepalab.masks`` numbers tokens.
    """
    if t < 1 or h < 1 or w < 1:
        raise ShapeError(f"grid must be at least 1x1x1, got {t}x{h}x{w}.")
    d_h, d_w, d_t = _split_even(dim, 3)
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat(
        [
            sincos_1d(tt.reshape(-1), d_t),
            sincos_1d(hh.reshape(-1), d_h),
            sincos_1d(ww.reshape(-1), d_w),
        ],
        dim=1,
    )


def sincos_grid(grid: tuple[int, ...], dim: int) -> Tensor:
    """Dispatch on the grid's rank: ``(H, W)`` -> 2D, ``(T, H, W)`` -> 3D. Returns ``(N, D)``."""
    if len(grid) == 2:
        return sincos_2d(grid[0], grid[1], dim)
    if len(grid) == 3:
        return sincos_3d(grid[0], grid[1], grid[2], dim)
    raise ShapeError(f"grid must be (H, W) or (T, H, W), got {tuple(grid)}.")
