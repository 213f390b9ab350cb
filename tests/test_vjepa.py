"""V-JEPA recipe: tube masks on clips, L1 loss, EMA 0.998 -> 1, a few steps lower the loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.masks import Masks
from jepalab.recipes import get_recipe
from jepalab.recipes.vjepa import VJEPA, VJEPAConfig

torch.set_num_threads(1)


def tiny(**kw: object) -> VJEPAConfig:
    base = dict(img_size=32, num_frames=4, tubelet=2, patch_size=8, embed_dim=48, depth=2, heads=2,
                pred_dim=24, pred_depth=1, pred_heads=2)
    base.update(kw)
    return VJEPAConfig(**base)  # type: ignore[arg-type]


def clips(step: int, batch_size: int) -> torch.Tensor:
    src = BouncingBalls(BouncingConfig(img_size=32, channels=3, frames=4, num_balls=3, radius=5.0, seed=0))
    return src.batch(step, batch_size)["frames"]


def test_config_and_registry() -> None:
    assert get_recipe("vjepa") is VJEPA
    cfg = VJEPAConfig()
    assert (cfg.loss, cfg.ema_start, cfg.ema_end) == ("l1", 0.998, 1.0)
    assert (cfg.small_blocks, cfg.small_scale, cfg.large_blocks, cfg.large_scale) == (8, 0.15, 2, 0.7)
    with pytest.raises(ConfigError):
        VJEPA(tiny(num_frames=3))
    with pytest.raises(ConfigError):
        VJEPA(tiny(small_blocks=0, large_blocks=0))


def test_two_tube_mask_sets_and_shapes() -> None:
    torch.manual_seed(0)
    model = VJEPA(tiny())
    assert model.encoder.grid == (2, 4, 4)
    drawn: list[Masks] = []
    for i, gen in enumerate(model.mask_gens):
        model.mask_gens[i] = SimpleNamespace(draw=(lambda g0: lambda d: drawn.append(g0.draw(d)) or drawn[-1])(gen))  # type: ignore[func-returns-value]
    out = model.training_step({"frames": clips(0, 4)}, 0)
    assert len(drawn) == 2
    for m in drawn:  # context = complement of the tubes (up to the batch trim)
        for b in range(4):
            assert set(m.context[b].tolist()).isdisjoint(m.targets[0][b].tolist())
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert out["embeddings"].shape == (4, 48)
    assert abs(float(out["ema_momentum"]) - 0.998) < 1e-6
    assert model.encode(clips(1, 3)).shape == (3, 48)


def test_input_validation() -> None:
    model = VJEPA(tiny())
    with pytest.raises(DataError):
        model.training_step({"images": torch.rand(2, 3, 32, 32)}, 0)
    with pytest.raises(ShapeError):
        model.training_step({"frames": torch.rand(2, 6, 3, 32, 32)}, 0)


@pytest.mark.parametrize("encoder", ["vit", "conv"])
def test_a_few_steps_lower_the_loss(encoder: str) -> None:
    torch.manual_seed(0)
    model = VJEPA(tiny(encoder=encoder, width=8, total_steps=40))
    assert all(not p.requires_grad for p in model.teacher.parameters())
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        torch.manual_seed(100 + step)
        out = model.training_step({"frames": clips(step, 8)}, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.after_optimizer_step(step)
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


def test_tiny_config_builds_and_steps() -> None:
    """configs/vjepa_tiny.yaml stays in sync with VJEPAConfig and the data source."""
    from pathlib import Path

    from jepalab.config import load_experiment

    path = Path(__file__).resolve().parents[1] / "configs" / "vjepa_tiny.yaml"
    exp = load_experiment(path, [])
    assert exp.recipe == "vjepa" and exp.model.loss == "l1"
    model = get_recipe(exp.recipe)(exp.model)
    out = model.training_step(BouncingBalls(exp.data).batch(0, 2), 0)
    assert torch.isfinite(out["loss"])


def test_min_context_reaches_both_tube_masks() -> None:
    """Every sample keeps >= min_context visible patches per frame under both generators."""
    model = VJEPA(tiny(patch_size=4, min_context=3))  # grid (2, 8, 8)
    assert all(gen.min_context == 3 for gen in model.mask_gens)
    g = torch.Generator().manual_seed(0)
    t = model.encoder.grid[0]
    for _ in range(20):
        for gen in model.mask_gens:
            m = gen(8, g)
            assert m.context.shape[1] >= 3 * t  # trimmed to the batch minimum, still above the floor
    with pytest.raises(ConfigError, match="min_context"):
        VJEPA(tiny(min_context=0))
    with pytest.raises(ConfigError, match="min_context"):
        VJEPA(tiny(patch_size=8, min_context=16))  # a 4x4 grid has only 16 patches per frame



def test_training_step_reports_context_above_floor() -> None:
    """The logged context size (mean over the two generators) respects min_context x frames."""
    torch.manual_seed(0)
    model = VJEPA(tiny(num_frames=8, patch_size=4, min_context=4))  # grid (4, 8, 8)
    out = model.training_step({"frames": clips(0, 4).repeat(1, 2, 1, 1, 1)}, 0)
    assert float(out["context_tokens"]) >= 4 * 4
    assert torch.isfinite(out["loss"])


def test_coarse_grid_with_full_width_predictor() -> None:
    """The benchmark's shape: 8x8 patches on 8-frame 32x32 clips -> a (4, 4, 4) grid; under both
    tube generators every sample keeps >= min_context patches per frame and some targets, and a
    predictor as wide as the encoder trains."""
    torch.manual_seed(0)
    model = VJEPA(tiny(num_frames=8, patch_size=8, pred_dim=48, pred_depth=2, pred_heads=4, min_context=2))
    assert model.encoder.grid == (4, 4, 4)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        for gen in model.mask_gens:
            m = gen(16, g)
            assert m.context.shape[1] >= 2 * 4 and m.targets[0].shape[1] >= 4
            for b in range(16):
                assert set(m.context[b].tolist()).isdisjoint(m.targets[0][b].tolist())
    out = model.training_step({"frames": clips(0, 2).repeat(1, 2, 1, 1, 1)}, 0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["embeddings"].shape == (2, 48)
    assert all(p.grad is not None for p in model.predictor.parameters() if p.requires_grad)
