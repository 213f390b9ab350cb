"""I-JEPA: predict the teacher's embeddings of hidden image blocks from a visible context block.

Assran et al., 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture". Method, as composed here:
- encoder: ``ViT`` (or the CPU-friendly ``ConvEncoder``) sees only the context patches;
- mask: ``MultiBlockMask`` -- 4 target blocks (scale 0.15-0.2, aspect 0.75-1.5) and a context
  block (scale 0.85-1.0) with the targets removed;
- target: the EMA teacher's layer-normed patch embeddings of the full image (stop-gradient),
  momentum 0.996 -> 1.0 linearly;
- predictor: the narrow ``MaskedPredictor`` (shared mask token + target position), one pass per
  target block (batched together), loss averaged over blocks; L2 as in the paper.

Small grids: on a 4x4 patch grid (16x16 digits, patch 4) no integer block has the paper's 15-20%
area, and 4 targets would leave almost no context; ``configs/ijepa_mnist.yaml`` uses 2 targets of
2x2 and a full-width, 4-deep predictor (measured in ``benchmarks/SSL.md``).

Opt-in, off by default: ``target_layers=k`` regresses the layer-normed mean of the teacher's last
k block outputs (each layer-normed), the data2vec target (Baevski et al., 2022), instead of the last
layer alone; ``probe_norm=False`` pools tokens before the final LayerNorm in ``encode``. Measured
in ``benchmarks/results/ijepa_screen.md``.

``anti_collapse="none"`` takes the target from the online encoder *with* gradient: the
configuration that collapses, kept so the collapse monitor can be demonstrated on it.
``MaskedJEPA`` holds the steps shared with V-JEPA (``recipes/vjepa.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.draws import Draws
from jepalab.errors import ConfigError, DataError
from jepalab.masks import Masks, MultiBlockMask, apply_masks
from jepalab.nn import ConvEncoder, MaskedPredictor, ViT, sincos_grid
from jepalab.objectives.ema import EMATeacher
from jepalab.objectives.prediction import KINDS, prediction_loss

from .base import Recipe

ENCODERS = ("vit", "conv")
ANTI_COLLAPSE = ("ema", "none")


@dataclass
class IJEPAConfig:
    """Hyper-parameters of an I-JEPA model (defaults: a tiny CPU model on 32x32 images)."""

    img_size: int = 32
    in_chans: int = 3
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
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_context: int = 10
    loss: str = "l2"
    anti_collapse: str = "ema"
    ema_start: float = 0.996
    ema_end: float = 1.0
    total_steps: int = 1000
    # Opt-in (defaults = the paper's recipe): target = mean of the layer-normed outputs of the
    # teacher's last ``target_layers`` blocks (data2vec, Baevski et al. 2022), layer-normed again;
    # ``probe_norm=False`` makes ``encode`` pool the last block's tokens before the final LayerNorm.
    target_layers: int = 1
    probe_norm: bool = True


def check_common(c: Any) -> None:
    """Raise ``ConfigError`` for choices shared by the masked-JEPA recipes (I-/V-JEPA configs)."""
    if c.encoder not in ENCODERS:
        raise ConfigError(f"model.encoder={c.encoder!r}: choose one of {ENCODERS}.")
    if c.anti_collapse not in ANTI_COLLAPSE:
        raise ConfigError(f"model.anti_collapse={c.anti_collapse!r}: choose one of {ANTI_COLLAPSE}.")
    if c.loss not in KINDS:
        raise ConfigError(f"model.loss={c.loss!r}: choose one of {KINDS}.")
    for dim, heads, what in ((c.embed_dim, c.heads, "embed_dim/heads"), (c.pred_dim, c.pred_heads, "pred_dim/pred_heads")):
        if heads < 1 or dim % heads:
            raise ConfigError(f"model.{what}: {dim} is not divisible by {heads}; pick heads that divide the width.")
    if c.total_steps < 1:
        raise ConfigError(f"model.total_steps={c.total_steps}: set it to the run length (EMA schedule), >= 1.")


def block_outputs(vit: nn.Module, x: Tensor, last: int) -> list[Tensor]:
    """``vit.block_outputs(x, last)``: the last ``last`` blocks' outputs ``(B, N, D)`` of a ``ViT``."""
    return vit.block_outputs(x, last)


