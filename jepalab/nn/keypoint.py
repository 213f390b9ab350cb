"""A frame encoder whose embedding distances track distances in the scene: spatial keypoints.

Why: a planner compares the imagined embedding with the goal's, so the cost is only as good as
the embedding's geometry. A conv net followed by a dense projector (``FrameEncoder``) separates
nearby positions well but its distances saturate once two frames share no active cells: beyond a
few object widths every pair of frames is "equally far", and the planner loses its gradient of
progress toward a distant goal. A spatial soft-argmax (Levine, Finn, Darrell & Abbeel 2016,
"End-to-End Training of Deep Visuomotor Policies"; Finn et al. 2016, "Deep Spatial Autoencoders")
turns each of ``K`` learned feature maps into the expected image coordinate of its activation, a
quantity that moves *linearly* with the object it locks on to. A linear layer then mixes the
``2K`` coordinates (plus each map's peak strength, which says whether the thing is visible) into
the ``D``-dimensional embedding, so embedding distance keeps growing with scene distance.

``(B, C, H, W) -> (B, D)``; ``keypoints(x) -> (B, K, 2)`` in ``[-1, 1]`` for inspection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError


class KeypointEncoder(nn.Module):
    """Conv trunk -> ``K`` heatmaps at ``map_size`` -> soft-argmax coordinates -> linear to ``D``.

    ``width``: channels of the trunk; ``map_size``: side of the heatmaps (the trunk downsamples
    ``img_size`` by powers of two to reach it; 16 for 64-px frames). The softmax temperature is
    learned per keypoint, so a map can sharpen on a small object.
    """

    def __init__(self, img_size: int = 64, in_chans: int = 3, embed_dim: int = 16, width: int = 32,
                 keypoints: int = 16, map_size: int = 16) -> None:
        super().__init__()
        if map_size < 2 or img_size % map_size or (img_size // map_size) & (img_size // map_size - 1):
            raise ConfigError(f"KeypointEncoder: img_size={img_size} must be map_size={map_size} times a power "
                              "of two (e.g. 64 and 16); set model.img_size or model.kp_map_size.")
        if keypoints < 1 or width < 1 or embed_dim < 1:
            raise ConfigError(f"KeypointEncoder: keypoints, width and embed_dim must be >= 1, got "
                              f"{keypoints}, {width}, {embed_dim}.")
        layers: list[nn.Module] = []
        size, chans = img_size, in_chans
        while size > map_size:  # stride-2 convs down to the heatmap grid (cheap: no full-res layer)
            layers += [nn.Conv2d(chans, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.GELU()]
            size, chans = size // 2, width
        layers += [nn.Conv2d(chans, width, 3, padding=1), nn.GroupNorm(1, width), nn.GELU(),
                   nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, keypoints, 1)]
        self.trunk = nn.Sequential(*layers)
        self.log_temp = nn.Parameter(torch.zeros(keypoints))
        lin = torch.linspace(-1.0, 1.0, map_size)
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("grid", torch.stack([gx.flatten(), gy.flatten()], dim=-1), persistent=False)  # (M, 2)
        self.head = nn.Linear(3 * keypoints, embed_dim)
        self.embed_dim, self.num_keypoints = embed_dim, keypoints
        self.img_shape = (in_chans, img_size, img_size)

    def _attention(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            raise ShapeError(f"KeypointEncoder expects frames (B, {', '.join(map(str, self.img_shape))}), got "
                             f"{tuple(x.shape)}; set model.img_size/in_chans to match the data.")
        logits = self.trunk(x).flatten(2) * self.log_temp.exp()[:, None]  # (B, K, M)
        return F.softmax(logits, dim=-1)

    def keypoints(self, x: Tensor) -> Tensor:
        """Expected coordinates ``(B, K, 2)`` (x, y in ``[-1, 1]``) of the ``K`` heatmaps."""
        return self._attention(x) @ self.grid

    def forward(self, x: Tensor) -> Tensor:
        att = self._attention(x)                           # (B, K, M)
        xy = att @ self.grid                               # (B, K, 2)
        peak = att.amax(dim=-1, keepdim=True) * att.shape[-1] ** 0.5  # visibility, O(1) scale
        return self.head(torch.cat([xy, peak], dim=-1).flatten(1))


__all__ = ["KeypointEncoder"]
