"""Encoders, blocks, positions and the masked predictor: shapes, keep-selection, errors."""

from __future__ import annotations

import pytest
import torch

from jepalab.errors import ShapeError
from jepalab.masks import apply_masks
from jepalab.nn import Block, ConvEncoder, MaskedPredictor, Transformer, ViT, sincos_2d, sincos_3d

torch.set_num_threads(1)


def test_sincos_shapes_and_distinct_positions() -> None:
    p2 = sincos_2d(4, 5, 32)
    assert p2.shape == (20, 32)
    p3 = sincos_3d(3, 4, 5, 48)
    assert p3.shape == (60, 48)
    # Every position gets its own code.
    assert torch.cdist(p3, p3).add(torch.eye(60) * 1e3).min() > 1e-3
    # Row-major layout: token i*W + j of a 2D grid differs from its transpose neighbour.
    assert not torch.allclose(p2[1], p2[5])
    with pytest.raises(ShapeError):
        sincos_2d(4, 4, 31)


def test_block_keeps_shape_and_accepts_attention_mask() -> None:
    torch.manual_seed(0)
    blk = Block(32, 4)
    x = torch.randn(2, 7, 32)
    assert blk(x).shape == (2, 7, 32)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    y = blk(x, causal)
    # With a causal mask the first token cannot see the others: changing token 6 leaves it unchanged.
    x2 = x.clone()
    x2[:, 6] += torch.randn(32)  # not a constant: LayerNorm would remove that
    assert torch.allclose(blk(x2, causal)[:, 0], y[:, 0], atol=1e-6)
    assert not torch.allclose(blk(x2)[:, 0], blk(x)[:, 0], atol=1e-6)
    with pytest.raises(ShapeError):
        Transformer(32, 1, 4)(torch.randn(2, 7, 16))


def test_vit_2d_shapes_pool_and_keep_positions() -> None:
    torch.manual_seed(0)
    vit = ViT(img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2)
    assert vit.grid == (4, 4) and vit.num_patches == 16 and vit.embed_dim == 32
    x = torch.rand(3, 3, 16, 16)
    tokens = vit(x)
    assert tokens.shape == (3, 16, 32)
    # Final LayerNorm: each token has ~zero mean / unit variance over channels.
    assert tokens.mean(-1).abs().max() < 1e-4
    assert vit.pool(tokens).shape == (3, 32)
    keep = torch.tensor([[0, 5, 15], [1, 2, 3], [15, 14, 13]])
    assert vit(x, keep).shape == (3, 3, 32)
    # The kept tokens carry their own patches and positions: the pre-transformer tokens equal a
    # gather from the full patchified input.
    full = vit.patchify(x)
    assert torch.equal(apply_masks(full, keep)[1, 0], full[1, 1])
    # With depth 0 the encoder is patch-embed + pos + norm, so selected tokens match exactly.
    flat = ViT(16, 4, 3, 32, depth=0, num_heads=2)
    assert torch.allclose(flat(x, keep), apply_masks(flat(x), keep), atol=1e-6)
    # Swapping which position a token claims changes its output (positions are used).
    assert not torch.allclose(flat(x, keep)[0, 0], flat(x, keep[:, [1, 0, 2]])[0, 0])


def test_vit_3d_tubelets() -> None:
    torch.manual_seed(0)
    vit = ViT(img_size=16, patch_size=8, in_chans=1, embed_dim=48, depth=1, num_heads=3, num_frames=4, tubelet=2)
    assert vit.grid == (2, 2, 2) and vit.num_patches == 8
    clip = torch.rand(2, 1, 4, 16, 16)
    assert vit(clip).shape == (2, 8, 48)
    assert vit(clip, torch.tensor([[0, 7], [3, 4]])).shape == (2, 2, 48)
    # Tokens are time-major: changing only the last two frames changes only tokens 4..7 before mixing.
    clip2 = clip.clone()
    clip2[:, :, 2:] += 1.0
    diff = (vit.patchify(clip2) - vit.patchify(clip)).abs().sum(-1)
    assert (diff[:, :4] < 1e-6).all() and (diff[:, 4:] > 1e-3).all()