def build_encoder(c: Any, num_frames: int = 1, tubelet: int = 1) -> nn.Module:
    """The ViT or conv encoder named by ``c.encoder`` (fields of an I-/V-JEPA config)."""
    if c.encoder == "vit":
        return ViT(
            c.img_size, c.patch_size, c.in_chans, c.embed_dim, c.depth, c.heads, c.mlp_ratio,
            num_frames=num_frames, tubelet=tubelet,
        )
    return ConvEncoder(c.img_size, c.in_chans, c.embed_dim, c.width, num_frames, patch_size=c.patch_size)


class MaskedJEPA(Recipe):
    """Shared body of I-JEPA and V-JEPA: context encoder, EMA (or online) target, masked predictor.

    Subclasses set ``self.encoder``, call ``_finish_init`` and implement ``_input`` (batch ->
    encoder input) and ``_masks`` (the input rows' ``Draws`` -> list of ``Masks``, losses
    averaged). Masks are drawn per (seed, step, global row) (``jepalab.draws``), so a batch split
    over processes or micro-batches gets the masks it gets whole.
    """

    def _finish_init(self, momentum: tuple[float, float]) -> None:
        c = self.config
        grid = self.encoder.grid
        self.predictor = MaskedPredictor(
            self.encoder.num_patches, c.embed_dim, c.pred_dim, c.pred_depth, c.pred_heads,
            pos=sincos_grid(grid, c.pred_dim), mlp_ratio=c.mlp_ratio,
        )
        self.teacher = EMATeacher(self.encoder, momentum, c.total_steps) if c.anti_collapse == "ema" else None

    def _input(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def _masks(self, draws: Draws) -> list[Masks]:
        raise NotImplementedError

    def _draws(self, batch: dict[str, Tensor], x: Tensor) -> Draws:
        """The draws of the encoder input's rows (one per batch row unless a subclass says)."""
        return Draws.of(batch, x.shape[0])

    def targets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Full-input teacher (or online) tokens ``(B, N, D)`` and their layer-normed targets."""
        h = self.teacher(x) if self.teacher is not None else self.encoder(x)
        return h, F.layer_norm(h, h.shape[-1:])

    def predict_loss(self, ctx: Tensor, masks: Masks, target: Tensor) -> Tensor:
        """Mean prediction loss over the target blocks of ``masks``; blocks of equal size run as
        one batched predictor pass (ctx ``(B, Nc, D)``, target ``(B, N, D)``)."""
        m = len(masks.targets)
        if len({t.shape[1] for t in masks.targets}) == 1:
            tgt_idx = torch.cat(masks.targets, 0)
            pred = self.predictor(ctx.repeat(m, 1, 1), masks.context.repeat(m, 1), tgt_idx)
            return prediction_loss(pred, apply_masks(target.repeat(m, 1, 1), tgt_idx), self.config.loss)
        losses = [
            prediction_loss(self.predictor(ctx, masks.context, t), apply_masks(target, t), self.config.loss)
            for t in masks.targets
        ]
        return torch.stack(losses).mean()

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        x = self._input(batch)
        mask_sets = [m.to(x.device) for m in self._masks(self._draws(batch, x))]
        h, target = self.targets(x)
        losses = [self.predict_loss(self.encoder(x, keep=m.context), m, target) for m in mask_sets]
        out = {
            "loss": torch.stack(losses).mean(),
            "embeddings": self.encoder.pool(h).detach(),
            "context_tokens": torch.tensor(float(sum(m.context.shape[1] for m in mask_sets)) / len(mask_sets)),
        }
        if self.teacher is not None:
            out["ema_momentum"] = torch.tensor(self.teacher.momentum_at(step))
        return out

    def after_optimizer_step(self, step: int) -> None:
        if self.teacher is not None:
            self.teacher.update(self.encoder, step)

    def _embed(self, x: Tensor) -> Tensor:
        """Pooled embedding ``(B, D)`` from the teacher (EMA) or the online encoder."""
        enc = self.teacher if self.teacher is not None else self.encoder
        return self.encoder.pool(enc(x))


class IJEPA(MaskedJEPA):
    """I-JEPA on images ``batch["images"] (B, C, H, W)`` (or ``batch["frames"] (B, T, C, H, W)``,
    each frame taken as an image). ``encode(x) -> (B, D)``: the teacher's mean-pooled tokens."""

    name = "ijepa"
    config_class = IJEPAConfig

    def __init__(self, config: IJEPAConfig) -> None:
        super().__init__(config)
        check_common(config)
        if config.target_layers < 1 or config.target_layers > config.depth:
            raise ConfigError(f"model.target_layers={config.target_layers}: use 1..depth ({config.depth}); 1 is "
                              "the paper's target (the teacher's last layer).")
        if config.target_layers != 1 and config.anti_collapse != "ema":
            raise ConfigError("model.target_layers > 1 averages the EMA teacher's blocks: it needs anti_collapse='ema'.")
        if config.encoder != "vit" and (config.target_layers != 1 or not config.probe_norm):
            raise ConfigError("model.target_layers > 1 and probe_norm=false need encoder='vit' (they read "
                              "per-block outputs); keep the defaults with the conv encoder.")
        self.encoder = build_encoder(config)
        self.mask_gen = MultiBlockMask(
            self.encoder.grid, config.num_targets, config.target_scale, config.target_aspect,
            config.context_scale, config.min_context,
        )
        self._finish_init((config.ema_start, config.ema_end))

    def _input(self, batch: dict[str, Tensor]) -> Tensor:
        if "images" in batch:
            return batch["images"]
        if "frames" in batch:
            f = batch["frames"]
            if f.dim() != 5:
                raise DataError(f"batch['frames'] must be (B, T, C, H, W), got {tuple(f.shape)}.")
            return f.reshape(-1, *f.shape[2:])
        raise DataError(f"I-JEPA needs batch['images'] (B, C, H, W) or batch['frames']; got keys {sorted(batch)}.")

    def _draws(self, batch: dict[str, Tensor], x: Tensor) -> Draws:
        if "images" not in batch and "frames" in batch:  # frame t of clip i is image i*T + t
            f = batch["frames"]
            return Draws.of(batch, f.shape[0]).per_item(f.shape[1])
        return super()._draws(batch, x)

    def _masks(self, draws: Draws) -> list[Masks]:
        return [self.mask_gen.draw(draws)]

    def targets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher tokens ``(B, N, D)`` and targets: the paper's layer-normed last layer, or with
        ``target_layers = k > 1`` the layer-normed mean of the last k blocks' layer-normed outputs."""
        k = self.config.target_layers
        if k == 1 or self.teacher is None:  # (__init__ rejects k > 1 without a teacher)
            return super().targets(x)
        vit = self.teacher.module
        with torch.no_grad():
            outs = block_outputs(vit, x, k)
            h = vit.transformer.norm(outs[-1])
            avg = torch.stack([F.layer_norm(o, o.shape[-1:]) for o in outs]).mean(0)
        return h, F.layer_norm(avg, avg.shape[-1:])

    def _embed(self, x: Tensor) -> Tensor:
        if self.config.probe_norm:
            return super()._embed(x)
        enc = self.teacher.module if self.teacher is not None else self.encoder
        return self.encoder.pool(block_outputs(enc, x, 1)[-1])

    def encode(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, D)``; clips ``(B, T, C, H, W)`` are averaged over frames."""
        if x.dim() == 5:
            b, t = x.shape[:2]
            return self._embed(x.reshape(b * t, *x.shape[2:])).view(b, t, -1).mean(1)
        return self._embed(x)


RECIPE = IJEPA
