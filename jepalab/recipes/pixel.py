"""PixelTwin: the generative baseline of the FutureJEPA, predicting the next frame's *pixels*.

Same frame encoder and the same predictor as :class:`jepalab.recipes.future.FutureJEPA`, plus a
small conv decoder from the predicted embedding to the next frame, trained with pixel MSE (a
video-prediction model in the style of Srivastava et al. 2015 / SVG's deterministic baseline,
Denton & Fergus 2018). It is the control of the JEPA articles' claim (LeCun 2022, "A Path Towards
Autonomous Machine Intelligence") that regressing pixels of an uncertain future averages the
possible futures into a blur: everything except *what is predicted* is held equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.frame import FrameConfig, FrameDecoder, FrameEncoder, FramePredictor, check_clip, windows
from jepalab.recipes.base import Recipe


@dataclass
class PixelConfig(FrameConfig):
    """Hyper-parameters of :class:`PixelTwin`: the frame layers' sizes (:class:`FrameConfig`, as in
    FutureConfig) plus the decoder's width."""

    dec_width: int = 16


class PixelTwin(Recipe):
    """Next-frame pixel predictor with the FutureJEPA's encoder and predictor (see module doc)."""

    name = "pixel"
    config_class = PixelConfig

    def __init__(self, config: PixelConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = FrameEncoder(c.img_size, c.in_chans, c.embed_dim, c.enc_width, c.enc_dim)
        self.predictor = FramePredictor(c.embed_dim, c.context_frames, c.pred_hidden)
        self.decoder = FrameDecoder(c.embed_dim, c.img_size, c.in_chans, c.dec_width)

    def encode(self, x: Tensor) -> Tensor:
        """Frame embeddings ``(B, C, H, W) -> (B, D)`` (for probes)."""
        return self.encoder(x)

    def encode_clip(self, frames: Tensor) -> Tensor:
        """Per-frame embeddings ``(B, T, C, H, W) -> (B, T, D)``."""
        if frames.dim() != 5:
            raise ShapeError(f"encode_clip expects (B, T, C, H, W), got {tuple(frames.shape)}.")
        b, t = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(b, t, -1)

    def predict(self, z_hist: Tensor, z_latent: Tensor | None = None) -> Tensor:
        """Next embedding ``(B, k, D) -> (B, D)`` (the decoder's input)."""
        return self.predictor(z_hist)

    def predict_frame(self, frames: Tensor) -> Tensor:
        """Next frame from the last k frames: ``(B, k, C, H, W) -> (B, C, H, W)``."""
        return self.decoder(self.predictor(self.encode_clip(frames)))

    def rollout_frames(self, frames: Tensor, steps: int) -> Tensor:
        """Predict ``steps`` frames ahead, feeding each predicted frame back in (re-encoded).

        ``(B, k, C, H, W) -> (B, steps, C, H, W)``.
        """
        if steps < 1:
            raise ConfigError(f"rollout needs steps >= 1, got {steps}.")
        out, ctx = [], frames
        for _ in range(steps):
            nxt = self.predict_frame(ctx)
            out.append(nxt)
            ctx = torch.cat([ctx[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        frames = batch["frames"]
        k = self.config.context_frames
        check_clip(frames, k, self.encoder.img_shape)
        emb = self.encode_clip(frames)                          # (B, T, D)
        hist, _ = windows(emb, k)                               # (M, k, D)
        target = frames[:, k:].flatten(0, 1)                    # (M, C, H, W)
        pred = self.decoder(self.predictor(hist))
        loss = nn.functional.mse_loss(pred, target)
        return {"loss": loss, "pixel_mse": loss.detach(), "embeddings": emb.flatten(0, 1).detach()}


RECIPE = PixelTwin

__all__ = ["PixelConfig", "PixelTwin", "RECIPE"]
