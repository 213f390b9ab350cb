"""VL-JEPA: predict the *embedding* of the answer from video and a question; decode words only when
asked (Chen, Shukor, ..., LeCun, Fung; arXiv 2512.10942).

- X-encoder: a jepalab video/image encoder (``model.x_encoder``: a small conv net trained with the
  model, or a trained jepalab run; ``x_frozen`` keeps it fixed), clip -> visual tokens.
- Y-encoder: all-MiniLM-L6-v2, the target space (384-d unit vectors); frozen by default, or tuned
  with the model at ``y_lr_scale`` times the learning rate (``y_tune``), as the paper tunes its
  Y-encoder at a small learning rate. Tuned, its weights are saved with the model.
- Predictor: a small transformer over [pool token, visual tokens, query tokens]; the query is read
  through MiniLM's own tokenizer and frozen word vectors; the pool token's output is projected
  into the Y space.
- Loss: bidirectional InfoNCE with a learned temperature between predicted and target embeddings
  (``jepalab.objectives.infonce``).
- Decoder: a small GRU turns a Y-space vector into text (``jepalab.nn.text_decoder``), trained on
  the targets' own embeddings (with a little noise) and on the detached predictions; retrieval over
  a candidate set is the decoder-free read-out.
- Two stages as in the paper: query-free caption pretraining for ``caption_steps`` steps, then
  question -> answer, with ``caption_mix`` of every batch still captions (no query) so the caption
  read-out that retrieval, zero-shot and streams use is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.blocks import Transformer
from jepalab.nn.text_decoder import TextDecoder, Vocab
from jepalab.objectives.infonce import InfoNCE, same_rows
from jepalab.recipes.base import Recipe
from jepalab.recipes.vl_parts import (QueryReader, XEncoder, XEncoderConfig, YSpace, cut_frames, data_token_ids,
                                      token_ids)


@dataclass
class VLJEPAConfig(XEncoderConfig):
    """Sizes of the predictor and decoder, the two stages and the loss (see the module docstring)."""

    pred_dim: int = 64  # 64 x 1 and a 96-wide decoder: 58% of the twin's trainable parameters
    pred_depth: int = 1  # (benchmarks/results/vljepa_sizes.json)
    pred_heads: int = 4
    query_len: int = 24
    caption_steps: int = 0
    caption_mix: float = 0.25
    init_tau: float = 0.07
    dec_hidden: int = 96
    dec_weight: float = 1.0
    dec_noise: float = 0.05
    decoder_vocab: list[int] = field(default_factory=list)  # empty: the data's words (filled when built)
    y_tune: bool = False
    y_lr_scale: float = 0.05

    def validate(self) -> None:
        for name in ("pred_dim", "pred_depth", "pred_heads", "query_len", "dec_hidden", "x_dim", "num_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1; got {getattr(self, name)}.")
        if self.pred_dim % self.pred_heads:
            raise ConfigError(f"model.pred_heads={self.pred_heads} must divide model.pred_dim={self.pred_dim}.")
        if not 0.0 <= self.caption_mix <= 1.0 or self.caption_steps < 0:
            raise ConfigError("model.caption_mix must be in [0, 1] and model.caption_steps >= 0.")
        if not 0.0 < self.init_tau < 1.0:
            raise ConfigError(f"model.init_tau must be in (0, 1); got {self.init_tau}.")
        if not 0.0 < self.y_lr_scale <= 1.0:
            raise ConfigError(f"model.y_lr_scale must be in (0, 1] (a multiple of train.lr); got {self.y_lr_scale}.")


class VLJEPA(Recipe):
    """Video + question -> answer embedding in MiniLM's space (see the module docstring)."""

    name = "vljepa"
    config_class = VLJEPAConfig

    def __init__(self, config: VLJEPAConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        if c.y_tune:
            from jepalab.nn.text_encoder import MiniLMEncoder

            meta = torch.empty(0).is_meta  # config checks build on the meta device: the shapes, no weights
            self.y_encoder = (MiniLMEncoder() if meta else MiniLMEncoder.from_wheel()).requires_grad_(True)
        self.y = YSpace(self.y_encoder if c.y_tune else None)
        if not c.decoder_vocab:
            c.decoder_vocab = data_token_ids()
        self.x = XEncoder(c)
        d = c.pred_dim
        self.x_proj = nn.Linear(self.x.dim, d)
        self.query = QueryReader(d, c.query_len)
        self.kind = nn.Parameter(torch.randn(2, d) * 0.02)  # visual / text token type
        self.pool_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.predictor = Transformer(d, c.pred_depth, c.pred_heads)
        self.head = nn.Linear(d, YSpace.dim)
        self.nce = InfoNCE(c.init_tau)
        self.decoder = TextDecoder(Vocab(c.decoder_vocab), YSpace.dim, c.dec_hidden, c.query_len)

    # --- prediction ----------------------------------------------------------------------------
    def predict(self, frames: Tensor, question: Tensor | None = None, cut: Tensor | None = None) -> Tensor:
        """Unit answer embeddings ``(B, 384)`` of clips ``(B, T, 3, S, S)`` and question token ids
        ``(B, L)`` (None or all-zero rows: the query-free caption embedding)."""
        v = self.x_proj(self.x(cut_frames(frames, cut))) + self.kind[0]
        b = v.shape[0]
        parts, keep = [self.pool_token.expand(b, -1, -1), v], None
        if question is not None:
            q, qkeep = self.query(self.y.words(question), question)
            parts.append(q + self.kind[1])
            keep = torch.cat([torch.ones(b, 1 + v.shape[1], dtype=torch.bool, device=v.device), qkeep], 1)
            keep = keep[:, None, None, :]
        out = self.predictor(torch.cat(parts, 1), keep)[:, 0]
        return F.normalize(self.head(out), dim=-1)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        frames, c = batch["frames"], self.config
        if step < c.caption_steps:
            question, target_ids, cut = None, batch["caption"], None
        else:
            n_cap = int(round(frames.shape[0] * c.caption_mix))
            question = batch["question"].clone()
            question[:n_cap] = 0
            target_ids = torch.cat([batch["caption"][:n_cap], batch["answer"][n_cap:]])
            cut = batch["cut"].clone()
            cut[:n_cap] = frames.shape[1]
        target = self.y.targets(target_ids)
        pred = self.predict(frames, question, cut)
        same = same_rows(target_ids)
        nce = self.nce(pred, target, same)
        target_d = target.detach()
        noisy = F.normalize(target_d + c.dec_noise * torch.randn_like(target_d), dim=-1)
        dec = 0.5 * (self.decoder.loss(noisy, target_ids) + self.decoder.loss(pred.detach(), target_ids))
        with torch.no_grad():
            hit = same[torch.arange(len(pred)), (pred @ target_d.T).argmax(1)].float().mean()
        return {"loss": nce + c.dec_weight * dec, "infonce": nce.detach(), "decoder": dec.detach(),
                "temperature": 1.0 / self.nce.scale().detach(), "batch_retrieval": hit, "embeddings": pred.detach()}

    def lr_scales(self) -> dict[str, float]:
        return {"y_encoder.": self.config.y_lr_scale} if self.config.y_tune else {}

    def encode(self, x: Tensor) -> Tensor:
        """Query-free (caption) embedding of clips ``(B, T, 3, S, S) -> (B, 384)``."""
        return self.predict(x)

    @torch.no_grad()
    def encode_stream(self, frames: Tensor, chunk: int = 128) -> Tensor:
        """Caption embeddings of every window of a long video ``(N, 3, S, S) -> (N - T + 1, 384)``;
        row ``i`` sees frames ``i .. i + T - 1`` (causal: it describes the stream up to its last frame)."""
        t = self.config.num_frames
        if frames.dim() != 4 or frames.shape[0] < t:
            raise ShapeError(f"encode_stream expects frames (N, 3, H, W) with N >= {t}; got {tuple(frames.shape)}.")
        wins = frames.unfold(0, t, 1).permute(0, 4, 1, 2, 3)
        return torch.cat([self.predict(wins[i:i + chunk].contiguous()) for i in range(0, len(wins), chunk)])

    # --- read-outs -----------------------------------------------------------------------------
    @torch.no_grad()
    def answer_embedding(self, frames: Tensor, questions: list[str], cut: Tensor | None = None) -> Tensor:
        """Predicted answer embeddings ``(B, 384)`` for question strings."""
        ids = token_ids(questions, self.config.query_len).to(frames.device)
        return self.predict(frames, ids, cut)

    @torch.no_grad()
    def decode(self, emb: Tensor) -> list[str]:
        """Text of Y-space embeddings ``(B, 384)`` through the decoder."""
        return [self.y.tokenizer.decode(ids) for ids in self.decoder.generate(emb)]

    @torch.no_grad()
    def retrieve(self, emb: Tensor, candidates: list[str]) -> tuple[Tensor, Tensor]:
        """Nearest candidate text of each embedding: ``(index (B,), cosine distance (B,))``."""
        cand = self.y.embed_texts(candidates).to(emb.device)
        sim = emb @ cand.T
        best = sim.max(1)
        return best.indices, 1.0 - best.values


RECIPE = VLJEPA

__all__ = ["VLJEPA", "VLJEPAConfig", "RECIPE"]
