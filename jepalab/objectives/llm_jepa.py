"""The LLM-JEPA objective (Huang, LeCun, Balestriero 2025, "LLM-JEPA: Large Language Models Meet
Joint Embedding Predictive Architectures").

    loss = CE(answer tokens | prompt) + lambda * (1 - cos(Pred(Enc(text)), Enc(code)))

``Enc(view)`` is the LM's final hidden state at the last token of a view run on its own; ``Pred``
reuses the LM: ``k`` learned predictor tokens are appended to the text view and the hidden state
of the last one is the prediction (``k = 0``: no predictor, the text view's own last state).

Two ways to compute the same numbers, tested equal:

- ``three_pass``: the paper's form, three forward passes (prompt + answer for the next-token loss;
  text view + predictor tokens; code view).
- ``single_pass``: one forward pass over a packed row ``[prompt answer | pred x k | code]`` with a
  block attention mask and per-block positions, so neither view sees the other: the predictor
  tokens attend to the prompt part of the first block (the text view *is* the prompt, so it is not
  repeated) and to each other, the code block only to itself. Fewer tokens than three passes.

The next-token loss takes logits only at answer positions: on a 49k-word vocabulary the output
layer over every position would be a large share of the step. :func:`step_flops` counts the
multiply-adds of a step (forward x 3 for training) so that methods can be compared at equal FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def jepa_term(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of ``1 - cos(pred, target)``; (B, D) each. Gradients flow into both
    (the paper does not stop the gradient of either view)."""
    return (1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)).mean()


@dataclass
class Views:
    """Token ids of one batch: ``prompt`` (text view, also the LM's prefix), ``answer`` (the
    tokens the LM must produce, ending with an end token), ``code`` (the code view on its own)."""

    prompt: list[list[int]]
    answer: list[list[int]]
    code: list[list[int]]


def _pad(rows: list[list[int]], pad: int, device: torch.device) -> Tensor:
    t = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (t - len(r)) for r in rows], dtype=torch.long, device=device)


def _embed(model: nn.Module, ids: Tensor, pred_mask: Tensor | None, pred_embed: Tensor | None,
           pred_index: Tensor | None) -> Tensor:
    x = model.embed(ids)
    if pred_mask is not None and pred_embed is not None and bool(pred_mask.any()):
        x = x.clone()
        x[pred_mask] = pred_embed[pred_index[pred_mask]].to(x.dtype)
    return x


def _ce(model: nn.Module, h: Tensor, ids: Tensor, starts: list[int], lengths: list[int]) -> Tensor:
    """Cross-entropy of the answer tokens: row b's answer occupies ``[starts[b], starts[b] +
    lengths[b])`` of ``ids``; position j's hidden state predicts token j + 1."""
    rows, pos = [], []
    for b, (s, n) in enumerate(zip(starts, lengths)):
        rows += [b] * n
        pos += list(range(s - 1, s - 1 + n))
    r = torch.tensor(rows, device=ids.device)
    p = torch.tensor(pos, device=ids.device)
    logits = model.logits(h[r, p])
    return F.cross_entropy(logits.float(), ids[r, p + 1])


def three_pass(model: nn.Module, v: Views, k: int, pred_embed: Tensor | None, pad: int,
               jepa: bool = True) -> tuple[Tensor, Tensor | None]:
    """``(ce, jepa_distance or None)`` with three separate causal passes (right padding)."""
    dev = model.embed.weight.device
    lm = [p + a for p, a in zip(v.prompt, v.answer)]
    ids = _pad(lm, pad, dev)
    h = model(ids)
    ce = _ce(model, h, ids, [len(p) for p in v.prompt], [len(a) for a in v.answer])
    if not jepa:
        return ce, None
    b = len(lm)
    text = [p + [pad] * k for p in v.prompt]
    tids = _pad(text, pad, dev)
    pmask = torch.zeros_like(tids, dtype=torch.bool)
    pidx = torch.zeros_like(tids)
    for i, p in enumerate(v.prompt):
        pmask[i, len(p): len(p) + k] = True
        pidx[i, len(p): len(p) + k] = torch.arange(k, device=dev)
    ht = model(inputs_embeds=_embed(model, tids, pmask, pred_embed, pidx))
    last_t = torch.tensor([len(p) + k - 1 for p in v.prompt], device=dev)
    cids = _pad(v.code, pad, dev)
    hc = model(cids)
    last_c = torch.tensor([len(c) - 1 for c in v.code], device=dev)
    ar = torch.arange(b, device=dev)
    return ce, jepa_term(ht[ar, last_t], hc[ar, last_c])


