"""FutureJEPA: predict the next frame's *embedding* from the embeddings of k context frames.

Method (after LeWorldModel, Maes et al. 2025, and V-JEPA's future prediction, Bardes et al. 2024):
one pooled embedding per frame from a small conv encoder plus a linear projector; an MLP predictor
maps the k most recent frame embeddings (and, optionally, a latent variable z) to the next
frame's embedding. Collapse is prevented either by an EMA teacher that produces the targets under
stop-gradient (BYOL / I-JEPA, Assran et al. 2023) or by SIGReg on the online embeddings with no
teacher at all (LeJEPA, Balestriero & LeCun 2025).

The latent variable z (``latent_dim > 0``) lets the predictor represent several futures. It is
trained by best-of-K ("winner takes all", as in multiple-hypothesis prediction, Rupprecht et al.
2017): K values of z ~ N(0, I) are drawn per sample, the loss of the closest prediction is kept,
so different regions of z-space specialise on different futures and sampling z at test time gives
distinct predictions instead of their average. As in that paper the winner-takes-all is relaxed
(weight ``1 - latent_relax`` on the best, ``latent_relax`` on the mean of the others): with a hard
minimum, z values that never win are never trained and land anywhere at test time.

``latent_kind="discrete"`` replaces the Gaussian z by K learned codes (multiple-choice learning,
Guzman-Rivera et al. 2012; Lee et al. 2016, "Stochastic Multiple Choice Learning"): every code is
scored on every sample (no sampling noise in the loss), the best code takes the gradient, and a
sample at test time is a code drawn with the frequency it won during training (a learned prior,
so a code that stands for a rare future is drawn rarely). Two fixes for MCL's known failure, dead
hypotheses: for the first ``latent_warmup`` steps all codes share the loss equally (the predictor
first learns the deterministic JEPA task, then the codes split the futures), and every
``latent_reseed_every`` steps a code that has stopped winning is re-seeded next to the most
frequent winner so it takes over part of that winner's futures.

Where the two futures' directions in embedding space turn with the context (a kicked ball's next
embedding moves one way or another depending on where the ball is), a z that only shifts the
predictor's input or hidden layer splits them slowly; ``latent_heads`` lets z mix output heads of
the predictor (``FramePredictor``), which winner-takes-all splits much sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.frame import FrameConfig, FrameEncoder, FramePredictor, check_clip, windows
from jepalab.recipes.base import Recipe


@dataclass
class FutureConfig(FrameConfig):
    """Hyper-parameters of :class:`FutureJEPA`: the frame layers' sizes (:class:`FrameConfig`)
    plus how collapse is prevented and the latent variable z."""

    anti_collapse: str = "sigreg"  # "ema" | "sigreg"
    sigreg_weight: float = 0.1     # lambda in (1 - lambda) * pred + lambda * SIGReg
    sigreg_proj: int = 256
    ema_momentum: tuple[float, float] = (0.99, 1.0)
    total_steps: int = 1000      # for the EMA momentum schedule
    loss: str = "l2"
    latent_dim: int = 0          # > 0 enables z
    latent_samples: int = 8      # K in best-of-K
    latent_relax: float = 0.05   # relaxed winner-takes-all: the K-1 losers share this weight
    latent_kind: str = "gaussian"  # "gaussian" (z ~ N(0, I), K draws) | "discrete" (K learned codes)
    latent_warmup: int = 0       # discrete: steps with the loss shared equally by all codes
    latent_reseed_every: int = 0  # discrete: re-seed codes that stopped winning every N steps (0: never)
    latent_to_hidden: bool = False  # also add Linear(z) to the predictor's hidden layer (a strong z path)
    latent_heads: bool = False   # z also mixes latent_dim output heads (a multiplicative z path)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any inconsistent field."""
        super().validate()
        if self.anti_collapse not in ("ema", "sigreg"):
            raise ConfigError(f"model.anti_collapse must be 'ema' or 'sigreg', got '{self.anti_collapse}'.")
        if self.latent_dim < 0 or (self.latent_dim > 0 and self.latent_samples < 1):
            raise ConfigError("model.latent_dim must be >= 0 and model.latent_samples >= 1 when z is used.")
        if not 0.0 <= self.latent_relax < 1.0:
            raise ConfigError(f"model.latent_relax must be in [0, 1), got {self.latent_relax}.")
        if self.latent_kind not in ("gaussian", "discrete"):
            raise ConfigError(f"model.latent_kind must be 'gaussian' or 'discrete', got '{self.latent_kind}'.")
        if self.latent_kind == "discrete" and self.latent_dim > 0 and self.latent_samples < 2:
            raise ConfigError("model.latent_kind='discrete' needs model.latent_samples >= 2 codes (one per future).")
        if self.latent_warmup < 0 or self.latent_reseed_every < 0:
            raise ConfigError("model.latent_warmup and model.latent_reseed_every must be >= 0.")
        if not 0.0 <= self.sigreg_weight < 1.0:
            raise ConfigError(f"model.sigreg_weight must be in [0, 1), got {self.sigreg_weight}.")


