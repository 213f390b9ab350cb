"""Selective decoding: decodes exactly at the change points of a piecewise-constant stream."""

from __future__ import annotations

import torch

from jepalab.eval.selective import (calibrate_threshold, event_recall, fixed_rate_for_recall, fixed_rate_recall,
                                     selective_points)


def _stream() -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(0)
    lengths = [13, 40, 7, 25, 31]
    codes = torch.nn.functional.normalize(torch.randn(len(lengths), 32, generator=g), dim=-1)
    emb = torch.cat([c.expand(n, -1) for c, n in zip(codes, lengths)])
    cuts = torch.tensor(lengths).cumsum(0)[:-1].tolist()
    return emb + 1e-4 * torch.randn(emb.shape, generator=g), cuts


def test_selective_decoding_fires_exactly_at_change_points() -> None:
    emb, cuts = _stream()
    assert selective_points(emb, 0.2) == [0] + cuts
    assert event_recall(selective_points(emb, 0.2), cuts, tolerance=0) == 1.0


def test_slow_drift_triggers_once_it_adds_up() -> None:
    angles = torch.linspace(0, 1.0, 101)
    emb = torch.stack([angles.cos(), angles.sin()], 1)  # 0.01 rad per step, never a jump
    pts = selective_points(emb, 0.02)  # cos distance 0.02 ~ 0.2 rad
    assert 3 <= len(pts) <= 7


def test_fixed_rate_needs_more_decodes_for_equal_recall() -> None:
    emb, cuts = _stream()
    th = calibrate_threshold(emb, cuts, tolerance=3, recall=1.0)
    sel = selective_points(emb, th)
    k, n_fixed = fixed_rate_for_recall(len(emb), cuts, tolerance=3, recall=1.0)
    assert event_recall(list(range(0, len(emb), k)), cuts, 3) == 1.0
    assert len(sel) == len(cuts) + 1 and n_fixed > len(sel)
    assert event_recall([0], [], 3) == 1.0


def test_fixed_rate_is_not_credited_with_a_lucky_alignment() -> None:
    """Events every 20 frames, decodes must land on the event itself: decoding every 20 frames
    from frame 0 hits all of them only because its start happens to line up; over start offsets
    it hits 1 in 20. Only decoding every frame reaches full recall whatever the offset."""
    events = list(range(20, 400, 20))
    assert event_recall(list(range(0, 400, 20)), events, tolerance=0) == 1.0
    assert fixed_rate_recall(400, events, tolerance=0, every=20) == 0.05
    assert fixed_rate_for_recall(400, events, tolerance=0, recall=1.0) == (1, 400.0)
    k, decodes = fixed_rate_for_recall(400, events, tolerance=4, recall=1.0)
    assert k == 5 and decodes == 80.0  # a window of 5 frames after each event: every 5th frame