def pack_single(v: Views, k: int, pad: int, device: torch.device, jepa: bool = True):
    """The packed rows, positions, block mask (B, T, T) and bookkeeping for :func:`single_pass`."""
    rows, poss, spans = [], [], []
    for p, a, c in zip(v.prompt, v.answer, v.code):
        lp, la = len(p), len(a)
        seq = p + a + ([pad] * k + c if jepa else [])
        pos = list(range(lp + la)) + (list(range(lp, lp + k)) + list(range(len(c))) if jepa else [])
        rows.append(seq)
        poss.append(pos)
        spans.append((lp, la, len(c) if jepa else 0))
    t = max(len(r) for r in rows)
    b = len(rows)
    ids = torch.full((b, t), pad, dtype=torch.long)
    pos = torch.zeros((b, t), dtype=torch.long)
    mask = torch.zeros((b, t, t), dtype=torch.bool)
    pmask = torch.zeros((b, t), dtype=torch.bool)
    pidx = torch.zeros((b, t), dtype=torch.long)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for i, (seq, ps, (lp, la, lc)) in enumerate(zip(rows, poss, spans)):
        n = len(seq)
        ids[i, :n] = torch.tensor(seq)
        pos[i, :n] = torch.tensor(ps)
        a0 = lp + la
        mask[i, :a0, :a0] = causal[:a0, :a0]
        if jepa:
            q0, c0 = a0, a0 + k
            mask[i, q0:c0, :lp] = True                      # predictor tokens see the text view
            mask[i, q0:c0, q0:c0] = causal[:k, :k]          # and the predictor tokens before them
            mask[i, c0:n, c0:n] = causal[: n - c0, : n - c0]  # the code view sees only itself
            pmask[i, q0:c0] = True
            pidx[i, q0:c0] = torch.arange(k)
        idx = torch.arange(n, t)
        mask[i, idx, idx] = True  # padding attends to itself (no empty softmax rows)
    return ids.to(device), pos.to(device), mask.to(device), pmask.to(device), pidx.to(device), spans


def single_pass(model: nn.Module, v: Views, k: int, pred_embed: Tensor | None, pad: int,
                jepa: bool = True) -> tuple[Tensor, Tensor | None]:
    """Same numbers as :func:`three_pass` from one forward pass over packed rows."""
    dev = model.embed.weight.device
    ids, pos, mask, pmask, pidx, spans = pack_single(v, k, pad, dev, jepa)
    h = model(inputs_embeds=_embed(model, ids, pmask, pred_embed, pidx), position_ids=pos, attn_mask=mask)
    ce = _ce(model, h, ids, [s[0] for s in spans], [s[1] for s in spans])
    if not jepa:
        return ce, None
    ar = torch.arange(len(spans), device=dev)
    last_t = torch.tensor([lp + la + k - 1 if k else lp - 1 for lp, la, _ in spans], device=dev)
    last_c = torch.tensor([lp + la + k + lc - 1 for lp, la, lc in spans], device=dev)
    return ce, jepa_term(h[ar, last_t], h[ar, last_c])


def forward_flops(cfg, seq_lens: list[int], padded_len: int, logit_tokens: int) -> float:
    """Multiply-add FLOPs (x2) of one forward pass over ``len(seq_lens)`` rows padded to
    ``padded_len``: every projection on every (padded) token, full ``T x T`` attention scores and
    weighted sums (what SDPA computes under a mask), and the output layer on ``logit_tokens``."""
    d, hd = cfg.dim, cfg.head_dim
    kv = cfg.n_kv_heads * hd
    per_token = 2 * (d * d * 2 + d * kv * 2 + 3 * d * cfg.ffn_dim) * cfg.n_layers
    tokens = len(seq_lens) * padded_len
    attn = 2 * 2 * cfg.n_layers * len(seq_lens) * padded_len * padded_len * d
    return float(per_token * tokens + attn + 2 * d * cfg.vocab_size * logit_tokens)


def step_flops(cfg, v: Views, k: int, jepa: bool, single: bool) -> float:
    """Training FLOPs of one step (backward ~ 2x forward, so 3x the forward count)."""
    n_ans = sum(len(a) for a in v.answer)
    lm = [len(p) + len(a) for p, a in zip(v.prompt, v.answer)]
    if single:
        lens = [m + ((k + len(c)) if jepa else 0) for m, c in zip(lm, v.code)]
        return 3 * forward_flops(cfg, lens, max(lens), n_ans)
    f = forward_flops(cfg, lm, max(lm), n_ans)
    if jepa:
        text = [len(p) + k for p in v.prompt]
        f += forward_flops(cfg, text, max(text), 0)
        f += forward_flops(cfg, [len(c) for c in v.code], max(len(c) for c in v.code), 0)
    return 3 * f


__all__ = ["jepa_term", "Views", "three_pass", "single_pass", "pack_single", "forward_flops", "step_flops"]
