"""A pixel decoder trained *separately* on a JEPA's frozen embeddings, only to draw them.

A JEPA never produces pixels. To show what a predicted embedding "looks like", the demo trains a
:class:`jepalab.nn.frame.FrameDecoder` to reconstruct frames from the frozen encoder's
embeddings of true frames, then applies it to predicted embeddings. The JEPA itself never sees
this decoder's gradient; every figure that uses it says "decoded by a separately trained decoder".
Trained with the one trainer like any recipe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ShapeError
from jepalab.recipes.base import Recipe
from jepalab.nn.frame import FrameDecoder


@dataclass
class EmbeddingDecoderConfig:
    """Size of the decoder; must match the frozen encoder's embedding and the frames."""

    embed_dim: int = 64
    img_size: int = 32
    in_chans: int = 1
    dec_width: int = 16


class EmbeddingDecoder(Recipe):
    """Frozen ``encoder`` (B, C, H, W) -> (B, D) followed by a trainable decoder (B, D) -> frames.

    ``training_step`` takes clips ``frames (B, T, C, H, W)`` and reconstructs every frame (MSE).
    """

    name = "embedding_decoder"
    config_class = EmbeddingDecoderConfig

    def __init__(self, config: EmbeddingDecoderConfig, encoder: nn.Module | None = None) -> None:
        super().__init__(config)
        if encoder is None:
            raise ShapeError("EmbeddingDecoder needs the frozen encoder it decodes (encoder=model.encoder).")
        self.encoder = copy.deepcopy(encoder)  # a frozen copy: the JEPA's own encoder is untouched
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.decoder = FrameDecoder(config.embed_dim, config.img_size, config.in_chans, config.dec_width)

    def train(self, mode: bool = True) -> "EmbeddingDecoder":
        """Train the decoder only: the frozen encoder stays in eval mode (BatchNorm statistics
        are the ones the JEPA was measured with)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def encode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.encoder(x)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        frames = batch["frames"]
        if frames.dim() != 5:
            raise ShapeError(f"EmbeddingDecoder expects clips (B, T, C, H, W), got {tuple(frames.shape)}.")
        x = frames.flatten(0, 1)
        z = self.encode(x)
        loss = nn.functional.mse_loss(self.decoder(z), x)
        return {"loss": loss, "embeddings": z.detach()}


__all__ = ["EmbeddingDecoder", "EmbeddingDecoderConfig"]
