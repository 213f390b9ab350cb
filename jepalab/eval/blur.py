"""Blur metrics: how much does a predicted frame smear or split the ball it should show?

Why: a pixel predictor trained with an L2 loss on a bimodal future converges to the *mean* of the
futures -- two half-intensity ghost balls, or one dim smeared ball (Mathieu et al. 2016, "Deep
multi-scale video prediction beyond mean square error"; LeCun 2022, "A Path Towards Autonomous
Machine Intelligence", sec. 4). These metrics turn that picture into numbers against the true
frame: the peak intensity falls (``peak_ratio`` < 1), the mass spreads (``spread_ratio`` > 1),
several blobs appear (``count_blobs`` > 1), the centroid lands between the balls
(``centroid_error``). For decoded or probed *positions*, :func:`mode_assignment` says whether a
prediction lands on mode A, mode B, between them, or elsewhere.

Frames are ``(B, C, H, W)`` in [0, 1] (channels are averaged into one intensity map); positions
follow jepalab.data.bouncing: ``(x, y)`` pixels, pixel ``(i, j)`` centred at ``(j+0.5, i+0.5)``.
Everything is torch and runs on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.errors import DataError, ShapeError

MODE_A, MODE_B, BETWEEN, OFF = 0, 1, 2, 3
MODE_NAMES = ("mode_a", "mode_b", "between", "off")


def _intensity(frames: Tensor, name: str) -> Tensor:
    """(B, C, H, W) -> (B, H, W) float intensity (channel mean)."""
    if not isinstance(frames, Tensor) or frames.dim() != 4:
        raise ShapeError(f"{name} must be frames of shape (B, C, H, W); got {getattr(frames, 'shape', type(frames))}.")
    if not torch.isfinite(frames).all():
        raise DataError(f"{name} contains NaN/Inf: the predictor diverged.")
    return frames.float().mean(dim=1)


def _pair(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    p, t = _intensity(pred, "pred"), _intensity(true, "true")
    if p.shape != t.shape:
        raise ShapeError(f"pred and true must have the same (B, H, W) after channel averaging; got {tuple(p.shape)} and {tuple(t.shape)}.")
    if (t.flatten(1).amax(1) <= 0).any():
        raise DataError("a true frame is entirely black: blur is measured against a frame that shows the ball.")
    return p, t


def _weights(img: Tensor, background: float) -> Tensor:
    """Intensity minus a background floor, clamped at 0, so faint noise does not dominate moments."""
    return (img - background).clamp_min(0.0)


def centroid(frames: Tensor, background: float = 0.05) -> Tensor:
    """Intensity-weighted centre of mass ``(B, C, H, W) -> (B, 2)`` as ``(x, y)`` pixels.

    Pixels below ``background`` are ignored; an all-dark frame gives NaN (nothing to locate).
    """
    w = _weights(_intensity(frames, "frames"), background)
    h, wd = w.shape[-2:]
    ys = torch.arange(h, device=w.device, dtype=w.dtype) + 0.5
    xs = torch.arange(wd, device=w.device, dtype=w.dtype) + 0.5
    mass = w.sum(dim=(-1, -2))
    cx = (w.sum(-2) * xs).sum(-1) / mass
    cy = (w.sum(-1) * ys).sum(-1) / mass
    return torch.stack([cx, cy], dim=-1)


def spatial_spread(frames: Tensor, background: float = 0.05) -> Tensor:
    """RMS radius of the intensity around its centroid, ``(B, C, H, W) -> (B,)`` pixels.

    ``sqrt(E[|p - centroid|^2])`` under the intensity weights; a sharp disc of radius ``r`` has
    about ``r / sqrt(2)``; blurring or splitting the ball raises it.
    """
    w = _weights(_intensity(frames, "frames"), background)
    c = centroid(frames, background)
    h, wd = w.shape[-2:]
    ys = (torch.arange(h, device=w.device, dtype=w.dtype) + 0.5).view(1, -1, 1)
    xs = (torch.arange(wd, device=w.device, dtype=w.dtype) + 0.5).view(1, 1, -1)
    d2 = (xs - c[:, 0, None, None]) ** 2 + (ys - c[:, 1, None, None]) ** 2
    return torch.sqrt((w * d2).sum(dim=(-1, -2)) / w.sum(dim=(-1, -2)))


def peak_ratio(pred: Tensor, true: Tensor) -> Tensor:
    """Predicted peak intensity over the true one, per frame: (B, C, H, W) x2 -> (B,).

    1 for a sharp ball; about 0.5 for the average of two separated balls; lower for a smear.
    """
    p, t = _pair(pred, true)
    return p.flatten(1).amax(1) / t.flatten(1).amax(1)


def spread_ratio(pred: Tensor, true: Tensor, background: float = 0.05) -> Tensor:
    """``spatial_spread(pred) / spatial_spread(true)`` per frame -> (B,); > 1 means blurrier."""
    _pair(pred, true)
    return spatial_spread(pred, background) / spatial_spread(true, background)


def centroid_error(pred: Tensor, true: Tensor, background: float = 0.05) -> Tensor:
    """Distance in pixels between the predicted and true intensity centroids -> (B,)."""
    _pair(pred, true)
    return (centroid(pred, background) - centroid(true, background)).norm(dim=-1)


def count_blobs(frames: Tensor, threshold: float = 0.5, relative: bool = True, min_area: int = 3) -> Tensor:
    """Number of 8-connected blobs above a threshold per frame: (B, C, H, W) -> (B,) long.

    ``relative=True`` thresholds at ``threshold * frame max`` (so two half-intensity ghosts count
    as two balls); otherwise ``threshold`` is an absolute intensity. Blobs smaller than
    ``min_area`` pixels are ignored. Labels propagate by 3x3 max-pooling within the foreground
    until they stop changing (torch only, no scipy); an all-dark frame has 0 blobs.
    """
    img = _intensity(frames, "frames")
    if threshold <= 0 or min_area < 1:
        raise DataError(f"count_blobs needs threshold > 0 and min_area >= 1; got {threshold}, {min_area}.")
    b, h, w = img.shape
    level = threshold * img.flatten(1).amax(1).view(b, 1, 1) if relative else torch.full((b, 1, 1), threshold, device=img.device)
    fg = (img >= level) & (img > 0)
    dtype = torch.float64 if h * w >= 2**24 else torch.float32
    ids = torch.arange(1, h * w + 1, device=img.device, dtype=dtype).view(1, h, w)
    labels = torch.where(fg, ids, torch.zeros((), dtype=dtype, device=img.device)).unsqueeze(1)
    fgf = fg.unsqueeze(1).to(dtype)
    for _ in range(h * w):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * fgf
        if torch.equal(grown, labels):
            break
        labels = grown
    flat = labels.view(b, -1).long()
    area = torch.zeros(b, h * w + 1, device=img.device).scatter_add_(1, flat, fg.view(b, -1).float())
    return (area[:, 1:] >= min_area).sum(dim=1)


def blur_metrics(pred: Tensor, true: Tensor, background: float = 0.05) -> dict[str, Tensor]:
    """All frame metrics at once -> dict of (B,) tensors: ``peak_ratio``, ``spread_ratio``,
    ``blobs`` (in ``pred``), ``true_blobs`` and ``centroid_error``."""
    return {
        "peak_ratio": peak_ratio(pred, true),
        "spread_ratio": spread_ratio(pred, true, background),
        "blobs": count_blobs(pred),
        "true_blobs": count_blobs(true),
        "centroid_error": centroid_error(pred, true, background),
    }


def mode_assignment(pred_pos: Tensor, modes: Tensor, tol: float | None = None, tol_frac: float = 0.25) -> Tensor:
    """Where does a predicted position land relative to the two possible futures?

    ``pred_pos`` (B, P) and ``modes`` (B, 2, P) (e.g. ``BouncingBalls.next_modes``, P = 2K)
    -> (B,) long codes: ``MODE_A`` (0) / ``MODE_B`` (1) if within the tolerance of that mode,
    ``BETWEEN`` (2) if within the tolerance of the segment joining them but of neither mode
    (the averaging failure), ``OFF`` (3) otherwise. The tolerance is ``tol`` pixels if given,
    else ``tol_frac`` times each sample's mode separation (0.25: the midpoint is never "on" a mode).
    """
    if pred_pos.dim() != 2 or modes.dim() != 3 or modes.shape[1] != 2 or modes.shape[0] != pred_pos.shape[0] or modes.shape[2] != pred_pos.shape[1]:
        raise ShapeError(f"mode_assignment wants pred_pos (B, P) and modes (B, 2, P); got {tuple(pred_pos.shape)} and {tuple(modes.shape)}.")
    if not 0 < tol_frac < 0.5:
        raise DataError(f"tol_frac={tol_frac}: use a value in (0, 0.5) so the two modes' zones do not overlap.")
    p, a, b = pred_pos.float(), modes[:, 0].float(), modes[:, 1].float()
    sep = (b - a).norm(dim=-1)
    radius = torch.full_like(sep, float(tol)) if tol is not None else tol_frac * sep
    da, db = (p - a).norm(dim=-1), (p - b).norm(dim=-1)
    seg = b - a
    frac = ((p - a) * seg).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)
    closest = a + frac.clamp(0, 1)[:, None] * seg
    dseg = (p - closest).norm(dim=-1)
    out = torch.full_like(sep, OFF, dtype=torch.long)
    out = torch.where(dseg <= radius, torch.full_like(out, BETWEEN), out)
    out = torch.where((db <= radius) & (db < da), torch.full_like(out, MODE_B), out)
    out = torch.where((da <= radius) & (da <= db), torch.full_like(out, MODE_A), out)
    return out


def mode_fractions(codes: Tensor) -> dict[str, float]:
    """Share of each outcome of :func:`mode_assignment`: ``{"mode_a", "mode_b", "between", "off"}``."""
    if codes.dim() != 1 or codes.numel() == 0:
        raise ShapeError(f"mode_fractions wants a non-empty (B,) tensor of codes; got {tuple(codes.shape)}.")
    counts = torch.bincount(codes.long().cpu(), minlength=4).double() / codes.numel()
    return {name: float(counts[i]) for i, name in enumerate(MODE_NAMES)}
