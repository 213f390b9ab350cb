"""Probes on frozen features (jepalab.eval.probes)."""

from __future__ import annotations

import pytest
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import DataError, ShapeError
from jepalab.eval.probes import embed_dataset, knn_classify, linear_classifier, linear_probe, r2_score

torch.set_num_threads(1)


def _state(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) * torch.tensor([10.0, 10.0, 2.0, 0.5]) + 30


def test_r2_score_reference_points():
    y = torch.randn(100, 3)
    torch.testing.assert_close(r2_score(y, y), torch.ones(3, dtype=torch.float64))
    mean_pred = y.mean(0, keepdim=True).expand_as(y)
    torch.testing.assert_close(r2_score(mean_pred, y), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    assert (r2_score(-y, y) < 0).all()
    with pytest.raises(DataError, match="constant"):
        r2_score(torch.zeros(5, 1), torch.ones(5, 1))


def test_probe_recovers_linearly_encoded_state():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(4, 32, generator=g)
    ytr, yte = _state(800, 1), _state(400, 2)
    xtr = ytr @ mix + 0.01 * torch.randn(800, 32, generator=g)
    xte = yte @ mix + 0.01 * torch.randn(400, 32, generator=g)
    out = linear_probe(xtr, ytr, xte, yte)
    assert out["r2"] > 0.99 and min(out["r2_per_target"]) > 0.98
    assert len(out["r2_per_target"]) == 4


def test_probe_on_noise_features_is_near_zero():
    g = torch.Generator().manual_seed(0)
    ytr, yte = _state(800, 1), _state(400, 2)
    out = linear_probe(torch.randn(800, 32, generator=g), ytr, torch.randn(400, 32, generator=g), yte)
    assert abs(out["r2"]) < 0.05
    assert out["ridge"] > 0.1  # GCV shrinks hard when the features carry nothing
    # without shrinkage the probe overfits the noise: train R^2 up, test R^2 below zero
    raw = linear_probe(torch.randn(80, 60, generator=g), ytr[:80], torch.randn(400, 60, generator=g), yte, ridge=0.0)
    assert raw["train_r2"] > 0.5 and raw["r2"] < 0


def test_fixed_ridge_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(3)
    x, xt = torch.randn(200, 10, generator=g), torch.randn(50, 10, generator=g)
    w = torch.randn(10, 2, generator=g)
    y, yt = x @ w + torch.randn(200, 2, generator=g), xt @ w + torch.randn(50, 2, generator=g)
    out = linear_probe(x, y, xt, yt, ridge=0.5)
    mu, sd = x.double().mean(0), x.double().std(0, unbiased=False)
    model = sklearn.Ridge(alpha=0.5 * 200).fit(((x.double() - mu) / sd).numpy(), y.double().numpy())
    pred = torch.from_numpy(model.predict(((xt.double() - mu) / sd).numpy()))
    assert out["r2"] == pytest.approx(float(r2_score(pred, yt).mean()), abs=1e-8)


def test_knn_and_linear_classifier():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g) * 3
    ytr, yte = torch.randint(0, 5, (500,), generator=g), torch.randint(0, 5, (200,), generator=g)
    xtr = centres[ytr] + torch.randn(500, 16, generator=g)
    xte = centres[yte] + torch.randn(200, 16, generator=g)
    assert knn_classify(xtr, ytr, xte, yte, k=10) > 0.95
    assert linear_classifier(xtr, ytr, xte, yte) > 0.95
    noise = torch.randn(200, 16, generator=g)
    assert knn_classify(xtr, ytr, noise, yte) < 0.4
    assert linear_classifier(xtr, ytr, noise, yte) < 0.4
    with pytest.raises(DataError, match="integer"):
        knn_classify(xtr, ytr.float(), xte, yte)


def test_embed_dataset_with_a_centroid_encoder_probes_positions():
    """A hand-made 'encoder' (intensity centroid) must give R^2 ~ 1 on x, y and ~0 on velocity."""

    def centroid(frames: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 2)
        img = frames.sum(1)
        c = torch.arange(img.shape[-1]).float() + 0.5
        m = img.sum((-1, -2))
        return torch.stack([(img.sum(-2) * c).sum(-1) / m, (img.sum(-1) * c).sum(-1) / m], 1)

    tr_src = BouncingBalls(BouncingConfig(split="train"))
    te_src = BouncingBalls(BouncingConfig(split="test"))
    xtr, str_ = embed_dataset(centroid, tr_src, steps=3, batch_size=64, frame=1)
    xte, ste = embed_dataset(centroid, te_src, steps=2, batch_size=64, frame=1)
    assert xtr.shape == (192, 2) and str_.shape == (192, 4)
    out = linear_probe(xtr, str_, xte, ste)
    assert out["r2_per_target"][0] > 0.999 and out["r2_per_target"][1] > 0.999
    assert max(out["r2_per_target"][2:]) < 0.1
    clips, cstate = embed_dataset(lambda f: f.flatten(2).mean(-1), tr_src, steps=1, batch_size=8, frame=None)
    assert clips.shape == (8, 4) and cstate.shape == (8, 4, 4)


def test_probe_argument_errors():
    x, y = torch.randn(10, 3), torch.randn(10, 2)
    with pytest.raises(ShapeError):
        linear_probe(x, y[:5], x, y)
    with pytest.raises(ShapeError):
        linear_probe(x, y, torch.randn(10, 4), y)
    with pytest.raises(DataError, match="NaN"):
        linear_probe(x * float("nan"), y, x, y)
    with pytest.raises(DataError, match="constant"):
        linear_probe(x, torch.ones(10, 2), x, y)
    with pytest.raises(ShapeError):
        embed_dataset(lambda f: f.flatten(), BouncingBalls(), steps=1, batch_size=4)
