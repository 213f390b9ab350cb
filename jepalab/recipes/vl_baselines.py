"""The models VL-JEPA is measured against, on its own X-encoder, data and Y space.

- :class:`TokenTwin`: the token-generating twin of VL-JEPA's controlled comparison (arXiv
  2512.10942, section 4): the same X-encoder and query reader, then a transformer that generates
  the answer's tokens one by one with cross-entropy (a prefix language model: visual and question
  tokens see each other, answer tokens see the prefix and the answer so far). It has the same two
  stages (captions without a question, then question -> answer with a share of captions).
- :class:`ClipStyle`: a CLIP-style contrastive model (Radford et al. 2021): the same X-encoder,
  mean-pooled and projected into MiniLM's space, trained with the same InfoNCE against caption
  embeddings; no predictor and no query. The zero-shot and retrieval peer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.nn.blocks import Transformer
from jepalab.nn.text_decoder import Vocab
from jepalab.objectives.infonce import InfoNCE, same_rows
from jepalab.recipes.vl_parts import QueryReader, XEncoder, YSpace, cut_frames, data_token_ids, token_ids
from jepalab.recipes.vljepa import VLJEPAConfig


def _stage(batch: dict[str, Tensor], step: int, c: VLJEPAConfig) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """(question, target ids, cut) of a batch for ``step``, the same split of stages as VL-JEPA's."""
    frames = batch["frames"]
    if step < c.caption_steps:
        return None, batch["caption"], None
    n_cap = int(round(frames.shape[0] * c.caption_mix))
    question = batch["question"].clone()
    question[:n_cap] = 0
    cut = batch["cut"].clone()
    cut[:n_cap] = frames.shape[1]
    return question, torch.cat([batch["caption"][:n_cap], batch["answer"][n_cap:]]), cut


class TokenTwin(nn.Module):
    """Video + question -> answer tokens (greedy generation). Same sizes as a ``VLJEPAConfig``."""

    def __init__(self, config: VLJEPAConfig) -> None:
        super().__init__()
        c = self.config = config
        self.y = YSpace()
        self.vocab = Vocab(c.decoder_vocab or data_token_ids())
        self.x = XEncoder(c)
        d = c.pred_dim
        self.x_proj = nn.Linear(self.x.dim, d)
        self.query = QueryReader(d, c.query_len)
        self.kind = nn.Parameter(torch.randn(3, d) * 0.02)  # visual / question / answer
        self.tok = nn.Embedding(len(self.vocab), d)
        self.ans_pos = nn.Parameter(torch.randn(c.query_len, d) * 0.02)
        self.lm = Transformer(d, c.pred_depth, c.pred_heads)
        self.out = nn.Linear(d, len(self.vocab))

    def _prefix(self, frames: Tensor, question: Tensor | None, cut: Tensor | None) -> tuple[Tensor, Tensor]:
        v = self.x_proj(self.x(cut_frames(frames, cut))) + self.kind[0]
        keep = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
        if question is None:
            return v, keep
        q, qkeep = self.query(self.y.words(question), question)
        return torch.cat([v, q + self.kind[1]], 1), torch.cat([keep, qkeep], 1)

    def _logits(self, prefix: Tensor, pkeep: Tensor, ans_local: Tensor) -> Tensor:
        b, p, n = prefix.shape[0], prefix.shape[1], ans_local.shape[1]
        a = self.tok(ans_local) + self.ans_pos[:n] + self.kind[2]
        causal = torch.ones(n, n, dtype=torch.bool, device=a.device).tril()
        allow = torch.zeros(p + n, p + n, dtype=torch.bool, device=a.device)
        allow[:, :p] = True
        allow[p:, p:] = causal
        allow = allow[None, None] & torch.cat([pkeep, ans_local != 0], 1)[:, None, None, :]
        allow = allow | torch.eye(p + n, dtype=torch.bool, device=a.device)  # no empty rows
        h = self.lm(torch.cat([prefix, a], 1), allow)
        return self.out(h[:, p:])

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        question, target_ids, cut = _stage(batch, step, self.config)
        prefix, pkeep = self._prefix(batch["frames"], question, cut)
        local = self.vocab.local(target_ids)
        logits = self._logits(prefix, pkeep, local[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), local[:, 1:].reshape(-1), ignore_index=0)
        return {"loss": loss}

    @torch.no_grad()
    def answer(self, frames: Tensor, questions: list[str] | None, cut: Tensor | None = None,
               max_len: int = 12) -> list[str]:
        """Greedy answers (text) to ``questions`` (None: captions)."""
        q = None if questions is None else token_ids(questions, self.config.query_len).to(frames.device)
        prefix, pkeep = self._prefix(frames, q, cut)
        b = frames.shape[0]
        seq = torch.full((b, 1), 1, dtype=torch.long, device=frames.device)  # local [CLS]
        done = torch.zeros(b, dtype=torch.bool, device=frames.device)
        for _ in range(max_len):
            nxt = self._logits(prefix, pkeep, seq)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done |= nxt == 2
            if bool(done.all()):
                break
        full = self.vocab.to_full[seq[:, 1:]]
        out = []
        for row, loc in zip(full.tolist(), seq[:, 1:].tolist()):
            ids = [f for f, l in zip(row, loc) if l not in (0, 1, 2)] if 2 not in loc else \
                  [f for f, l in zip(row[: loc.index(2)], loc[: loc.index(2)]) if l not in (0, 1)]
            out.append(self.y.tokenizer.decode(ids))
        return out


class ClipStyle(nn.Module):
    """Clip -> pooled visual embedding in MiniLM's space, contrasted with caption embeddings."""

    def __init__(self, config: VLJEPAConfig) -> None:
        super().__init__()
        self.config = config
        self.y = YSpace()
        self.x = XEncoder(config)
        self.proj = nn.Sequential(nn.Linear(self.x.dim, config.pred_dim), nn.GELU(),
                                  nn.Linear(config.pred_dim, YSpace.dim))
        self.nce = InfoNCE(config.init_tau)

    def encode(self, frames: Tensor) -> Tensor:
        return F.normalize(self.proj(self.x(frames).mean(1)), dim=-1)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        ids = batch["caption"]
        return {"loss": self.nce(self.encode(batch["frames"]), self.y.targets(ids), same_rows(ids))}


__all__ = ["TokenTwin", "ClipStyle"]
