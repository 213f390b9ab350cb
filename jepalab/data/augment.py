"""Batched view augmentations for the joint-embedding recipes (VICReg, Barlow Twins, LeJEPA).

Why batched torch: views are made on the training device in one shot per batch (no per-image
image processing in Python, no torchvision). Where the random numbers come from: each transform
takes its per-image uniforms (``u``) or noise as an argument, drawn from the global torch RNG when
left out. ``ViewAugment`` given a :class:`jepalab.draws.Draws` (what the view recipes pass) draws
them per image from a generator seeded by (seed, step, the image's global index, view), on the
CPU: an image gets the same views whichever process, micro-batch or device handles it, so
2 processes train what 1 process trains. The choice of transforms
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

from jepalab.draws import Draws
from jepalab.errors import ConfigError, ShapeError

_UNIFORMS = 7  # per image and view: crop area, aspect, x, y; flip; brightness, contrast


def _check(x: Tensor) -> None:
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise ShapeError(f"augmentations expect float images (B, C, H, W), got {tuple(x.shape)} {x.dtype}.")


def _uniforms(x: Tensor, u: Tensor | None, n: int, who: str) -> Tensor:
    """``u`` checked as ``(B, n)`` uniforms on ``x``'s device, or fresh ones from the global RNG."""
    if u is None:
        return torch.rand(x.shape[0], n, device=x.device)
    if u.shape != (x.shape[0], n):
        raise ShapeError(f"{who} needs u of shape ({x.shape[0]}, {n}) (uniforms per image), got {tuple(u.shape)}.")
    return u.to(x.device, torch.float32)


def random_resized_crop(x: Tensor, scale: tuple[float, float] = (0.3, 1.0), ratio: tuple[float, float] = (0.75, 4 / 3),
                        u: Tensor | None = None) -> Tensor:
    """Crop a random box per image (area fraction in ``scale``, aspect in ``ratio``) and resize it
    back to ``(H, W)`` with bilinear sampling; boxes stay inside the image. ``u (B, 4)``: the
    uniforms in [0, 1) that place each box (default: from the global RNG)."""
    _check(x)
    if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"crop scale must satisfy 0 < lo <= hi <= 1 and ratio 0 < lo <= hi, got {scale}, {ratio}.")
    u = _uniforms(x, u, 4, "random_resized_crop")
    area = scale[0] + u[:, 0] * (scale[1] - scale[0])
    log_r = math.log(ratio[0]) + u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0]))
    aspect = torch.exp(log_r)  # width / height
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the full width / height
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (u[:, 2] * 2 - 1) * (1 - w)  # centre in [-1+w, 1-w]
    cy = (u[:, 3] * 2 - 1) * (1 - h)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: Tensor, p: float = 0.5, u: Tensor | None = None) -> Tensor:
    """Flip each image left-right with probability ``p`` (image i flips when ``u[i, 0] < p``)."""
    _check(x)
    flip = _uniforms(x, u, 1, "random_flip")[:, 0] < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def color_jitter(x: Tensor, brightness: float = 0.4, contrast: float = 0.4, u: Tensor | None = None) -> Tensor:
    """Scale brightness by ``1 +- brightness`` and contrast (around each image's mean) by
    ``1 +- contrast``, clamped to [0, 1]; ``u (B, 2)`` picks the factors."""
    _check(x)
    u = _uniforms(x, u, 2, "color_jitter").to(x.dtype)[:, :, None, None, None]
    bright = 1 + (u[:, 0] * 2 - 1) * brightness
    contr = 1 + (u[:, 1] * 2 - 1) * contrast
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contr + mean).clamp(0.0, 1.0)


def gaussian_noise(x: Tensor, std: float = 0.05, noise: Tensor | None = None) -> Tensor:
    """Add i.i.d. Gaussian noise of standard deviation ``std`` (``noise``: standard normal
    values of ``x``'s shape; default from the global RNG)."""
    _check(x)
    if std <= 0:
        return x
    if noise is None:
        return x + std * torch.randn_like(x)
    if noise.shape != x.shape:
        raise ShapeError(f"gaussian_noise needs noise of the images' shape {tuple(x.shape)}, got {tuple(noise.shape)}.")
    return x + std * noise.to(x.device, x.dtype)


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

    def __call__(self, x: Tensor, draws: Draws | None = None) -> Tensor:
        """One view of ``x (B, C, H, W)``; with ``draws`` (one row per image) every image's
        numbers come from its own generator, else from the global RNG."""
        c = self.config
        _check(x)
        u, noise = None, None
        if draws is not None:
            if len(draws) != x.shape[0]:
                raise ShapeError(f"draws are for {len(draws)} images, the batch has {x.shape[0]}.")
            gens = draws.sample_generators()
            u = torch.stack([torch.rand(_UNIFORMS, generator=g) for g in gens])
            if c.noise_std > 0:
                noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens])
        else:
            u = torch.rand(x.shape[0], _UNIFORMS, device=x.device)
        x = random_resized_crop(x, tuple(c.crop_scale), tuple(c.crop_ratio), u=u[:, 0:4])
        if c.flip_prob > 0:
            x = random_flip(x, c.flip_prob, u=u[:, 4:5])
        if c.brightness > 0 or c.contrast > 0:
            x = color_jitter(x, c.brightness, c.contrast, u=u[:, 5:7])
        return gaussian_noise(x, c.noise_std, noise)

    def views(self, x: Tensor, n: int = 2, draws: Draws | None = None) -> list[Tensor]:
        """``n`` independently augmented views of ``x (B, C, H, W)`` (view ``v`` from
        ``draws.fork("view", v)`` when ``draws`` is given)."""
        if n < 1:
            raise ConfigError(f"number of views must be >= 1, got {n}.")
        return [self(x, None if draws is None else draws.fork("view", v)) for v in range(n)]
