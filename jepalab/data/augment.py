"""Batched view augmentations for the joint-embedding recipes (VICReg, Barlow Twins, LeJEPA).

Why batched torch and the global RNG: views are made on the training device in one shot per
batch (no per-image Python loop, no torchvision), and the trainer seeds the global torch RNG from
``(seed, step, rank)`` before every step, so views are reproducible. The choice of transforms
(random resized crop, horizontal flip, brightness/contrast jitter, Gaussian noise) follows the
view pipelines of Barlow Twins (Zbontar et al., 2021) and VICReg (Bardes et al., 2022), reduced
to what works on small gray digits. Shapes: ``x (B, C, H, W)`` in, same shape out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.errors import ConfigError, ShapeError


def _check(x: Tensor) -> None:
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise ShapeError(f"augmentations expect float images (B, C, H, W), got {tuple(x.shape)} {x.dtype}.")


def random_resized_crop(x: Tensor, scale: tuple[float, float] = (0.3, 1.0), ratio: tuple[float, float] = (0.75, 4 / 3)) -> Tensor:
    """Crop a random box per image (area fraction in ``scale``, aspect in ``ratio``) and resize it
    back to ``(H, W)`` with bilinear sampling; boxes stay inside the image."""
    _check(x)
    b = x.shape[0]
    if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"crop scale must satisfy 0 < lo <= hi <= 1 and ratio 0 < lo <= hi, got {scale}, {ratio}.")
    area = torch.empty(b, device=x.device).uniform_(scale[0], scale[1])
    log_r = torch.empty(b, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)  # width / height
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the full width / height
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(b, device=x.device) * 2 - 1) * (1 - w)  # centre in [-1+w, 1-w]
    cy = (torch.rand(b, device=x.device) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: Tensor, p: float = 0.5) -> Tensor:
    """Flip each image left-right with probability ``p``."""
    _check(x)
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def color_jitter(x: Tensor, brightness: float = 0.4, contrast: float = 0.4) -> Tensor:
    """Scale brightness by ``1 +- brightness`` and contrast (around each image's mean) by
    ``1 +- contrast``, clamped to [0, 1]."""
    _check(x)
    shape = (x.shape[0], 1, 1, 1)
    bright = 1 + (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * brightness
    contr = 1 + (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * contrast
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contr + mean).clamp(0.0, 1.0)


def gaussian_noise(x: Tensor, std: float = 0.05) -> Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``std``."""
    _check(x)
    return x + std * torch.randn_like(x) if std > 0 else x


@dataclass
class AugmentConfig:
    """Strength of each view transform (set a probability/strength to 0 to switch it off)."""

    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)
    flip_prob: float = 0.0  # digits are not mirror-symmetric; set 0.5 for natural images
    brightness: float = 0.4
    contrast: float = 0.4
    noise_std: float = 0.05


class ViewAugment:
    """Crop -> flip -> colour jitter -> noise, applied independently to every image of a batch."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        c = self.config
        if not 0 <= c.flip_prob <= 1 or c.brightness < 0 or c.contrast < 0 or c.noise_std < 0:
            raise ConfigError(f"AugmentConfig has a negative strength or a probability outside [0, 1]: {c}.")

    def __call__(self, x: Tensor) -> Tensor:
        c = self.config
        x = random_resized_crop(x, tuple(c.crop_scale), tuple(c.crop_ratio))
        if c.flip_prob > 0:
            x = random_flip(x, c.flip_prob)
        if c.brightness > 0 or c.contrast > 0:
            x = color_jitter(x, c.brightness, c.contrast)
        return gaussian_noise(x, c.noise_std)

    def views(self, x: Tensor, n: int = 2) -> list[Tensor]:
        """``n`` independently augmented views of ``x (B, C, H, W)``."""
        if n < 1:
            raise ConfigError(f"number of views must be >= 1, got {n}.")
        return [self(x) for _ in range(n)]
