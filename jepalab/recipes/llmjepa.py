"""LLM-JEPA (Huang, LeCun, Balestriero 2025): fine-tune a causal LM on NL -> regex with its
next-token loss plus a JEPA term tying the embedding of the request (after ``k`` predictor tokens)
to the embedding of the regex. ``lam = 0`` is plain fine-tuning, with the same code.

Which encoder: the LM itself (``jepalab.nn.llama``), either ``base: scratch`` (a few million
parameters, byte-level tokens) or ``base: smollm2`` (SmolLM2-135M-Instruct from its GGUF, BPE
tokens, its chat template). Which predictor: ``k`` learned predictor-token embeddings appended to
the text view. Which objective: ``jepalab.objectives.llm_jepa`` (three-pass or single-pass form,
``jepa_dropout`` skips the JEPA term on that share of steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.data.nlrx import decode_bytes
from jepalab.errors import ConfigError
from jepalab.nn.llama import LlamaConfig, LlamaLM
from jepalab.objectives.llm_jepa import Views, single_pass, step_flops, three_pass
from jepalab.recipes.base import Recipe

SYSTEM = "Convert natural language to regular expression."


class ByteTokenizer:
    """UTF-8 bytes plus four control tokens: the from-scratch LM's whole vocabulary."""

    PAD, BOS, SEP, EOS = 256, 257, 258, 259
    vocab_size = 260

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def prompt(self, request: str) -> list[int]:
        return [self.BOS] + self.encode(request) + [self.SEP]

    def answer(self, regex: str) -> list[int]:
        return self.encode(regex) + [self.EOS]

    def code(self, regex: str) -> list[int]:
        return [self.BOS] + self.encode(regex) + [self.EOS]

    @property
    def pad_id(self) -> int:
        return self.PAD

    @property
    def stop_id(self) -> int:
        return self.EOS


