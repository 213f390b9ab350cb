"""A Llama-shaped causal language model, small enough to read in one sitting.

The same module serves a few-million-parameter LM trained from scratch (tests, fast benchmarks)
and SmolLM2-135M-Instruct loaded from its GGUF file (``jepalab.nn.gguf_loader``), so the LLM-JEPA
recipe runs one code path at both scales. The parts are Llama's: RMSNorm before each sub-layer,
rotary position embeddings (RoPE, rotate-half form as in Hugging Face's Llama), grouped-query
attention (``n_kv_heads`` key/value heads shared by ``n_heads`` query heads) and a SwiGLU MLP.

``forward`` returns hidden states, not logits: LLM-JEPA needs the last-token hidden state of a view,
and the next-token loss only needs logits on the answer positions (``logits(h)`` on a gathered
subset), which on SmolLM2's 49k-word vocabulary saves most of the output layer's cost.

Two things beyond a plain causal pass, both for the recipe: ``position_ids`` and a boolean
``attn_mask`` (B, T, T) let one packed sequence hold several views that do not see each other
(LLM-JEPA's single-pass form), and ``inputs_embeds`` lets learned predictor tokens stand in for
token embeddings. ``cache`` (a list of per-layer key/value tensors) makes greedy decoding linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError


@dataclass
class LlamaConfig:
    """Shape of a Llama model. Defaults: a ~3M-parameter LM for CPU experiments."""

    vocab_size: int = 2304
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int = 2
    ffn_dim: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 512
    tie_embeddings: bool = True

    def validate(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"llama.{name} must be >= 1, got {getattr(self, name)}.")
        if self.dim % self.n_heads:
            raise ConfigError(f"llama.dim={self.dim} must be divisible by n_heads={self.n_heads}.")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"llama.n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}.")
        if (self.dim // self.n_heads) % 2:
            raise ConfigError(f"llama head width dim/n_heads={self.dim // self.n_heads} must be even for RoPE.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``: Llama's LayerNorm without centring or bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_tables(position_ids: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """``cos, sin`` of shape (B, 1, T, head_dim) for integer positions (B, T)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim))
    ang = position_ids.float()[..., None] * inv  # (B, T, hd/2)
    ang = torch.cat([ang, ang], dim=-1)[:, None]
    return ang.cos(), ang.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x_i, x_{i+hd/2})`` by the position's angle (rotate-half convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                cache: list[Tensor] | None = None) -> Tensor:
        b, t, _ = x.shape
        hd, nh, nkv = self.cfg.head_dim, self.cfg.n_heads, self.cfg.n_kv_heads
        q = self.wq(x).view(b, t, nh, hd).transpose(1, 2)
        k = self.wk(x).view(b, t, nkv, hd).transpose(1, 2)
        v = self.wv(x).view(b, t, nkv, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # decoding: append this step's keys/values to the cache in place
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        rep = nh // nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1 and k.shape[2] == t)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        return self.wo(y.transpose(1, 2).reshape(b, t, nh * hd))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, cache: list[Tensor] | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.ffn(self.ffn_norm(x))


class LlamaLM(nn.Module):
    """Token embedding -> ``n_layers`` blocks -> final RMSNorm; ``logits`` maps hidden states to
    the vocabulary (through the tied embedding when ``tie_embeddings``)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for blk in self.layers:  # GPT-2-style scaling of residual projections
            nn.init.normal_(blk.attn.wo.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
            nn.init.normal_(blk.ffn.down.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids: Tensor | None = None, *, inputs_embeds: Tensor | None = None,
                position_ids: Tensor | None = None, attn_mask: Tensor | None = None,
                cache: list[list[Tensor]] | None = None) -> Tensor:
        """Final hidden states (B, T, D).

        ``ids`` (B, T) or ``inputs_embeds`` (B, T, D); ``position_ids`` (B, T), default
        ``0..T-1`` (after the cached length when decoding); ``attn_mask`` (B, T, T_keys) bool,
        True = may attend, default causal; ``cache``: one list per layer, filled in place."""
        x = self.embed(ids) if inputs_embeds is None else inputs_embeds
        if x.ndim != 3 or x.shape[-1] != self.cfg.dim:
            raise ShapeError(f"LlamaLM expects ids (B, T) or embeddings (B, T, {self.cfg.dim}), got {tuple(x.shape)}.")
        b, t, _ = x.shape
        if position_ids is None:
            past = cache[0][0].shape[2] if cache and cache[0] else 0
            position_ids = torch.arange(past, past + t, device=x.device).expand(b, t)
        if int(position_ids.max()) >= self.cfg.max_seq_len:
            raise ShapeError(f"sequence position {int(position_ids.max())} exceeds max_seq_len={self.cfg.max_seq_len}.")
        cos, sin = rope_tables(position_ids, self.cfg.head_dim, self.cfg.rope_theta)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, attn_mask, cache[i] if cache is not None else None)
        return self.norm(x)

    def logits(self, h: Tensor) -> Tensor:
        """Vocabulary logits of hidden states ``h`` (..., D)."""
        w = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return h @ w.t()

    def new_cache(self) -> list[list[Tensor]]:
        return [[] for _ in self.layers]

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.embed.weight.numel()


__all__ = ["LlamaConfig", "LlamaLM", "RMSNorm", "rope_tables", "apply_rope"]
