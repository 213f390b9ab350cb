"""Collapse monitors: collapsed and rank-1 batches are flagged, Gaussian ones are not."""

from __future__ import annotations

import math

import pytest
import torch

from jepalab.errors import ShapeError
from jepalab.eval.monitors import collapse_stats, effective_rank, embedding_std

torch.set_num_threads(1)


def test_gaussian_not_flagged() -> None:
    z = torch.randn(512, 32, generator=torch.Generator().manual_seed(0))
    s = collapse_stats(z)
    assert not s["collapsed"]
    assert s["rank"] > 0.9 * 32
    assert s["std"] == pytest.approx(1 / math.sqrt(32), rel=0.1)


def test_fully_collapsed_flagged() -> None:
    z = torch.randn(1, 32).expand(256, 32) + 1e-6 * torch.randn(256, 32)
    s = collapse_stats(z)
    assert s["collapsed"] and s["std"] < 1e-4 and s["rank"] < 1.5


def test_rank_one_flagged_even_with_spread() -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(1, 32, generator=g)
    z = torch.randn(256, 1, generator=g) * v  # signs vary -> std is not small, rank is 1
    s = collapse_stats(z)
    assert s["std"] > 0.1 / math.sqrt(32)
    assert s["collapsed"] and s["rank"] == pytest.approx(1.0, abs=0.05)
    # A shared offset added to a rank-1 spread is still flagged (centered rank ~1) ...
    assert collapse_stats(z + 5 * torch.randn(1, 32, generator=g))["collapsed"]


def test_offset_does_not_hide_healthy_variation() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(512, 32, generator=g) + 2.0 * torch.randn(1, 32, generator=g)
    s = collapse_stats(z)
    assert s["rank"] < s["rank_centered"]  # the offset lowers RankMe ...
    assert s["rank_centered"] > 25 and not s["collapsed"]  # ... but not the centered rank
    assert effective_rank(torch.ones(8, 4), center=True) == 0.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_effective_rank_of_rank_k(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    # Orthonormal factors give equal singular values -> effective rank exactly k.
    q1, _ = torch.linalg.qr(torch.randn(400, k, generator=g))
    q2, _ = torch.linalg.qr(torch.randn(64, k, generator=g))
    assert effective_rank(q1 @ q2.T) == pytest.approx(k, rel=1e-3)
    # Gaussian factors: unequal singular values, still close to k and never above it.
    z = torch.randn(2000, k, generator=g) @ torch.randn(k, 64, generator=g)
    r = effective_rank(z)
    assert 0.75 * k <= r <= k + 1e-3


def test_partial_collapse_lowers_std_and_rank() -> None:
    g = torch.Generator().manual_seed(2)
    full = torch.randn(512, 32, generator=g)
    partial = full.clone()
    partial[:, 4:] = 0.01 * partial[:, 4:]
    assert effective_rank(partial) < 0.5 * effective_rank(full)
    assert embedding_std(torch.zeros(4, 3) + 1.0) == 0.0


def test_bad_shapes() -> None:
    with pytest.raises(ShapeError):
        effective_rank(torch.randn(5))
    with pytest.raises(ShapeError):
        collapse_stats(torch.randn(1, 5))
    # tokens (B, N, D) are flattened
    assert collapse_stats(torch.randn(4, 16, 8))["rank"] > 6