class ChatTokenizer:
    """SmolLM2's BPE with its chat template: system + user turns are the text view, the assistant
    turn's content plus ``<|im_end|>`` the answer, the assistant turn alone the code view."""

    def __init__(self) -> None:
        from jepalab.nn.gguf_loader import load_gguf_tokenizer

        self.tok = load_gguf_tokenizer()
        self.im_end = self.tok.token_to_id["<|im_end|>"]
        self._cache: dict[str, list[int]] = {}

    def _enc(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok.encode(text)
        return self._cache[text]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def prompt(self, request: str) -> list[int]:
        return self._enc(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{request}<|im_end|>\n"
                         "<|im_start|>assistant\n")

    def answer(self, regex: str) -> list[int]:
        return self._enc(regex) + [self.im_end]

    def code(self, regex: str) -> list[int]:
        return self._enc(f"<|im_start|>assistant\n{regex}") + [self.im_end]

    @property
    def pad_id(self) -> int:
        return self.tok.pad_id

    @property
    def stop_id(self) -> int:
        return self.im_end


@dataclass
class LLMJEPAConfig:
    """Hyper-parameters of :class:`LLMJEPA` (the scratch LM's shape is ignored for smollm2)."""

    base: str = "scratch"        # scratch | smollm2
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int = 2
    ffn_dim: int = 512
    max_seq_len: int = 512
    lam: float = 1.0             # JEPA weight; 0 = plain fine-tuning
    k: int = 1                   # predictor tokens (0 = no predictor)
    jepa_dropout: float = 0.0    # share of steps that skip the JEPA term
    single_pass: bool = True     # one packed pass with a block mask, else the paper's three passes
    max_new_tokens: int = 96     # greedy decoding budget

    def validate(self) -> None:
        if self.base not in ("scratch", "smollm2"):
            raise ConfigError(f"model.base={self.base!r}: choose 'scratch' or 'smollm2'.")
        if not self.lam >= 0:
            raise ConfigError(f"model.lam must be >= 0 (0 = plain fine-tuning), got {self.lam}.")
        if self.k < 0 or self.k > 16:
            raise ConfigError(f"model.k must be in [0, 16] predictor tokens, got {self.k}.")
        if not 0.0 <= self.jepa_dropout < 1.0:
            raise ConfigError(f"model.jepa_dropout must be in [0, 1), got {self.jepa_dropout}.")
        if self.max_new_tokens < 1:
            raise ConfigError(f"model.max_new_tokens must be >= 1, got {self.max_new_tokens}.")


class LLMJEPA(Recipe):
    """LLM-JEPA: next-token loss + lambda * (1 - cos(Pred(Enc(request)), Enc(regex)))."""

    name = "llmjepa"
    config_class = LLMJEPAConfig

    def __init__(self, config: LLMJEPAConfig) -> None:
        super().__init__(config)
        config.validate()
        if config.base == "smollm2":
            from jepalab.nn.gguf_loader import load_gguf_model

            self.tokenizer = ChatTokenizer()
            self.lm = load_gguf_model()
        else:
            self.tokenizer = ByteTokenizer()
            self.lm = LlamaLM(LlamaConfig(vocab_size=ByteTokenizer.vocab_size, dim=config.dim,
                                          n_layers=config.n_layers, n_heads=config.n_heads,
                                          n_kv_heads=config.n_kv_heads, ffn_dim=config.ffn_dim,
                                          max_seq_len=config.max_seq_len))
        std = float(self.lm.embed.weight.detach().std()) if config.base == "smollm2" else 0.02
        self.pred_embed = nn.Parameter(torch.randn(max(config.k, 1), self.lm.cfg.dim) * std)

    def views(self, requests: list[str], regexes: list[str]) -> Views:
        t = self.tokenizer
        return Views([t.prompt(r) for r in requests], [t.answer(x) for x in regexes], [t.code(x) for x in regexes])

    def loss(self, v: Views, jepa: bool, single: bool | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(total, ce, jepa_distance)`` for token views ``v``."""
        single = self.config.single_pass if single is None else single
        use = jepa and self.config.lam > 0
        fn = single_pass if single else three_pass
        ce, dist = fn(self.lm, v, self.config.k, self.pred_embed if self.config.k else None,
                      self.tokenizer.pad_id, jepa=use)
        total = ce if dist is None else ce + self.config.lam * dist
        return total, ce, dist

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        req = decode_bytes(batch["request"], batch["request_len"])
        rx = decode_bytes(batch["regex"], batch["regex_len"])
        v = self.views(req, rx)
        drop = self.config.jepa_dropout > 0 and float(torch.rand(())) < self.config.jepa_dropout
        jepa = self.config.lam > 0 and not drop
        total, ce, dist = self.loss(v, jepa)
        out = {"loss": total, "ce": ce.detach(),
               "flops": torch.tensor(step_flops(self.lm.cfg, v, self.config.k, jepa, self.config.single_pass))}
        if dist is not None:
            out["jepa"] = dist.detach()
        return out

    def encode(self, x: Tensor) -> Tensor:
        """Last-token hidden state (B, D) of token ids ``x`` (B, T) without padding."""
        return self.lm(x.long())[:, -1]

    @torch.no_grad()
    def generate(self, requests: list[str], max_new_tokens: int | None = None, batch_size: int = 64) -> list[str]:
        """Greedy decoding of the regex for each request (left-padded batches, KV cache)."""
        self.eval()
        out: list[str] = []
        for i in range(0, len(requests), batch_size):
            out += self._generate(requests[i:i + batch_size], max_new_tokens or self.config.max_new_tokens)
        return out

    def _generate(self, requests: list[str], n_new: int) -> list[str]:
        t = self.tokenizer
        dev = self.lm.embed.weight.device
        prompts = [t.prompt(r) for r in requests]
        b, w = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((b, w), t.pad_id, dtype=torch.long)
        valid = torch.zeros((b, w), dtype=torch.bool)
        for i, p in enumerate(prompts):
            ids[i, w - len(p):] = torch.tensor(p)
            valid[i, w - len(p):] = True
        ids, valid = ids.to(dev), valid.to(dev)
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        causal = torch.ones(w, w, dtype=torch.bool, device=dev).tril()
        mask = causal[None] & valid[:, None, :]
        mask |= torch.eye(w, dtype=torch.bool, device=dev)[None]  # padding sees itself
        cache = self.lm.new_cache()
        h = self.lm(ids, position_ids=pos, attn_mask=mask, cache=cache)
        nxt = self.lm.logits(h[:, -1]).argmax(-1)
        next_pos = pos[:, -1] + 1
        gen = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for _ in range(n_new):
            for i in range(b):
                if not done[i]:
                    gen[i].append(int(nxt[i]))
            done |= nxt == t.stop_id
            if bool(done.all()) or int(next_pos.max()) >= self.lm.cfg.max_seq_len:
                break
            valid = torch.cat([valid, torch.ones(b, 1, dtype=torch.bool, device=dev)], dim=1)
            h = self.lm(nxt[:, None], position_ids=next_pos[:, None], attn_mask=valid[:, None, :], cache=cache)
            nxt = self.lm.logits(h[:, -1]).argmax(-1)
            next_pos = next_pos + 1
        return [t.decode([x for x in g if x != t.stop_id]) for g in gen]


RECIPE = LLMJEPA
