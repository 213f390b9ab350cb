"""Mask generators: sizes, ranges, disjointness, tubes, determinism under a generator."""

from __future__ import annotations

import pytest
import torch

from jepalab.errors import ConfigError, ShapeError
from jepalab.masks import FutureFrameMask, Masks, MultiBlockMask, RandomMask, TubeMask, apply_masks, block_shapes

torch.set_num_threads(1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bbox(idx: torch.Tensor, w: int) -> tuple[int, int]:
    rows, cols = idx // w, idx % w
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("grid", [(8, 8), (14, 14), (10, 16)])
def test_multiblock_shapes_ranges_disjoint(grid: tuple[int, int]) -> None:
    h, w = grid
    gen = MultiBlockMask(grid, min_context=10)
    for seed in range(5):
        m = gen(6, _gen(seed))
        assert isinstance(m, Masks) and m.context.dtype == torch.long
        assert m.context.shape[0] == 6 and len(m.targets) == 4
        assert m.context.shape[1] >= 10
        for t in m.targets:
            assert t.shape[0] == 6
            frac = t.shape[1] / (h * w)
            assert 0.15 <= frac <= 0.2, frac
        for b in range(6):
            ctx = set(m.context[b].tolist())
            assert len(ctx) == m.context.shape[1], "context indices must be unique"
            for t in m.targets:
                # Each target is a full rectangle with the configured aspect ratio.
                bh, bw = _bbox(t[b], w)
                assert bh * bw == t.shape[1]
                assert 0.75 <= bh / bw <= 1.5
                assert ctx.isdisjoint(t[b].tolist())
            assert (m.context[b][1:] > m.context[b][:-1]).all(), "indices are sorted"


def test_multiblock_deterministic_given_generator() -> None:
    gen = MultiBlockMask((8, 8))
    a, b, c = gen(4, _gen(1)), gen(4, _gen(1)), gen(4, _gen(2))
    assert torch.equal(a.context, b.context)
    assert all(torch.equal(x, y) for x, y in zip(a.targets, b.targets))
    different = not torch.equal(a.context, c.context) or any(
        x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a.targets, c.targets)
    )
    assert different


def test_multiblock_errors() -> None:
    with pytest.raises(ConfigError):
        MultiBlockMask((8, 8), target_scale=(0.3, 0.2))
    with pytest.raises(ConfigError):
        MultiBlockMask((8, 8), min_context=64)
    # Targets covering nearly everything cannot leave 40 context patches: a clear error, no hang.
    with pytest.raises(ConfigError):
        MultiBlockMask((8, 8), num_targets=8, target_scale=(0.4, 0.5), min_context=40)(2, _gen(0))
    with pytest.raises(ConfigError):
        MultiBlockMask((8, 8))(0, _gen(0))


def test_block_shapes_respect_ranges() -> None:
    shapes = block_shapes(8, 8, (0.15, 0.2), (0.75, 1.5))
    assert set(shapes) == {(3, 4), (4, 3)}


@pytest.mark.parametrize("blocks", [((8, 0.15),), ((2, 0.7),)])
def test_tube_masks_span_all_frames(blocks: tuple[tuple[int, float], ...]) -> None:
    t, h, w = 4, 8, 8
    gen = TubeMask((t, h, w), blocks=blocks)
    m = gen(5, _gen(0))
    assert len(m.targets) == 1
    tgt = m.targets[0]
    assert m.context.shape[1] >= 1 and tgt.shape[1] >= 1
    for b in range(5):
        ctx, tg = set(m.context[b].tolist()), set(tgt[b].tolist())
        assert ctx.isdisjoint(tg)
    # Untrimmed sample structure: the spatial pattern of targets is identical in every frame.
    one = gen(1, _gen(3))
    tg = one.targets[0][0]
    frames = [set((tg[tg // (h * w) == f] % (h * w)).tolist()) for f in range(t)]
    assert all(fr == frames[0] for fr in frames) and len(frames[0]) > 0
    ctx = one.context[0]
    assert len(frames[0]) * t + ctx.numel() == t * h * w, "context is the complement of the tubes"


def test_tube_masks_scale_and_determinism() -> None:
    small, large = TubeMask((2, 16, 16), ((1, 0.15),)), TubeMask((2, 16, 16), ((1, 0.7),))
    s = small(1, _gen(0)).targets[0].shape[1] / (2 * 256)
    l_ = large(1, _gen(0)).targets[0].shape[1] / (2 * 256)
    assert 0.1 < s < 0.2 and 0.6 < l_ < 0.8
    gen = TubeMask((4, 8, 8))
    assert torch.equal(gen(3, _gen(5)).context, gen(3, _gen(5)).context)
    assert not torch.equal(gen(3, _gen(5)).targets[0], gen(3, _gen(6)).targets[0])


def test_random_and_future_masks() -> None:
    m = RandomMask(20, ratio=0.75)(3, _gen(0))
    assert m.context.shape == (3, 5) and m.targets[0].shape == (3, 15)
    for b in range(3):
        assert sorted(m.context[b].tolist() + m.targets[0][b].tolist()) == list(range(20))
    assert torch.equal(RandomMask(20)(3, _gen(0)).context, m.context)
    assert not torch.equal(RandomMask(20)(3, _gen(1)).context, m.context)
    f = FutureFrameMask((3, 2, 2), num_future=1)(2, _gen(0))
    assert f.context.tolist() == [list(range(8))] * 2
    assert f.targets[0].tolist() == [list(range(8, 12))] * 2
    with pytest.raises(ConfigError):
        FutureFrameMask((3, 2, 2), num_future=3)


def test_apply_masks_gathers_and_validates() -> None:
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    idx = torch.tensor([[4, 0], [1, 1]])
    out = apply_masks(x, idx)
    assert out.shape == (2, 2, 3)
    assert torch.equal(out[0, 0], x[0, 4]) and torch.equal(out[1, 1], x[1, 1])
    with pytest.raises(ShapeError):
        apply_masks(x, idx.float())
    with pytest.raises(ShapeError):
        apply_masks(x[0], idx)
