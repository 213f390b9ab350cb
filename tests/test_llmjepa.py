"""LLM-JEPA objective and recipe: the JEPA term, single pass == three passes, training, decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jepalab.objectives.llm_jepa import Views, jepa_term, pack_single, single_pass, step_flops, three_pass
from jepalab.recipes.llmjepa import LLMJEPA, LLMJEPAConfig


def _tiny(k: int = 2, lam: float = 1.0, **kw) -> LLMJEPA:
    torch.manual_seed(0)
    return LLMJEPA(LLMJEPAConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, k=k, lam=lam, **kw))


REQ = ["lines with a vowel", "lines containing the string 'dog' 3 or more times", "a number"]
RX = ["([AEIOUaeiou])", "(.*dog.*){3,}", "[0-9]"]


def test_jepa_term_zero_for_identical_and_analytic_gradient() -> None:
    x = torch.randn(5, 7, dtype=torch.float64)
    assert jepa_term(x, x).abs().item() < 1e-12
    assert jepa_term(x, 3.0 * x).abs().item() < 1e-12  # cosine ignores scale
    assert jepa_term(x, -x).item() == pytest.approx(2.0)
    p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(jepa_term, (p, t))
    # analytic: d(1 - cos)/dp = -(t/|t| - cos * p/|p|) / |p|, averaged over the batch
    jepa_term(p, t).backward()
    pn, tn = p.detach().norm(dim=1, keepdim=True), t.detach().norm(dim=1, keepdim=True)
    cos = (p.detach() * t.detach()).sum(1, keepdim=True) / (pn * tn)
    want = -(t.detach() / tn - cos * p.detach() / pn) / pn / p.shape[0]
    assert torch.allclose(p.grad, want)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_single_pass_equals_three_passes(k: int) -> None:
    m = _tiny(k=k)
    v = m.views(REQ, RX)
    pe = m.pred_embed if k else None
    ce3, d3 = three_pass(m.lm, v, k, pe, m.tokenizer.pad_id)
    ce1, d1 = single_pass(m.lm, v, k, pe, m.tokenizer.pad_id)
    assert torch.allclose(ce1, ce3, atol=1e-5) and torch.allclose(d1, d3, atol=1e-5)
    g3 = torch.autograd.grad(ce3 + d3, m.lm.layers[0].attn.wq.weight)[0]
    g1 = torch.autograd.grad(ce1 + d1, m.lm.layers[0].attn.wq.weight)[0]
    assert torch.allclose(g1, g3, atol=1e-5)


def test_views_do_not_see_each_other() -> None:
    m = _tiny(k=2)
    v = m.views(REQ[:1], RX[:1])
    _, _, mask, _, _, spans = pack_single(v, 2, m.tokenizer.pad_id, torch.device("cpu"))
    lp, la, lc = spans[0]
    q0, c0 = lp + la, lp + la + 2
    assert not mask[0, c0:c0 + lc, :c0].any()      # code view: nothing before its block
    assert not mask[0, q0:c0, lp:q0].any()          # predictor tokens never see the answer
    assert mask[0, q0:c0, :lp].all()                # ... but the whole text view
    # changing the code view leaves the predictor's embedding unchanged, and vice versa
    v2 = Views(v.prompt, v.answer, [v.code[0][:1] + [ord("x")] + v.code[0][1:]])

    def hidden(vv: Views) -> torch.Tensor:
        ids, pos, mk, pm, pi, _ = pack_single(vv, 2, m.tokenizer.pad_id, torch.device("cpu"))
        emb = m.lm.embed(ids)
        emb[pm] = m.pred_embed[pi[pm]]
        return m.lm(inputs_embeds=emb, position_ids=pos, attn_mask=mk)[0]

    with torch.no_grad():
        h1, h2 = hidden(v), hidden(v2)
    assert torch.allclose(h1[:c0], h2[:c0])  # text, answer and predictor: untouched by the code view


def test_lambda_zero_is_plain_fine_tuning_and_dropout_skips_jepa() -> None:
    m = _tiny(lam=0.0)
    v = m.views(REQ, RX)
    total, ce, dist = m.loss(v, jepa=True)
    assert dist is None and torch.equal(total, ce)
    assert step_flops(m.lm.cfg, v, 2, jepa=False, single=True) < step_flops(m.lm.cfg, v, 2, jepa=True, single=True)
    assert step_flops(m.lm.cfg, v, 2, True, single=True) < step_flops(m.lm.cfg, v, 2, True, single=False)


def test_training_lowers_loss_and_greedy_decoding_reproduces_a_memorised_regex() -> None:
    from jepalab.data.nlrx import encode_bytes

    m = _tiny(k=1, lam=1.0)
    rq, rql = encode_bytes(REQ)
    rx, rxl = encode_bytes(RX)
    batch = {"request": rq, "request_len": rql, "regex": rx, "regex_len": rxl}
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        out = m.training_step(batch, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss"].detach())
    assert float(out["loss"]) < 0.2 * first and "jepa" in out and float(out["flops"]) > 0
    assert m.generate(REQ) == RX


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    from jepalab.recipes.base import Recipe

    m = _tiny(k=1)
    m.save_pretrained(tmp_path)
    m2 = Recipe.from_pretrained(tmp_path)
    v = m.views(REQ, RX)
    assert torch.allclose(m.loss(v, True)[0], m2.loss(v, True)[0])
