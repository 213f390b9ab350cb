"""V-JEPA: predict the teacher's embeddings of masked space-time tubes of a clip.

Bardes et al., 2024, "Revisiting Feature Prediction for Learning Visual Representations from
Video". Method, as composed here:
- encoder: a 3D ``ViT`` with tubelet patches (``tubelet`` frames x ``patch_size``^2 pixels) and
  3D sin-cos positions (or the per-frame ``ConvEncoder`` for tiny CPU runs);
- masks: two ``TubeMask`` generators per batch -- 8 small blocks (spatial scale 0.15) and 2 large
  ones (0.7), each block a tube through the whole clip; context = the complement;
- target: the EMA teacher's layer-normed tokens of the full clip, momentum 0.998 -> 1.0;
- predictor: the narrow ``MaskedPredictor``; L1 loss, averaged over the two mask generators.

Small-scale notes (issue 5, 32x32 bouncing-ball clips, mean-pooled probes of the SSL table):
with 4x4-pixel patches (an 8x8 grid per tubelet, 256 tokens) training only matches the random
init, at 500 x 16 clips and with a full-width 4-deep predictor at 150 x 64 clips alike. 8x8-pixel
patches (a 4x4x4 grid, 64 tokens) are 4x cheaper; with a full-width 4-deep predictor, 640 x 64
clips and lr 5e-4 the teacher beats its own random init on the linear probe (0.313 vs 0.270 R^2)
but not on kNN (0.145 vs 0.156), and stays far below the 4x4-patch encoder (0.499). ``min_context``
sets a floor of visible patches per frame (a 4x4 grid under two 0.7 tubes can otherwise leave
none). A faster EMA (0.99) or lr >= 1e-3 makes the teacher's pooled embedding shrink to a shared
offset (flagged collapsed by the monitor); lr 5e-4 with the paper's 0.998 -> 1.0 does not.
On Moving MNIST (``configs/vjepa_moving_mnist.yaml``: 8x8 patches, full-width 4-deep predictor,
900 x 64 clips) the teacher gains only +0.03 digit accuracy over its random init on both probes
(``benchmarks/results/moving_mnist_screen.md``): at CPU budgets it stays near its random init.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from jepalab.draws import Draws
from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.masks import Masks, TubeMask

from .ijepa import MaskedJEPA, build_encoder, check_common


@dataclass
class VJEPAConfig:
    """Hyper-parameters of a V-JEPA model (defaults: a tiny CPU model on 8-frame 32x32 clips)."""

    img_size: int = 32
    in_chans: int = 3
    num_frames: int = 8
    tubelet: int = 2
    patch_size: int = 4
    encoder: str = "vit"
    embed_dim: int = 96
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    width: int = 32  # channels of the conv encoder (encoder="conv")
    pred_dim: int = 48
    pred_depth: int = 2
    pred_heads: int = 3
    small_blocks: int = 8
    small_scale: float = 0.15
    large_blocks: int = 2
    large_scale: float = 0.7
    aspect: tuple[float, float] = (0.75, 1.5)
    min_context: int = 2  # visible spatial patches per frame each tube mask must leave (resampled until it does)
    loss: str = "l1"
    anti_collapse: str = "ema"
    ema_start: float = 0.998
    ema_end: float = 1.0
    total_steps: int = 1000


class VJEPA(MaskedJEPA):
    """V-JEPA on clips ``batch["frames"] (B, T, C, H, W)`` with ``T == num_frames``.
    ``encode(frames) -> (B, D)``: the teacher's mean-pooled space-time tokens."""

    name = "vjepa"
    config_class = VJEPAConfig

    def __init__(self, config: VJEPAConfig) -> None:
        super().__init__(config)
        check_common(config)
        if config.num_frames < 2:
            raise ConfigError(f"model.num_frames={config.num_frames}: V-JEPA needs clips of >= 2 frames.")
        if config.encoder == "vit" and config.num_frames % config.tubelet:
            raise ConfigError(
                f"model.num_frames={config.num_frames} is not a multiple of model.tubelet={config.tubelet}."
            )
        # The conv encoder embeds each frame on its own (no tubelets).
        tubelet = config.tubelet if config.encoder == "vit" else 1
        self.encoder = build_encoder(config, num_frames=config.num_frames, tubelet=tubelet)
        grid = self.encoder.grid
        if not 1 <= config.min_context < grid[1] * grid[2]:
            raise ConfigError(
                f"model.min_context={config.min_context} must be in [1, {grid[1] * grid[2]}) for a "
                f"{grid[1]}x{grid[2]} patch grid; it counts visible patches per frame."
            )
        self.mask_gens = [
            TubeMask(grid, ((n, s),), config.aspect, min_context=config.min_context)
            for n, s in ((config.small_blocks, config.small_scale), (config.large_blocks, config.large_scale))
            if n > 0
        ]
        if not self.mask_gens:
            raise ConfigError("model.small_blocks and model.large_blocks are both 0: V-JEPA needs a mask.")
        self._finish_init((config.ema_start, config.ema_end))

    def _clip(self, frames: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` -> the encoder's ``(B, C, T, H, W)``."""
        c = self.config
        if frames.dim() != 5 or frames.shape[1] != c.num_frames:
            raise ShapeError(
                f"V-JEPA expects frames (B, T={c.num_frames}, C, H, W), got {tuple(frames.shape)}; "
                "set model.num_frames to the clip length of the data."
            )
        return frames.transpose(1, 2)

    def _input(self, batch: dict[str, Tensor]) -> Tensor:
        if "frames" not in batch:
            raise DataError(f"V-JEPA needs batch['frames'] (B, T, C, H, W); got keys {sorted(batch)}.")
        return self._clip(batch["frames"])

    def _masks(self, draws: Draws) -> list[Masks]:
        return [gen.draw(draws.fork("tubes", i)) for i, gen in enumerate(self.mask_gens)]

    def encode(self, x: Tensor) -> Tensor:
        """Clip ``(B, T, C, H, W) -> (B, D)``."""
        return self._embed(self._clip(x))


RECIPE = VJEPA
