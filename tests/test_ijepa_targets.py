"""I-JEPA opt-in target/probe options: data2vec-style multi-layer targets and pre-norm probing.

The defaults must reproduce the paper's recipe exactly; the options must compute what they claim,
checked against forward hooks on the teacher's blocks (independent of the recipe's own helper).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepalab.config import from_dict
from jepalab.errors import ConfigError
from jepalab.recipes.ijepa import IJEPA, IJEPAConfig

torch.set_num_threads(1)


def tiny(**kw: object) -> IJEPA:
    base = {"img_size": 16, "in_chans": 1, "patch_size": 4, "embed_dim": 32, "depth": 3, "heads": 2, "pred_dim": 32,
                "pred_depth": 1, "pred_heads": 2, "num_targets": 2, "target_scale": (0.2, 0.25), "min_context": 4, "total_steps": 10}
    base.update(kw)
    torch.manual_seed(0)
    return IJEPA(IJEPAConfig(**base))  # type: ignore[arg-type]


def hooked_blocks(model: IJEPA, x: torch.Tensor) -> list[torch.Tensor]:
    """Every teacher block's output, captured with forward hooks during a plain teacher call."""
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
             for b in model.teacher.module.transformer.blocks]
    try:
        model.teacher(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def perturb_teacher(model: IJEPA) -> None:
    """Give the teacher's LayerNorms non-trivial affine weights, so LN(LN_affine(h)) != LN(h) etc."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.teacher.module.named_parameters():
            if "norm" in n:
                p.add_(0.5 * torch.randn(p.shape, generator=g))


def test_defaults_are_the_paper_target_and_probe() -> None:
    m = tiny()
    assert m.config.target_layers == 1 and m.config.probe_norm is True
    perturb_teacher(m)
    x = torch.rand(4, 1, 16, 16)
    h, t = m.targets(x)
    ref = m.teacher(x)
    assert torch.equal(h, ref)
    assert torch.allclose(t, F.layer_norm(ref, ref.shape[-1:]))
    assert torch.allclose(m.encode(x), ref.mean(1))


def test_multi_layer_target_is_layer_normed_mean_of_last_blocks() -> None:
    m = tiny(target_layers=2)
    perturb_teacher(m)
    x = torch.rand(4, 1, 16, 16)
    blocks = hooked_blocks(m, x)
    assert len(blocks) == 3
    ln = [F.layer_norm(b, b.shape[-1:]) for b in blocks[-2:]]
    want = F.layer_norm((ln[0] + ln[1]) / 2, (32,))
    h, t = m.targets(x)
    assert t.shape == (4, 16, 32)
    assert torch.allclose(t, want, atol=1e-5)
    assert torch.allclose(h, m.teacher(x), atol=1e-6)  # the monitor still sees the final tokens
    one = tiny()
    one.load_state_dict(m.state_dict())
    assert not torch.allclose(one.targets(x)[1], t, atol=1e-3)  # really a different target


def test_prenorm_probe_pools_last_block_before_final_norm() -> None:
    m = tiny(probe_norm=False)
    perturb_teacher(m)
    x = torch.rand(4, 1, 16, 16)
    want = hooked_blocks(m, x)[-1].mean(1)
    got = m.encode(x)
    assert got.shape == (4, 32)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, m.teacher(x).mean(1), atol=1e-3)


def test_training_step_with_multi_layer_target_trains_student_only() -> None:
    m = tiny(target_layers=3)
    torch.manual_seed(3)
    out = m.training_step({"images": torch.rand(8, 1, 16, 16)}, 0)
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    assert m.encoder.patch_embed.weight.grad is not None and m.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())


@pytest.mark.parametrize("bad", [{"target_layers": 0}, {"target_layers": 4}, {"target_layers": 2, "encoder": "conv"},
                                 {"probe_norm": False, "encoder": "conv"}, {"target_layers": 2, "anti_collapse": "none"}])
def test_invalid_options_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        tiny(**bad)


def test_old_configs_without_the_new_fields_still_load() -> None:
    cfg = from_dict(IJEPAConfig, {"img_size": 16, "in_chans": 1, "embed_dim": 32, "heads": 2}, where="model")
    assert cfg.target_layers == 1 and cfg.probe_norm is True
