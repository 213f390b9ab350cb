"""Per-frame layers shared by the frame-level recipes: one embedding per frame, a predictor of the
next embedding, and a decoder from an embedding back to a frame.

Why in ``nn`` and not in a recipe: the FutureJEPA, its pixel twin, the world model's conv encoder
and the demo's separately trained decoder all build on them; a recipe importing another recipe's
layers would tie methods together that are meant to be compared as equals.
Shapes: frames ``(B, C, H, W)``, clips ``(B, T, C, H, W)``, embeddings ``(B, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.conv import ConvEncoder


@dataclass
class FrameConfig:
    """Sizes of the frame encoder and predictor, the part every frame-level recipe's config shares
    (the recipes add their own fields by subclassing), so each size and its check is declared
    once."""

    img_size: int = 32
    in_chans: int = 1
    embed_dim: int = 64          # D: one embedding per frame
    enc_width: int = 16          # conv trunk width
    enc_dim: int = 64            # channels of the conv feature-map cells before the projector
    context_frames: int = 3      # k: frames the predictor sees
    pred_hidden: int = 256

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value the layers cannot be built with."""
        if self.context_frames < 1:
            raise ConfigError(f"model.context_frames must be >= 1, got {self.context_frames}.")


class FrameEncoder(nn.Module):
    """Conv trunk (``jepalab.nn.conv.ConvEncoder``) + a linear projector over all its cells.

    Why a projector over the flattened cells rather than a mean pool: a mean over feature-map
    cells is nearly translation invariant, and the ball's *position* is what the world is about.
    ``(B, C, H, W) -> (B, D)``.
    """

    def __init__(self, img_size: int, in_chans: int, embed_dim: int, width: int, enc_dim: int) -> None:
        super().__init__()
        self.trunk = ConvEncoder(img_size=img_size, in_chans=in_chans, embed_dim=enc_dim, width=width)
        with torch.no_grad():
            n = self.trunk(torch.zeros(1, in_chans, img_size, img_size)).shape[1]
        # BatchNorm at the end (as LeWorldModel's projector): frames are mostly empty background,
        # so raw features barely vary; standardizing them gives SIGReg / the predictor a usable scale.
        self.proj = nn.Sequential(nn.Linear(n * enc_dim, embed_dim), nn.BatchNorm1d(embed_dim))
        self.embed_dim = embed_dim
        self.img_shape = (in_chans, img_size, img_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            raise ShapeError(f"FrameEncoder expects frames (B, {', '.join(map(str, self.img_shape))}), "
                             f"got {tuple(x.shape)}; set model.img_size/in_chans to match the data.")
        return self.proj(self.trunk(x).flatten(1))


class FramePredictor(nn.Module):
    """MLP from k frame embeddings (+ optional z) to the next one, as a residual on the last.

    ``(B, k, D), z (B, L) -> (B, D)``. With ``latent_to_hidden`` z also enters the hidden layer
    through its own linear map: concatenated to ``k * D`` inputs behind a shared LayerNorm, an
    ``L = 2`` z starts with almost no influence, and best-of-K cannot split what z cannot change.

    With ``latent_heads`` z also mixes L extra output heads read from the last hidden layer:
    ``out += sum_j z_j * H_j(h)``. A future's direction in embedding space depends on the context
    (where the ball is, how it moves); an additive z has to learn that dependence through the
    nonlinearity, while each head is a linear read-out of the shared features, as the K output
    heads of multiple-hypothesis prediction (Rupprecht et al. 2017) and FiLM-style multiplicative
    conditioning (Perez et al. 2018). Winner-takes-all then splits the futures in a few hundred
    steps instead of thousands.
    """

    def __init__(self, embed_dim: int, context_frames: int, hidden: int, latent_dim: int = 0,
                 latent_to_hidden: bool = False, latent_heads: bool = False) -> None:
        super().__init__()
        d, k = embed_dim, context_frames
        self.k, self.d, self.latent_dim = k, d, latent_dim
        self.net = nn.Sequential(
            nn.LayerNorm(k * d + latent_dim), nn.Linear(k * d + latent_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, d),
        )
        self.z_to_hidden = nn.Linear(latent_dim, hidden) if latent_dim and latent_to_hidden else None
        self.z_heads = nn.Linear(hidden, latent_dim * d) if latent_dim and latent_heads else None

    def forward(self, hist: Tensor, z: Tensor | None = None) -> Tensor:
        if hist.dim() != 3 or hist.shape[1] != self.k or hist.shape[2] != self.d:
            raise ShapeError(f"predictor expects history (B, {self.k}, {self.d}), got {tuple(hist.shape)}.")
        inp = hist.flatten(1)
        if self.latent_dim:
            if z is None or z.shape != (hist.shape[0], self.latent_dim):
                raise ShapeError(f"predictor needs z of shape (B, {self.latent_dim}), got "
                                 f"{None if z is None else tuple(z.shape)}.")
            inp = torch.cat([inp, z], dim=1)
        if self.z_to_hidden is None and self.z_heads is None:
            return hist[:, -1] + self.net(inp)
        h = self.net[3](self.net[2](self.net[1](self.net[0](inp))))   # LayerNorm, Linear, GELU, Linear
        if self.z_to_hidden is not None:
            h = h + self.z_to_hidden(z)                              # z shifts the second pre-activation
        h = self.net[4](h)
        out = hist[:, -1] + self.net[5](h)
        if self.z_heads is not None:                                 # z mixes L context-dependent heads
            out = out + torch.einsum("bl,bld->bd", z, self.z_heads(h).view(h.shape[0], self.latent_dim, self.d))
        return out


def check_clip(frames: Tensor, k: int, img_shape: tuple[int, int, int]) -> None:
    """Raise ``ShapeError`` unless ``frames`` is ``(B, T, C, H, W)`` with ``T > k``."""
    if frames.dim() != 5 or tuple(frames.shape[2:]) != img_shape or frames.shape[1] <= k:
        raise ShapeError(f"expected a clip (B, T>{k}, {', '.join(map(str, img_shape))}), got "
                         f"{tuple(frames.shape)}; use data clips longer than model.context_frames.")


def windows(emb: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """All (history, next) pairs of a sequence: ``(B, T, D) -> (B*(T-k), k, D), (B*(T-k), D)``."""
    b, t, d = emb.shape
    hist = emb.unfold(1, k, 1)[:, : t - k]            # (B, T-k, D, k)
    hist = hist.permute(0, 1, 3, 2).reshape(b * (t - k), k, d)
    return hist, emb[:, k:].reshape(b * (t - k), d)


class FrameDecoder(nn.Module):
    """Embedding -> frame: a linear map to a coarse grid, then 2x up-sampling conv stages.

    Used by the pixel twin, and (trained separately on frozen embeddings) to draw what a JEPA's
    predicted embedding looks like. ``(B, D) -> (B, C, H, W)`` in [0, 1].
    """

    def __init__(self, embed_dim: int, img_size: int, out_chans: int, width: int) -> None:
        super().__init__()
        stages, s = 0, img_size
        while s > 4 and s % 2 == 0:
            s, stages = s // 2, stages + 1
        if s * 2**stages != img_size:
            raise ConfigError(f"FrameDecoder needs img_size = 4..7 x 2^n (e.g. 32, 64), got {img_size}.")
        self.width, self.s = width, s
        self.fc = nn.Linear(embed_dim, width * s * s)
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GELU()]
        out = nn.Conv2d(width, out_chans, 3, padding=1)
        nn.init.constant_(out.bias, -3.0)  # start from a dark background (sigmoid(-3) ~ 0.05), as the frames are
        layers.append(out)
        self.net = nn.Sequential(*layers)
        self.embed_dim = embed_dim

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.embed_dim:
            raise ShapeError(f"FrameDecoder expects embeddings (B, {self.embed_dim}), got {tuple(z.shape)}.")
        h = self.fc(z).view(z.shape[0], self.width, self.s, self.s)
        return torch.sigmoid(self.net(h))


__all__ = ["FrameConfig", "FrameEncoder", "FramePredictor", "FrameDecoder", "check_clip", "windows"]
