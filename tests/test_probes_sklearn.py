"""The linear probes are scikit-learn's, and scikit-learn is a core dependency (not a test extra)."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import numpy as np
import pytest
import torch

from jepalab.errors import DataError
from jepalab.eval.probes import linear_classifier, linear_probe

ROOT = Path(__file__).resolve().parent.parent


def _core_dependencies() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.split(r"[<>=!~ ;\[]", d.strip())[0].lower() for d in deps]


def test_scikit_learn_is_a_core_dependency() -> None:
    """`jepalab eval` fits its probes with scikit-learn, so a plain `pip install jepalab` needs it."""
    assert "scikit-learn" in _core_dependencies()


def _leave_one_out_alpha(x: np.ndarray, y: np.ndarray, alphas: list[float]) -> float:
    """``x`` (N, D), ``y`` (N, K). Brute force: refit ridge (unpenalized intercept) without each row, score that row."""
    n = x.shape[0]
    errors = []
    for a in alphas:
        err = 0.0
        for i in range(n):
            keep = np.arange(n) != i
            xr, yr = x[keep], y[keep]
            mx, my = xr.mean(0), yr.mean(0)
            xc = xr - mx
            w = np.linalg.solve(xc.T @ xc + a * n * np.eye(x.shape[1]), xc.T @ (yr - my))
            err += float((((x[i] - mx) @ w + my - y[i]) ** 2).sum())
        errors.append(err)
    return alphas[int(np.argmin(errors))]


def test_ridge_search_picks_the_leave_one_out_alpha() -> None:
    """On a small heavy-tailed set generalized cross-validation (the former hand-written search)
    and exact leave-one-out disagree; the probe follows leave-one-out, i.e. scikit-learn's RidgeCV."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 20, generator=g, dtype=torch.float64) ** 3
    y = x[:, :2] @ torch.randn(2, 1, generator=g, dtype=torch.float64) + 2 * torch.randn(30, 1, generator=g,
                                                                                          dtype=torch.float64)
    grid = [0.01, 0.0316, 0.1, 0.316, 1.0, 3.16]
    xs = ((x - x.mean(0)) / x.std(0, unbiased=False)).numpy()
    ys = ((y - y.mean(0)) / y.std(0, unbiased=False)).numpy()
    want = _leave_one_out_alpha(xs, ys, grid)
    out = linear_probe(x, y, x, y, ridge=grid)
    assert out["ridge"] == pytest.approx(want)
    with pytest.raises(DataError, match="alphas > 0"):
        linear_probe(x, y, x, y, ridge=[0.0, 1.0])


def test_linear_classifier_penalty_matches_its_definition() -> None:
    """weight_decay is the penalty on the *mean* cross-entropy: a strong one flattens the logits to
    the class prior, a weak one separates the clusters; one class in training predicts that class."""
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 8, generator=g) * 2
    ytr = torch.cat([torch.zeros(300), torch.ones(100), torch.full((100,), 2)]).long()
    yte = torch.randint(0, 3, (300,), generator=g)
    xtr = centres[ytr] + torch.randn(500, 8, generator=g)
    xte = centres[yte] + torch.randn(300, 8, generator=g)
    assert linear_classifier(xtr, ytr, xte, yte, weight_decay=1e-4) > 0.9
    majority = float((yte == 0).double().mean())
    assert linear_classifier(xtr, ytr, xte, yte, weight_decay=1e3) == pytest.approx(majority)
    assert linear_classifier(xtr[:300], ytr[:300], xte, yte) == pytest.approx(majority)