@pytest.mark.parametrize(
    "bad",
    [torch.rand(2, 3, 15, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 3, 2, 16, 16), torch.zeros(2, 3, 16, 16, dtype=torch.long)],
)
def test_vit_rejects_wrong_input(bad: torch.Tensor) -> None:
    vit = ViT(16, 4, 3, 32, depth=1, num_heads=2)
    with pytest.raises(ShapeError):
        vit(bad)


def test_vit_rejects_bad_keep() -> None:
    vit = ViT(16, 4, 3, 32, depth=1, num_heads=2)
    x = torch.rand(2, 3, 16, 16)
    for keep in (torch.tensor([[0, 16], [1, 2]]), torch.tensor([0, 1]), torch.tensor([[0.0, 1.0], [1.0, 2.0]]), torch.tensor([[0, 1]])):
        with pytest.raises(ShapeError):
            vit(x, keep)
    with pytest.raises(ShapeError):
        ViT(img_size=15, patch_size=4)


def test_conv_encoder_same_interface_and_hides_dropped_cells() -> None:
    torch.manual_seed(0)
    enc = ConvEncoder(img_size=16, in_chans=3, embed_dim=32, width=8, patch_size=4)
    assert enc.grid == (4, 4) and enc.num_patches == 16
    x = torch.rand(2, 3, 16, 16)
    assert enc(x).shape == (2, 16, 32)
    keep = torch.tensor([[0, 1, 2], [5, 6, 7]])
    out = enc(x, keep)
    assert out.shape == (2, 3, 32) and enc.pool(out).shape == (2, 32)
    # Pixels of a dropped cell (cell 15 = bottom-right) cannot influence the context tokens.
    x2 = x.clone()
    x2[:, :, 12:, 12:] = 0.0
    assert torch.allclose(enc(x2, keep), out, atol=1e-6)
    assert not torch.allclose(enc(x2), enc(x), atol=1e-6)
    video = ConvEncoder(img_size=16, in_chans=1, embed_dim=24, width=8, num_frames=3, patch_size=8)
    assert video.grid == (3, 2, 2)
    assert video(torch.rand(2, 1, 3, 16, 16)).shape == (2, 12, 24)
    with pytest.raises(ShapeError):
        enc(torch.rand(2, 3, 32, 32))
    with pytest.raises(ShapeError):
        ConvEncoder(img_size=16, patch_size=6)


def test_predictor_shapes_and_errors() -> None:
    torch.manual_seed(0)
    pred = MaskedPredictor(16, 32, pred_dim=16, depth=2, num_heads=2, pos=sincos_2d(4, 4, 16))
    ctx = torch.randn(2, 5, 32)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    tgt_idx = torch.tensor([[8, 9, 15], [0, 1, 2]])
    assert pred(ctx, ctx_idx, tgt_idx).shape == (2, 3, 32)
    with pytest.raises(ShapeError):
        pred(torch.randn(2, 5, 31), ctx_idx, tgt_idx)
    with pytest.raises(ShapeError):
        pred(ctx, ctx_idx[:, :4], tgt_idx)
    with pytest.raises(ShapeError):
        pred(ctx, ctx_idx, tgt_idx + 10)
    with pytest.raises(ShapeError):
        MaskedPredictor(16, 32, pred_dim=16, pos=sincos_2d(4, 4, 32))


def test_predictor_slots_differ_only_by_position() -> None:
    torch.manual_seed(0)
    pred = MaskedPredictor(16, 32, pred_dim=16, depth=1, num_heads=2, pos=sincos_2d(4, 4, 16))
    ctx = torch.randn(1, 4, 32)
    ctx_idx = torch.tensor([[0, 1, 2, 3]])
    out = pred(ctx, ctx_idx, torch.tensor([[9, 9, 12]]))
    # One shared mask token: two slots asking for the same position get the same prediction.
    assert torch.allclose(out[0, 0], out[0, 1], atol=1e-6)
    assert not torch.allclose(out[0, 0], out[0, 2], atol=1e-4)
    assert pred.mask_token.shape == (1, 1, 16)
