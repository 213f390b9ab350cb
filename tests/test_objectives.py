"""Objectives against hand-computed values (numpy loops, not the library's own code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.objectives import BarlowTwinsLoss, EMATeacher, SIGReg, VICRegLoss, prediction_loss
from jepalab.objectives.sigreg import expected_gaussian_value

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- SIGReg
def test_sigreg_gaussian_is_about_one() -> None:
    # Expectation for Gaussian input is sqrt(2pi) - sqrt(2pi/3) ~ 1.05 on [-3, 3]; the mean over
    # 256 projections of one batch has a std of ~0.07 (measured), so averaging 4 batches gives
    # ~0.035 and [0.85, 1.25] is a > 4-sigma band that still excludes non-Gaussian data (below).
    sig = SIGReg()
    g = torch.Generator().manual_seed(0)
    vals = [float(sig(torch.randn(2048, 32, generator=g), step=i)) for i in range(4)]
    assert 0.85 < np.mean(vals) < 1.25, vals
    assert abs(expected_gaussian_value(3.0) - 1.0527) < 1e-3


def test_sigreg_detects_non_gaussian_and_collapse() -> None:
    sig = SIGReg()
    g = torch.Generator().manual_seed(1)
    collapsed = torch.randn(1, 32, generator=g).expand(256, 32)
    assert float(sig(collapsed, step=0)) > 50.0
    assert float(sig(torch.zeros(256, 32), step=0)) > 50.0  # 0.41 * N ~ 105
    # Unit-variance uniform data is not Gaussian: distinguishable at large N in low dimension
    # (in high dimension random projections of a cube are near-Gaussian by the CLT).
    uniform = (torch.rand(4096, 2, generator=g) - 0.5) * math.sqrt(12)
    assert float(sig(uniform, step=0)) > 10.0
    # Scaled Gaussians are not N(0, 1) either.
    assert float(sig(3 * torch.randn(2048, 32, generator=g), step=0)) > 20.0


def test_sigreg_gradient_flows_and_reduces_statistic() -> None:
    sig = SIGReg(num_proj=64)
    z = torch.zeros(128, 16).uniform_(-0.1, 0.1).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    first = None
    for step in range(30):
        loss = sig(z, step=step)
        opt.zero_grad()
        loss.backward()
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
        first = first if first is not None else float(loss.detach())
        opt.step()
    assert float(sig(z.detach(), step=99)) < 0.5 * first


def test_sigreg_projections_redrawn_and_reproducible() -> None:
    sig = SIGReg(num_proj=8)
    a0, a0b, a1 = sig.projections(16, step=0), sig.projections(16, step=0), sig.projections(16, step=1)
    assert torch.equal(a0, a0b) and not torch.allclose(a0, a1)
    assert torch.allclose(a0.norm(dim=0), torch.ones(8), atol=1e-6)
    z = torch.randn(64, 16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert float(sig(z, generator=g1)) == float(sig(z, generator=g2))


def test_sigreg_matches_numpy_loop() -> None:
    sig = SIGReg(num_proj=3, num_points=5, t_max=2.0)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64)
    a = sig.projections(4, step=2).double().numpy()
    x = z.numpy() @ a
    t = np.linspace(0, 2.0, 5)
    stats = []
    for p in range(3):
        f = []
        for tk in t:
            re = np.mean(np.cos(tk * x[:, p]))
            im = np.mean(np.sin(tk * x[:, p]))
            f.append(((re - np.exp(-tk**2 / 2)) ** 2 + im**2) * np.exp(-tk**2 / 2))
        integral = 2 * np.trapezoid(f, t) if hasattr(np, "trapezoid") else 2 * np.trapz(f, t)
        stats.append(7 * integral)
    assert float(sig(z, step=2)) == pytest.approx(np.mean(stats), rel=1e-5)


def test_losses_stay_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    sig = SIGReg(num_proj=32)
    ref = [float(sig(z1, step=0)), float(VICRegLoss()(z1, z2)["loss"]), float(BarlowTwinsLoss()(z1, z2)["loss"])]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = [sig(z1, step=0), VICRegLoss()(z1, z2)["loss"], BarlowTwinsLoss()(z1, z2)["loss"]]
    assert all(v.dtype == torch.float32 for v in got)
    assert [float(v) for v in got] == pytest.approx(ref, rel=1e-5)


def test_sigreg_bad_input() -> None:
    with pytest.raises(ShapeError):
        SIGReg()(torch.randn(2, 3, 4))
    with pytest.raises(ConfigError):
        SIGReg(num_points=1)


# ----------------------------------------------------------------------------- VICReg / Barlow
def _np_std(col: np.ndarray, ddof: int) -> float:
    m = sum(col) / len(col)
    return math.sqrt(sum((c - m) ** 2 for c in col) / (len(col) - ddof))


def test_vicreg_terms_by_hand() -> None:
    z1 = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [2.0, 0.5, 1.0]])
    z2 = np.array([[0.5, 0.0, 2.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [3.0, 0.5, 0.0]])
    n, d = z1.shape
    inv = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var(z: np.ndarray) -> float:
        return sum(max(0.0, 1 - math.sqrt(_np_std(z[:, j], 1) ** 2 + 1e-4)) for j in range(d)) / d

    def cov(z: np.ndarray) -> float:
        m = [sum(z[:, j]) / n for j in range(d)]
        tot = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    c = sum((z[i, a] - m[a]) * (z[i, b] - m[b]) for i in range(n)) / (n - 1)
                    tot += c * c
        return tot / d

    out = VICRegLoss()(torch.tensor(z1), torch.tensor(z2))
    assert float(out["invariance"]) == pytest.approx(inv, rel=1e-6)
    assert float(out["variance"]) == pytest.approx((var(z1) + var(z2)) / 2, rel=1e-5)
    assert float(out["covariance"]) == pytest.approx(cov(z1) + cov(z2), rel=1e-5)
    total = 25 * inv + 25 * (var(z1) + var(z2)) / 2 + (cov(z1) + cov(z2))
    assert float(out["loss"]) == pytest.approx(total, rel=1e-5)


def test_vicreg_variance_zero_when_spread() -> None:
    z = torch.randn(512, 8) * 3
    out = VICRegLoss()(z, z)
    assert float(out["variance"]) == 0.0 and float(out["invariance"]) == 0.0


def test_barlow_by_hand() -> None:
    z1 = np.array([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0], [1.0, 1.0]])
    z2 = np.array([[2.0, 1.0], [0.0, 0.0], [2.0, 1.0], [1.0, 3.0]])
    n, d = z1.shape

    def stdz(z: np.ndarray) -> np.ndarray:
        out = np.zeros_like(z)
        for j in range(d):
            m = sum(z[:, j]) / n
            s = math.sqrt(_np_std(z[:, j], 0) ** 2 + 1e-5)
            for i in range(n):
                out[i, j] = (z[i, j] - m) / s
        return out

    a, b = stdz(z1), stdz(z2)
    c = [[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    out = BarlowTwinsLoss()(torch.tensor(z1), torch.tensor(z2))
    assert float(out["on_diag"]) == pytest.approx(on, rel=1e-5)
    assert float(out["off_diag"]) == pytest.approx(off, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(on + 5e-3 * off, rel=1e-5)


def test_pair_losses_reject_bad_shapes() -> None:
    with pytest.raises(ShapeError):
        VICRegLoss()(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ShapeError):
        BarlowTwinsLoss()(torch.randn(1, 3), torch.randn(1, 3))


# ----------------------------------------------------------------------------- prediction
def test_prediction_loss_kinds() -> None:
    p = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(prediction_loss(p, t, "l1")) == pytest.approx((1 + 2 + 0 + 2) / 4)
    assert float(prediction_loss(p, t, "l2")) == pytest.approx((1 + 4 + 0 + 4) / 4)
    assert float(prediction_loss(p, t, "smooth_l1")) == pytest.approx((0.5 + 1.5 + 0 + 1.5) / 4)
    # cos([0,2],[1,0]) = 0 ; cos([1,-1],[1,1]) = 0
    assert float(prediction_loss(p, t, "cosine")) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        prediction_loss(p, t, "l3")
    with pytest.raises(ShapeError):
        prediction_loss(p, t[:1], "l1")


# ----------------------------------------------------------------------------- EMA
def test_ema_schedule_and_no_grad() -> None:
    student = nn.Linear(3, 2)
    teacher = EMATeacher(student, momentum=(0.996, 1.0), total_steps=100)
    assert teacher.momentum_at(0) == pytest.approx(0.996)
    assert teacher.momentum_at(50) == pytest.approx(0.998)
    assert teacher.momentum_at(100) == pytest.approx(1.0)
    assert teacher.momentum_at(500) == pytest.approx(1.0)
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(5, 3, requires_grad=True)
    out = teacher(x)
    assert not out.requires_grad
    (student(x).sum() + out.sum()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.weight.grad is not None


def test_ema_update_formula_exact() -> None:
    torch.manual_seed(0)
    student = nn.Linear(3, 2)
    teacher = EMATeacher(student, total_steps=10)
    t0 = teacher.module.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    s = student.weight.detach().clone()
    m = teacher.update(student, step=5)
    assert m == pytest.approx(0.998)
    assert torch.allclose(teacher.module.weight, m * t0 + (1 - m) * s, atol=0, rtol=1e-6)
    teacher.update(student, step=10)  # momentum 1 -> frozen
    assert torch.allclose(teacher.module.weight, m * t0 + (1 - m) * s, atol=0, rtol=1e-6)


def test_ema_in_state_dict_and_validation() -> None:
    holder = nn.Module()
    holder.student = nn.Linear(2, 2)
    holder.teacher = EMATeacher(holder.student, total_steps=5)
    assert "teacher.module.weight" in holder.state_dict()
    with pytest.raises(ConfigError):
        EMATeacher(nn.Linear(2, 2), momentum=(0.9, 1.2), total_steps=5)
    with pytest.raises(ConfigError):
        EMATeacher(nn.Linear(2, 2), total_steps=0)
