"""Attentive probe: finds a class hidden in one token at a random position (where a mean-pooled
linear read-out struggles), regresses a hidden amplitude, reads digits from a model's tokens;
``tokens_of`` finds tokens in the real recipes and refuses pooled-only models clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jepalab.errors import DataError, ShapeError
from jepalab.eval.attentive import AttentiveProbe, attentive_probe, embed_tokens, tokens_of
from jepalab.eval.probes import linear_classifier

torch.set_num_threads(1)


def spike_task(n: int, seed: int, tokens: int = 16, dim: int = 16, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """Noise tokens; one token at a random position carries +4 on channel ``label``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, tokens, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    pos = torch.randint(0, tokens, (n,), generator=g)
    x[torch.arange(n), pos, y] += 4.0
    return x, y


def test_attentive_probe_finds_the_informative_token() -> None:
    xtr, ytr = spike_task(512, 0)
    xte, yte = spike_task(256, 1)
    res = attentive_probe(xtr, ytr, xte, yte, epochs=40)
    mean_linear = linear_classifier(xtr.mean(1), ytr, xte.mean(1), yte)
    assert res["task"] == "classification"
    assert res["accuracy"] > 0.6, res  # chance is 0.25
    assert res["accuracy"] > mean_linear + 0.1, (res, mean_linear)


def test_attentive_probe_regression_of_a_hidden_amplitude() -> None:
    def make(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 12, 8, generator=g)
        amp = 3.0 + 6.0 * torch.rand(n, generator=g)  # var 3 vs unit noise: best R^2 ~0.75
        pos = torch.randint(0, 12, (n,), generator=g)
        x[torch.arange(n), pos, 0] += amp
        return x, amp[:, None]

    xtr, ytr = make(768, 0)
    xte, yte = make(256, 1)
    res = attentive_probe(xtr, ytr, xte, yte, epochs=40)
    assert res["task"] == "regression" and len(res["r2_per_target"]) == 1
    assert res["r2"] > 0.5, res


def test_deterministic_given_seed() -> None:
    xtr, ytr = spike_task(128, 0)
    xte, yte = spike_task(64, 1)
    a = attentive_probe(xtr, ytr, xte, yte, epochs=3, seed=5)
    b = attentive_probe(xtr, ytr, xte, yte, epochs=3, seed=5)
    assert a == b


def _lejepa(img: int = 16) -> nn.Module:
    from jepalab.recipes.lejepa import LeJEPA, LeJEPAConfig

    torch.manual_seed(0)
    return LeJEPA(LeJEPAConfig(img_size=img, in_chans=1, embed_dim=32, width=8, patch_size=4, num_views=2,
                               proj_hidden=0, proj_dim=16, sigreg_proj=32))


def test_attentive_probe_on_digits_tokens_beats_chance() -> None:
    from jepalab.data.images import DigitsConfig, DigitsImages

    model = _lejepa().eval()
    tr = DigitsImages(DigitsConfig(split="train", img_size=16)).all()
    te = DigitsImages(DigitsConfig(split="test", img_size=16)).all()
    ttr = embed_tokens(model, tr["images"][:600].split(200))
    tte = embed_tokens(model, te["images"][:300].split(200))
    assert ttr.shape == (600, 16, 32)
    res = attentive_probe(ttr, tr["labels"][:600], tte, te["labels"][:300], epochs=25)
    assert res["accuracy"] > 0.6, res  # chance 0.1


def test_tokens_of_real_recipes() -> None:
    from jepalab.recipes.ijepa import IJEPA, IJEPAConfig
    from jepalab.recipes.vjepa import VJEPA, VJEPAConfig

    ij = IJEPA(IJEPAConfig(img_size=16, in_chans=1, patch_size=4, embed_dim=24, depth=1, heads=2,
                           pred_dim=12, pred_depth=1, pred_heads=2))
    x = torch.rand(3, 1, 16, 16)
    t = tokens_of(ij, x)
    assert t.shape == (3, 16, 24) and not t.requires_grad
    # the teacher's tokens are what encode() pools
    torch.testing.assert_close(t.mean(1), ij.encode(x))

    vj = VJEPA(VJEPAConfig(img_size=16, in_chans=1, num_frames=4, tubelet=2, patch_size=8, embed_dim=24,
                           depth=1, heads=2, pred_dim=12, pred_depth=1, pred_heads=2))
    clip = torch.rand(2, 4, 1, 16, 16)  # (B, T, C, H, W) as sources give it
    tv = tokens_of(vj, clip)
    assert tv.shape == (2, 2 * 2 * 2, 24)
    torch.testing.assert_close(tv.mean(1), vj.encode(clip))

    assert tokens_of(_lejepa(), torch.rand(2, 1, 16, 16)).shape == (2, 16, 32)


def test_tokens_of_prefers_encode_tokens_and_refuses_pooled_models() -> None:
    class WithTokens(nn.Module):
        def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(2).transpose(1, 2)  # (B, H*W, C)

    assert tokens_of(WithTokens(), torch.rand(2, 3, 4, 4)).shape == (2, 16, 3)

    from jepalab.recipes.future import FutureConfig, FutureJEPA

    fut = FutureJEPA(FutureConfig(img_size=32, embed_dim=16, enc_width=8, enc_dim=16, pred_hidden=32)).eval()
    with pytest.raises(ShapeError, match="token outputs"):
        tokens_of(fut, torch.rand(2, 1, 32, 32))
    with pytest.raises(ShapeError, match="token outputs"):
        tokens_of(nn.Linear(2, 2), torch.rand(2, 1, 4, 4))
    with pytest.raises(ShapeError):
        tokens_of(WithTokens(), torch.rand(2, 4))


def test_input_validation() -> None:
    with pytest.raises(ShapeError, match="divide"):
        AttentiveProbe(10, 3, heads=4)
    with pytest.raises(ShapeError):
        AttentiveProbe(8, 2)(torch.rand(2, 8))
    x, y = spike_task(32, 0)
    with pytest.raises(ShapeError):
        attentive_probe(x.mean(1), y, x, y)
    with pytest.raises(ShapeError):
        attentive_probe(x, y[:10], x, y)
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        attentive_probe(bad, y, x, y)
    with pytest.raises(DataError, match="constant"):
        attentive_probe(x, torch.ones(32, 1), x, torch.ones(32, 1))
    with pytest.raises(DataError, match="task"):
        attentive_probe(x, y, x, y, task="ranking")
    with pytest.raises(DataError):
        attentive_probe(x, y, x, y, epochs=0)
