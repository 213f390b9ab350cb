"""Text out of an embedding: VL-JEPA's lightweight decoder and the restricted vocabulary it writes in.

VL-JEPA predicts the *embedding* of an answer; words are produced only when someone asks for them,
by a small decoder trained to turn a Y-space vector back into text (arXiv 2512.10942, section on
the Y-decoder). Here it is a one-layer GRU whose initial state is a linear map of the embedding,
writing MiniLM WordPiece ids restricted to the words of the data (a few hundred instead of 30k:
the output layer stays tiny and the decoder cannot drift to words the world never uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ShapeError

PAD, UNK, CLS, SEP = 0, 100, 101, 102


class Vocab(nn.Module):
    """Restricted vocabulary: MiniLM id <-> local index. Local 0 = [PAD], 1 = [CLS] (start),
    2 = [SEP] (end), 3 = [UNK]; ``ids`` lists the MiniLM ids of the rest."""

    def __init__(self, ids: list[int], full_size: int = 30522) -> None:
        super().__init__()
        words = [PAD, CLS, SEP, UNK] + [i for i in sorted(set(ids)) if i not in (PAD, CLS, SEP, UNK)]
        lut = torch.full((full_size,), 3, dtype=torch.long)
        lut[torch.tensor(words)] = torch.arange(len(words))
        self.register_buffer("to_local", lut, persistent=False)
        self.register_buffer("to_full", torch.tensor(words), persistent=False)

    def __len__(self) -> int:
        return len(self.to_full)

    def local(self, full_ids: Tensor) -> Tensor:
        """MiniLM ids ``(B, L)`` (with [CLS] ... [SEP] and 0 padding) -> local ids, same shape."""
        return self.to_local[full_ids]


class TextDecoder(nn.Module):
    """GRU decoder ``(B, y_dim)`` embedding -> local token ids. Trained by :meth:`loss` (teacher
    forcing), used through :meth:`generate` (greedy)."""

    def __init__(self, vocab: Vocab, y_dim: int = 384, hidden: int = 128, max_len: int = 24) -> None:
        super().__init__()
        self.vocab, self.max_len, self.y_dim = vocab, max_len, y_dim
        n = len(vocab)
        self.init = nn.Linear(y_dim, hidden)
        self.embed = nn.Embedding(n, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n)

    def _check(self, y: Tensor) -> None:
        if y.dim() != 2 or y.shape[1] != self.y_dim:
            raise ShapeError(f"TextDecoder expects embeddings (B, {self.y_dim}); got {tuple(y.shape)}.")

    def loss(self, y: Tensor, full_ids: Tensor) -> Tensor:
        """Cross-entropy of the text ``full_ids (B, L)`` (MiniLM ids starting with [CLS]) given ``y``."""
        self._check(y)
        ids = self.vocab.local(full_ids)
        h0 = torch.tanh(self.init(y)).unsqueeze(0)
        out, _ = self.gru(self.embed(ids[:, :-1]), h0)
        logits = self.out(out)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=0)

    @torch.no_grad()
    def generate(self, y: Tensor) -> list[list[int]]:
        """Greedy decoding: MiniLM ids of each text (without [CLS]/[SEP])."""
        self._check(y)
        b = y.shape[0]
        h = torch.tanh(self.init(y)).unsqueeze(0)
        tok = torch.full((b, 1), 1, dtype=torch.long, device=y.device)
        done = torch.zeros(b, dtype=torch.bool, device=y.device)
        texts: list[list[int]] = [[] for _ in range(b)]
        for _ in range(self.max_len):
            out, h = self.gru(self.embed(tok), h)
            tok = self.out(out[:, -1]).argmax(-1, keepdim=True)
            for i in range(b):
                if not done[i] and int(tok[i]) != 2:
                    texts[i].append(int(self.vocab.to_full[tok[i]]))
            done |= tok[:, 0] == 2
            if bool(done.all()):
                break
        return texts


__all__ = ["Vocab", "TextDecoder", "PAD", "CLS", "SEP", "UNK"]
