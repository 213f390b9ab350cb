"""View-based recipes (VICReg, Barlow Twins, LeJEPA) on digits: loss goes down, contract holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jepalab.data.images import DigitsConfig, DigitsImages
from jepalab.errors import ConfigError, ShapeError
from jepalab.recipes import Recipe, get_recipe

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NAMES = ("vicreg", "barlow", "lejepa")
SMALL = dict(embed_dim=32, width=8, proj_hidden=64, proj_dim=32)


def _model(name: str, **kw: object) -> Recipe:
    cls = get_recipe(name)
    torch.manual_seed(0)
    return cls(cls.config_class(**{**SMALL, **kw}))


def _fixed_loss(model: Recipe, batch: dict[str, torch.Tensor]) -> float:
    torch.manual_seed(1234)  # same views every time
    with torch.no_grad():
        return float(model.training_step(batch, 0)["loss"])


@pytest.mark.parametrize("name", NAMES)
def test_recipe_lowers_its_loss_on_digits(name: str) -> None:
    src = DigitsImages(DigitsConfig(img_size=16))
    extra = {"sigreg_proj": 64} if name == "lejepa" else {}
    model = _model(name, **extra)
    probe_batch = src.batch(1000, 64)
    before = _fixed_loss(model, probe_batch)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=2e-3)
    for step in range(15):
        torch.manual_seed(step)
        out = model.training_step(src.batch(step, 64), step)
        assert out["loss"].ndim == 0 and out["loss"].requires_grad
        assert out["embeddings"].shape == (64, 32) and not out["embeddings"].requires_grad
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.after_optimizer_step(step)
    after = _fixed_loss(model, probe_batch)
    assert after < 0.85 * before, (before, after)


def test_logged_terms() -> None:
    batch = DigitsImages().batch(0, 16)
    assert {"loss", "invariance", "variance", "covariance"} <= set(_model("vicreg").training_step(batch, 0))
    assert {"loss", "on_diag", "off_diag"} <= set(_model("barlow").training_step(batch, 0))
    out = _model("lejepa", sigreg_proj=16).training_step(batch, 0)
    lam = 0.05
    assert float(out["loss"].detach()) == pytest.approx((1 - lam) * float(out["prediction"]) + lam * float(out["sigreg"]), rel=1e-5)


def test_lejepa_has_no_teacher_and_no_stop_gradient() -> None:
    model = _model("lejepa", sigreg_proj=16, num_views=3)
    assert all(p.requires_grad for p in model.parameters())
    assert not any("teacher" in n for n, _ in model.named_modules())
    # Gradient of the prediction term alone reaches the encoder through every view.
    torch.manual_seed(0)
    x = DigitsImages().batch(0, 8)["images"]
    h, z = model.backbone.views({"images": x})
    zs = torch.stack(z)
    for v in range(3):
        g = torch.autograd.grad((zs - zs.mean(0)).pow(2).sum(), z[v], retain_graph=True)[0]
        assert g.abs().sum() > 0


def test_encode_and_save_roundtrip(tmp_path: Path) -> None:
    model = _model("barlow").eval()
    x = DigitsImages().batch(0, 5)["images"]
    e = model.encode(x)
    assert e.shape == (5, 32)
    model.save_pretrained(tmp_path / "m")
    again = Recipe.from_pretrained(tmp_path / "m").eval()
    assert type(again) is type(model) and torch.allclose(again.encode(x), e)


def test_bad_inputs_and_config() -> None:
    model = _model("vicreg")
    with pytest.raises(ShapeError, match="img_size"):
        model.training_step({"images": torch.rand(4, 1, 8, 8)}, 0)
    with pytest.raises(ShapeError):
        model.training_step({"frames": torch.rand(4, 1, 16, 16)}, 0)
    cls = get_recipe("vicreg")
    with pytest.raises(ConfigError):
        cls(cls.config_class(encoder="resnet"))
    with pytest.raises(ConfigError):
        cls(cls.config_class(num_views=1))


def test_vit_encoder_option() -> None:
    model = _model("vicreg", encoder="vit", depth=1, num_heads=2)
    out = model.training_step(DigitsImages().batch(0, 8), 0)
    out["loss"].backward()
    assert model.encode(torch.rand(3, 1, 16, 16)).shape == (3, 32)


@pytest.mark.parametrize("name", NAMES)
def test_config_file_trains_through_the_trainer(name: str, tmp_path: Path) -> None:
    from jepalab.config import load_experiment
    from jepalab.experiment import run

    overrides = ["train.steps=2", "train.batch_size=16", "train.warmup_steps=0", "train.device=cpu",
                 "train.progress=false", "train.log_every=1"]
    if name == "lejepa":
        overrides.append("model.sigreg_proj=16")
    exp = load_experiment(ROOT / "configs" / f"{name}_digits.yaml", overrides)
    assert exp.recipe == name and exp.model.img_size == exp.data.img_size
    run(exp, tmp_path / "run")
    log = (tmp_path / "run" / "log.jsonl").read_text().strip().splitlines()
    assert log, "the trainer wrote no log lines"
