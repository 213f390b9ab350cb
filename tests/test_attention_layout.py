"""The fused-qkv attention in ``jepalab.nn.blocks`` against a from-scratch reference.

Why: ``Attention`` slices q, k, v as strided views of one qkv output (a speed-up that avoids
copies); a wrong split (heads vs q/k/v axis) would still run and keep shapes, so only a numeric
comparison with the textbook formula catches it, forward and backward, with and without a mask.
"""

from __future__ import annotations

import math

import torch

from jepalab.nn.blocks import Attention


def reference(att: Attention, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_h)) v per head, heads concatenated, then the output projection."""
    b, n, d = x.shape
    h = att.heads
    q, k, v = att.qkv(x).split(d, dim=-1)  # the Linear's rows are [q | k | v], each head-major
    q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(-1) @ v  # (B, H, N, d/H)
    return att.proj(out.transpose(1, 2).reshape(b, n, d))


def test_attention_matches_reference_forward_and_backward() -> None:
    torch.manual_seed(0)
    att = Attention(24, 3)
    x = torch.randn(2, 7, 24, requires_grad=True)
    out = att(x)
    ref = reference(att, x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, att.qkv.weight, att.qkv.bias], g)
    ref_grads = torch.autograd.grad(ref, [x, att.qkv.weight, att.qkv.bias], g)
    for a, r in zip(grads, ref_grads):
        assert torch.allclose(a, r, atol=1e-5)


def test_attention_matches_reference_with_causal_mask() -> None:
    torch.manual_seed(1)
    att = Attention(16, 2)
    x = torch.randn(3, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    out = att(x, causal)
    assert torch.allclose(out, reference(att, x, causal), atol=1e-5)
    # Causality: the first token cannot see the others, so changing them leaves it unchanged.
    x2 = x.clone()
    x2[:, 1:] += 1.0
    assert torch.allclose(att(x2, causal)[:, 0], out[:, 0], atol=1e-6)
    assert not torch.allclose(att(x2, causal)[:, -1], out[:, -1], atol=1e-3)
