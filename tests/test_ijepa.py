"""I-JEPA recipe: wiring of masks -> predictor -> loss, EMA teacher, training and collapse."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.eval.monitors import collapse_stats
from jepalab.masks import Masks, apply_masks
from jepalab.recipes import get_recipe
from jepalab.recipes.ijepa import IJEPA, IJEPAConfig

torch.set_num_threads(1)


def tiny(**kw: object) -> IJEPAConfig:
    base = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, heads=2, pred_dim=32, pred_depth=2, pred_heads=2)
    base.update(kw)
    return IJEPAConfig(**base)  # type: ignore[arg-type]


def source(seed: int = 0) -> BouncingBalls:
    return BouncingBalls(BouncingConfig(img_size=32, channels=3, frames=2, num_balls=3, radius=5.0, seed=seed))


def train(model: IJEPA, steps: int, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Plain AdamW loop, seeded per step like the trainer; returns the step outputs."""
    src = source()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3, weight_decay=0.05)
    outs = []
    for step in range(steps):
        torch.manual_seed(10_000 + step)
        out = model.training_step(src.batch(step, batch_size), step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.after_optimizer_step(step)
        outs.append({k: v.detach() for k, v in out.items()})
    return outs


def test_registry_and_config_errors() -> None:
    assert get_recipe("ijepa") is IJEPA
    for bad in (dict(encoder="resnet"), dict(anti_collapse="vicreg"), dict(loss="huber"), dict(pred_heads=5)):
        with pytest.raises(ConfigError):
            IJEPA(tiny(**bad))


def test_loss_uses_predictor_at_target_positions_against_teacher_tokens() -> None:
    """Recompute the loss by hand from the masks the recipe drew: same predictor positions, same
    gathered teacher targets, mean over the 4 blocks."""
    torch.manual_seed(0)
    model = IJEPA(tiny())
    seen: list[Masks] = []
    gen = model.mask_gen
    model.mask_gen = SimpleNamespace(draw=lambda d: seen.append(gen.draw(d)) or seen[-1])  # type: ignore[assignment,func-returns-value]
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.predictor.register_forward_pre_hook(lambda mod, args: calls.append((args[1], args[2])))
    batch = source().batch(0, 4)
    torch.manual_seed(1)
    out = model.training_step(batch, 0)
    masks = seen[0]
    assert len(calls) == 1  # the 4 equal-size blocks run as one batched predictor pass
    ctx_idx, tgt_idx = calls[0]
    assert torch.equal(tgt_idx, torch.cat(masks.targets, 0))
    assert torch.equal(ctx_idx, masks.context.repeat(4, 1))

    x = batch["frames"].reshape(-1, 3, 32, 32)
    with torch.no_grad():
        h = model.teacher(x)
        target = F.layer_norm(h, h.shape[-1:])
        ctx = model.encoder(x, keep=masks.context)
        losses = [F.mse_loss(model.predictor(ctx, masks.context, t), apply_masks(target, t)) for t in masks.targets]
    assert torch.allclose(out["loss"].detach(), torch.stack(losses).mean(), atol=1e-5)
    # Predictions depend on where the targets are: shifting the asked positions changes them.
    t0 = masks.targets[0]
    with torch.no_grad():
        moved = model.predictor(ctx, masks.context, (t0 + 1) % model.encoder.num_patches)
        same = model.predictor(ctx, masks.context, t0)
    assert not torch.allclose(moved, same, atol=1e-4)
    assert out["embeddings"].shape == (8, 64) and not out["embeddings"].requires_grad
    assert abs(float(out["ema_momentum"]) - 0.996) < 1e-6


def test_input_validation() -> None:
    model = IJEPA(tiny())
    with pytest.raises(DataError):
        model.training_step({"state": torch.zeros(2, 4)}, 0)
    with pytest.raises(ShapeError):
        model.training_step({"images": torch.rand(2, 3, 16, 16)}, 0)
    assert model.encode(torch.rand(3, 3, 32, 32)).shape == (3, 64)
    assert model.encode(torch.rand(3, 2, 3, 32, 32)).shape == (3, 64)


def test_tiny_run_lowers_loss_ema_teacher_gets_no_gradient_and_no_collapse() -> None:
    torch.manual_seed(0)
    model = IJEPA(tiny(total_steps=80))
    teacher_params = list(model.teacher.parameters())
    assert all(not p.requires_grad for p in teacher_params)
    trainable = {id(p) for p in model.trainable_parameters()}
    assert not trainable & {id(p) for p in teacher_params}
    before = [p.clone() for p in teacher_params]
    outs = train(model, 80)
    first = torch.stack([o["loss"] for o in outs[:10]]).mean()
    last = torch.stack([o["loss"] for o in outs[-10:]]).mean()
    assert last < 0.6 * first, (float(first), float(last))
    assert all(p.grad is None for p in teacher_params)
    # The EMA moved the teacher, but only part of the way (momentum ~0.996).
    moved = sum(float((p - q).abs().sum()) for p, q in zip(teacher_params, before))
    assert moved > 0
    gap_student = sum(float((p.detach() - q).abs().sum()) for p, q in zip(model.encoder.parameters(), before))
    assert moved < gap_student
    stats = collapse_stats(outs[-1]["embeddings"])
    assert not stats["collapsed"], stats
    with torch.no_grad():
        held_out = model.encode(source(seed=1).batch(0, 32)["frames"][:, 0])
    assert not collapse_stats(held_out)["collapsed"]


def test_without_stop_gradient_it_collapses_and_the_monitor_flags_it() -> None:
    torch.manual_seed(0)
    model = IJEPA(tiny(anti_collapse="none"))
    assert model.teacher is None
    outs = train(model, 40)
    assert float(outs[-1]["loss"]) < 0.05  # trivially solved...
    stats = collapse_stats(outs[-1]["embeddings"])
    assert stats["collapsed"], stats  # ...because every image now maps to the same embedding
    assert "ema_momentum" not in outs[-1]


def test_conv_encoder_variant_trains() -> None:
    torch.manual_seed(0)
    model = IJEPA(tiny(encoder="conv", width=8, total_steps=30))
    outs = train(model, 30, batch_size=8)
    assert float(outs[-1]["loss"]) < float(outs[0]["loss"])


def test_save_and_load_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = IJEPA(tiny())
    model.save_pretrained(tmp_path)
    loaded = IJEPA.from_pretrained(tmp_path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode(x), loaded.encode(x), atol=1e-6)


def test_tiny_config_builds_and_steps() -> None:
    """configs/ijepa_tiny.yaml stays in sync with IJEPAConfig and the data source."""
    from pathlib import Path

    from jepalab.config import load_experiment
    from jepalab.data.bouncing import BouncingBalls as Source

    path = Path(__file__).resolve().parents[1] / "configs" / "ijepa_tiny.yaml"
    exp = load_experiment(path, ["train.steps=50"])
    assert exp.recipe == "ijepa" and exp.model.total_steps == 50  # EMA schedule follows the run length
    model = get_recipe(exp.recipe)(exp.model)
    out = model.training_step(Source(exp.data).batch(0, 2), 0)
    assert torch.isfinite(out["loss"])


def test_mnist_config_small_grid_masks_and_step() -> None:
    """configs/ijepa_mnist.yaml (the benchmark's I-JEPA row): on the 4x4 grid of 16x16 digits
    every target is one 2x2 block, targets never leak into the context, and a step trains."""
    from pathlib import Path

    from jepalab.config import load_experiment
    from jepalab.data.images import MNISTImages

    path = Path(__file__).resolve().parents[1] / "configs" / "ijepa_mnist.yaml"
    exp = load_experiment(path, ["train.steps=30", "data.limit=64"])
    model = get_recipe(exp.recipe)(exp.model)
    assert model.encoder.grid == (4, 4) and exp.model.total_steps == 30
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        masks = model.mask_gen(8, g)
        assert len(masks.targets) == 2
        for t in masks.targets:
            rows, cols = t // 4, t % 4
            assert t.shape == (8, 4)  # a 2x2 block: 2 distinct rows x 2 distinct columns
            assert all(len(set(r.tolist())) == 2 and len(set(c.tolist())) == 2 for r, c in zip(rows, cols))
            assert not (masks.context.unsqueeze(2) == t.unsqueeze(1)).any()
        assert masks.context.shape[1] >= exp.model.min_context
    out = model.training_step(MNISTImages(exp.data).batch(0, 8), 0)
    assert torch.isfinite(out["loss"]) and out["embeddings"].shape == (8, 64)


def test_paper_block_sizes_do_not_fit_a_4x4_grid() -> None:
    """The paper's defaults (4 targets, min_context 10) cannot be met on a 4x4 grid: the mask
    generator says so with a ConfigError instead of returning an empty context."""
    model = IJEPA(tiny(img_size=16, in_chans=1, patch_size=4))
    with pytest.raises(ConfigError, match="min_context"):
        for _ in range(10):
            model.mask_gen(4, torch.Generator().manual_seed(0))
