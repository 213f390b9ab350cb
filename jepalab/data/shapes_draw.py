"""Drawing the shapes world: one clip's frames from its objects' paths, and the clip record.

Why apart from the generator: the MNIST pairs and the streams (``vl_pairs``) draw and return clips
too, and the generator (``shapes_world``) uses the MNIST pairs; both import this floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jepalab.data import shapes_text as W
from jepalab.errors import ConfigError


@dataclass
class Clip:
    """One sample: frames ``(T, 3, S, S)`` in [0, 1] and its texts. ``cut``: frames the question may
    see (the "what happens next?" question sees only the frames before the event)."""

    frames: np.ndarray
    caption: str
    question: str
    answer: str
    kind: str
    event: str
    cut: int
    held_out: bool = False
    unseen: bool = False


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "ball":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == W.UNSEEN_SHAPE:
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        return inside & ((np.abs(dx) <= r / 3) | (np.abs(dy) <= r / 3))
    raise ConfigError(f"Unknown shape '{shape}'; known: {', '.join(W.SHAPES + (W.UNSEEN_SHAPE,))}.")


def render(objects: list[dict], walls: tuple[str, ...], frames: int, size: int) -> np.ndarray:
    """Draw ``objects`` (dicts with colour, shape, r, xy (T, 2)) and grey ``walls`` -> (T, 3, S, S)."""
    out = np.zeros((frames, 3, size, size), dtype=np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for t in range(frames):
        img = out[t]
        for side in walls:
            sl = {"left": (slice(None), 0), "right": (slice(None), size - 1),
                  "top": (0, slice(None)), "bottom": (size - 1, slice(None))}[side]
            img[(slice(None),) + sl] = 0.5
        for o in objects:
            x, y = o["xy"][t]
            m = _shape_mask(o["shape"], xs - x, ys - y, o["r"])
            img[:, m] = np.asarray(W.COLOURS[o["colour"]], dtype=np.float32)[:, None]
    return out


__all__ = ["Clip", "render"]
