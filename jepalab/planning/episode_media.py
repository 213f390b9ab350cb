"""Filmstrip PNG and animated GIF of a planning episode, with the goal image beside each frame.

Why: a success rate says whether plans work; a filmstrip shows *how* they fail (the agent stalls,
overshoots, pushes the wrong side). Pillow (a matplotlib dependency) writes both files, so no
video codec is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from jepalab.errors import ShapeError


def to_uint8(frame: Tensor | np.ndarray) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] or ``(H, W, C)`` uint8 -> ``(H, W, 3)`` uint8."""
    x = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
    if x.ndim != 3:
        raise ShapeError(f"a frame must be (C, H, W) or (H, W, C), got {x.shape}.")
    if x.dtype != np.uint8:
        if x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
            x = x.transpose(1, 2, 0)
        x = (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3])


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscale of ``(H, W, 3)`` so that the longer side is about ``size``."""
    k = max(1, size // max(img.shape[:2]))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _border(img: np.ndarray, color: tuple[int, int, int], width: int = 2) -> np.ndarray:
    out = img.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def filmstrip(frames: Sequence[Tensor | np.ndarray], goal: Tensor | np.ndarray | None = None,
              max_frames: int = 10, size: int = 96) -> np.ndarray:
    """One image ``(H', W', 3)`` uint8: up to ``max_frames`` evenly spaced frames (first and last
    always included) left to right, then the goal framed in green."""
    if not frames:
        raise ShapeError("filmstrip needs at least one frame.")
    n = len(frames)
    idx = sorted(set(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int).tolist()))
    tiles = [_upscale(to_uint8(frames[i]), size) for i in idx]
    if goal is not None:
        tiles.append(_border(_upscale(to_uint8(goal), size), (40, 200, 60), 3))
    h = max(t.shape[0] for t in tiles)
    gap = np.full((h, 4, 3), 255, np.uint8)
    row = []
    for t in tiles:
        pad = np.zeros((h, t.shape[1], 3), np.uint8)
        pad[: t.shape[0]] = t
        row += [pad, gap]
    return np.concatenate(row[:-1], axis=1)


def save_episode_media(frames: Sequence[Tensor | np.ndarray], out_dir: str | os.PathLike,
                       goal: Tensor | np.ndarray | None = None, name: str = "episode", fps: int = 8,
                       size: int = 128) -> dict[str, Path]:
    """Write ``out_dir/{name}_filmstrip.png`` and ``out_dir/{name}.gif`` (each GIF frame: the
    current frame beside the goal). Returns the two paths."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    strip = out / f"{name}_filmstrip.png"
    Image.fromarray(filmstrip(frames, goal, size=size // 4 * 3)).save(strip)
    goal_tile = None if goal is None else _border(_upscale(to_uint8(goal), size), (40, 200, 60), 3)
    pics = []
    for f in frames:
        tile = _upscale(to_uint8(f), size)
        if goal_tile is not None:
            h = max(tile.shape[0], goal_tile.shape[0])
            tile = np.concatenate([np.pad(tile, ((0, h - tile.shape[0]), (0, 0), (0, 0))),
                                   np.full((h, 4, 3), 255, np.uint8),
                                   np.pad(goal_tile, ((0, h - goal_tile.shape[0]), (0, 0), (0, 0)))], axis=1)
        pics.append(Image.fromarray(tile))
    gif = out / f"{name}.gif"
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=int(1000 / max(fps, 1)), loop=0)
    return {"filmstrip": strip, "gif": gif}


__all__ = ["filmstrip", "save_episode_media", "to_uint8"]