class FutureJEPA(Recipe):
    """Next-frame embedding predictor (see module docstring for the papers)."""

    name = "future"
    config_class = FutureConfig

    def __init__(self, config: FutureConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = FrameEncoder(c.img_size, c.in_chans, c.embed_dim, c.enc_width, c.enc_dim)
        self.predictor = FramePredictor(c.embed_dim, c.context_frames, c.pred_hidden, c.latent_dim,
                                        c.latent_to_hidden, c.latent_heads)
        if config.anti_collapse == "ema":
            from jepalab.objectives.ema import EMATeacher

            self.teacher = EMATeacher(self.encoder, momentum=tuple(config.ema_momentum),
                                      total_steps=config.total_steps)
        else:
            from jepalab.objectives.sigreg import SIGReg

            self.sigreg = SIGReg(num_proj=config.sigreg_proj)
        if c.latent_dim and c.latent_kind == "discrete":
            # K codes (K, L) and the share of samples each code won (EMA): the sampling prior
            self.codes = nn.Parameter(torch.randn(c.latent_samples, c.latent_dim))
            self.register_buffer("code_wins", torch.full((c.latent_samples,), 1.0 / c.latent_samples))

    # --- embeddings ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Frame embeddings ``(B, C, H, W) -> (B, D)``."""
        return self.encoder(x)

    def encode_clip(self, frames: Tensor) -> Tensor:
        """Per-frame embeddings of a clip ``(B, T, C, H, W) -> (B, T, D)``."""
        if frames.dim() != 5:
            raise ShapeError(f"encode_clip expects (B, T, C, H, W), got {tuple(frames.shape)}.")
        b, t = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(b, t, -1)

    # --- prediction ---------------------------------------------------------------------------
    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latent draws ``(n, latent_dim)`` on the model's device (empty width when z is off).

        Gaussian: z ~ N(0, I). Discrete: a code drawn from the learned win-frequency prior.
        ``generator`` (a CPU generator) makes the draws reproducible.
        """
        dev = next(self.parameters()).device
        if self.config.latent_dim and self.config.latent_kind == "discrete":
            idx = torch.multinomial(self.code_prior().cpu(), n, replacement=True, generator=generator)
            return self.codes[idx.to(dev)]
        return torch.randn(n, self.config.latent_dim, generator=generator).to(dev)

    def code_prior(self) -> Tensor:
        """Sampling probabilities of the K discrete codes ``(K,)``: their training win shares."""
        if self.config.latent_kind != "discrete" or not self.config.latent_dim:
            raise ConfigError("code_prior needs model.latent_kind='discrete' and model.latent_dim > 0.")
        w = self.code_wins.clamp_min(0)
        return w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / len(w))

    def predict(self, z_hist: Tensor, z_latent: Tensor | None = None) -> Tensor:
        """Next embedding from the last k: ``(B, k, D), z (B, L) -> (B, D)``.

        With z enabled and ``z_latent=None`` one z per sample is drawn from N(0, I).
        """
        if self.config.latent_dim and z_latent is None:
            z_latent = self.sample_latents(z_hist.shape[0])
        return self.predictor(z_hist, z_latent)

    def rollout(self, z_hist: Tensor, steps: int, z_latent: Tensor | None = None) -> Tensor:
        """Feed predictions back ``steps`` times: ``(B, k, D) -> (B, steps, D)``.

        One z per sample is kept for the whole rollout (one imagined future per sample).
        """
        if steps < 1:
            raise ConfigError(f"rollout needs steps >= 1, got {steps}.")
        if self.config.latent_dim and z_latent is None:
            z_latent = self.sample_latents(z_hist.shape[0])
        out, hist = [], z_hist
        for _ in range(steps):
            nxt = self.predictor(hist, z_latent)
            out.append(nxt)
            hist = torch.cat([hist[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)

    def k_hypotheses(self, hist: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Errors and predictions of K latent draws per sample: ``(M, k, D), (M, D) -> (M, K), (M, K, D)``."""
        m, kk = hist.shape[0], self.config.latent_samples
        if self.config.latent_kind == "discrete":   # every code on every sample: (M*K, L)
            z = self.codes.repeat(m, 1)
        else:
            z = self.sample_latents(m * kk)
        pred = self.predictor(hist.repeat_interleave(kk, 0), z).view(m, kk, -1)
        return per_sample_error(pred, target[:, None].expand_as(pred), self.config.loss), pred

    def best_of_k(self, hist: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample loss of the best of K latent draws and that prediction: ``(M,), (M, D)``."""
        err, pred = self.k_hypotheses(hist, target)
        best = err.argmin(dim=1)
        return err.gather(1, best[:, None]).squeeze(1), pred[torch.arange(err.shape[0]), best]

    def relaxed_best_of_k(self, hist: Tensor, target: Tensor, eps: float | None = None) -> Tensor:
        """Relaxed winner-takes-all (Rupprecht et al. 2017): ``(1 - eps) * best + eps * mean of
        the other K - 1`` per sample, averaged; a scalar. ``eps`` defaults to ``latent_relax``;
        discrete codes also record which code won (the sampling prior)."""
        err, _ = self.k_hypotheses(hist, target)
        kk = err.shape[1]
        eps = self.config.latent_relax if eps is None else eps
        if self.config.latent_kind == "discrete" and self.training:
            with torch.no_grad():
                share = torch.bincount(err.argmin(1), minlength=kk).float() / err.shape[0]
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.all_reduce(share)   # the global batch's shares: every rank
                    share /= torch.distributed.get_world_size()  # then re-seeds the same codes
                self.code_wins.mul_(0.98).add_(0.02 * share)
        best = err.min(dim=1).values
        if kk == 1 or eps == 0.0:
            return best.mean()
        others = (err.sum(1) - best) / (kk - 1)
        return ((1 - eps) * best + eps * others).mean()

    def latent_loss(self, hist: Tensor, target: Tensor, step: int) -> Tensor:
        """The z model's prediction loss at ``step``: ``(M, k, D), (M, D) -> scalar``.

        Discrete codes during ``latent_warmup``: every code takes the mean loss (eps = (K-1)/K),
        i.e. the deterministic JEPA task first; afterwards relaxed winner-takes-all.
        """
        c = self.config
        warm = c.latent_kind == "discrete" and step < c.latent_warmup
        return self.relaxed_best_of_k(hist, target, (c.latent_samples - 1) / c.latent_samples if warm else None)

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        frames = batch["frames"]
        k = self.config.context_frames
        check_clip(frames, k, self.encoder.img_shape)
        emb = self.encode_clip(frames)                                   # (B, T, D)
        if self.config.anti_collapse == "ema":
            with torch.no_grad():
                b, t = frames.shape[:2]
                tgt_seq = self.teacher(frames.flatten(0, 1)).view(b, t, -1)
        else:
            tgt_seq = emb
        hist, _ = windows(emb, k)
        _, target = windows(tgt_seq, k)
        if self.config.latent_dim:
            pred_loss = self.latent_loss(hist, target, step)
        else:
            from jepalab.objectives.prediction import prediction_loss

            pred_loss = prediction_loss(self.predictor(hist), target, kind=self.config.loss)
        out = {"pred_loss": pred_loss.detach(), "embeddings": emb.flatten(0, 1).detach()}
        if self.config.anti_collapse == "sigreg":
            reg = self.sigreg(emb.flatten(0, 1), step=step)  # same projections on every rank
            lam = self.config.sigreg_weight
            out["sigreg"] = reg.detach()
            out["loss"] = (1 - lam) * pred_loss + lam * reg
        else:
            out["loss"] = pred_loss
        return out

    def after_optimizer_step(self, step: int) -> None:
        if self.config.anti_collapse == "ema":
            self.teacher.update(self.encoder, step)
        c = self.config
        if (c.latent_dim and c.latent_kind == "discrete" and c.latent_reseed_every
                and step >= c.latent_warmup and (step + 1) % c.latent_reseed_every == 0):
            self.reseed_dead_codes(step)

    @torch.no_grad()
    def reseed_dead_codes(self, step: int, min_share: float | None = None) -> int:
        """Move codes whose win share fell below ``min_share`` (default ``0.25 / K``) next to the
        most frequent winner (a small offset, drawn from a generator seeded by ``step`` so every
        rank agrees); they then split that winner's futures. Returns how many were moved."""
        kk = self.config.latent_samples
        thr = 0.25 / kk if min_share is None else min_share
        dead = torch.nonzero(self.code_wins < thr).flatten()
        if len(dead) == 0:
            return 0
        top = int(self.code_wins.argmax())
        g = torch.Generator().manual_seed(7919 * (step + 1))
        noise = 0.1 * self.codes[top].abs().mean().clamp_min(1e-3) * torch.randn(len(dead), self.codes.shape[1], generator=g)
        self.codes[dead] = self.codes[top] + noise.to(self.codes.device)
        share = self.code_wins[top] / (len(dead) + 1)   # the winner's futures are now shared
        self.code_wins[dead] = share
        self.code_wins[top] = share
        return len(dead)


def per_sample_error(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample prediction error over the last dim ``(..., D) -> (...)`` (l1, l2, smooth_l1,
    cosine). Best-of-K needs it per sample; ``objectives.prediction_loss`` gives only the mean."""
    if kind == "l2":
        return (pred - target).pow(2).mean(-1)
    if kind == "l1":
        return (pred - target).abs().mean(-1)
    if kind == "smooth_l1":
        return nn.functional.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    if kind == "cosine":
        return 1 - nn.functional.cosine_similarity(pred, target, dim=-1)
    raise ConfigError(f"model.loss must be one of l1, l2, smooth_l1, cosine; got '{kind}'.")


RECIPE = FutureJEPA

__all__ = ["FutureConfig", "FutureJEPA", "per_sample_error", "RECIPE"]
