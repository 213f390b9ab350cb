"""``TrainConfig.compile``: a compiled run trains like an eager one and its checkpoints interchange.

Compilation is slow on CPU (tens of seconds), so one test compiles once (the resumed run reuses
Dynamo's cache) and the failure paths use a cheap failing backend or a missing compiler.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import jepalab.trainer.compile as tc
import jepalab.trainer.loop as loop
from jepalab.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from jepalab.config import load_experiment
from jepalab.data.images import DigitsConfig, DigitsImages
from jepalab.errors import ConfigError, MissingDependencyError
from jepalab.recipes import Recipe, get_recipe
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _vicreg() -> Recipe:
    cls = get_recipe("vicreg")
    torch.manual_seed(0)
    return cls(cls.config_class(img_size=8, in_chans=1, embed_dim=16, width=4, patch_size=4, proj_hidden=32, proj_dim=16))


def _cfg(**kw: object) -> TrainConfig:
    base = dict(steps=6, batch_size=16, lr=3e-3, warmup_steps=1, checkpoint_every=3, log_every=1, monitor_every=0,
                progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "log.jsonl")]


def _assert_same_weights(a: Recipe, b: Recipe) -> None:
    """Weight matrices agree to float rounding. Biases are left out: those feeding a BatchNorm or
    a shift-invariant loss have an exactly-zero gradient, so their Adam update is sign(rounding
    noise) * lr and differs between any two kernels, eager or compiled (measured: ~1e-3 apart)."""
    wb = dict(b.named_parameters())
    checked = 0
    for k, w in a.named_parameters():
        if w.ndim >= 2:
            assert float((w - wb[k]).detach().norm() / wb[k].detach().norm()) < 1e-5, k
            checked += 1
    assert checked >= 5


def test_compiled_run_matches_eager_and_checkpoints_interchange(tmp_path) -> None:
    src = DigitsImages(DigitsConfig(img_size=8))
    eager = _vicreg()
    train(eager, src, _cfg(), tmp_path / "eager", seed=1)

    comp = _vicreg()
    train(comp, src, _cfg(compile=True), tmp_path / "comp", seed=1)
    # Same views (fallback_random keeps eager's RNG stream) and same maths: the trajectories agree.
    assert _losses(tmp_path / "comp") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-4)
    assert len(_losses(tmp_path / "comp")) == 6
    events = [e for e in read_jsonl(tmp_path / "comp" / "events.jsonl") if e["event"] == "compile"]
    assert events and "backbone.encoder" in events[0]["modules"], events
    # training hands back an eager model, and nothing saved carries torch.compile's key prefix
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in comp.modules())
    ckpt = latest_checkpoint(tmp_path / "comp")
    fresh = _vicreg()
    load_checkpoint(ckpt, fresh, None, torch.device("cpu"))  # strict keys: an `_orig_mod.` prefix would fail
    assert not any("_orig_mod" in k for k in comp.state_dict())
    _assert_same_weights(comp, eager)
    again = Recipe.from_pretrained(tmp_path / "comp")
    assert torch.equal(again.state_dict()["backbone.pool.weight"], comp.state_dict()["backbone.pool.weight"])

    # Resume a compiled run from the eager run's step-3 checkpoint: steps 4-6 repeat the eager run.
    resumed = tmp_path / "resumed"
    step3 = list_checkpoints(tmp_path / "eager")[0]
    assert step3.name.endswith("3")
    shutil.copytree(step3, resumed / "checkpoints" / step3.name)
    model = _vicreg()
    out = train(model, src, _cfg(compile=True), resumed, seed=1, resume=True)
    assert out["step"] == 6
    assert _losses(resumed) == pytest.approx(_losses(tmp_path / "eager")[3:], rel=1e-4)
    _assert_same_weights(model, eager)


def test_missing_compiler_is_reported_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(tc.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="C\\+\\+ compiler.*train.compile=false"):
        train(_vicreg(), DigitsImages(DigitsConfig(img_size=8)), _cfg(compile=True), tmp_path, seed=0)
    assert not (tmp_path / "log.jsonl").exists() and not list_checkpoints(tmp_path)


def test_backend_failure_becomes_config_error(tmp_path, monkeypatch) -> None:
    def broken_backend(gm, example_inputs):  # what a missing header or a compiler crash looks like
        raise RuntimeError("simulated C++ compile error")

    def compile_broken(model, device):
        names = tc.compile_targets(model)
        for _, m in names:
            m.compile(backend=broken_backend)
        return [n for n, _ in names]

    monkeypatch.setattr(loop, "compile_model", compile_broken)
    model = _vicreg()
    with pytest.raises(ConfigError, match="simulated C\\+\\+ compile error.*train.compile=false"):
        train(model, DigitsImages(DigitsConfig(img_size=8)), _cfg(compile=True), tmp_path, seed=0)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())
    torch._dynamo.reset()


def test_compile_targets_and_config_wiring(tmp_path) -> None:
    names = [n for n, _ in tc.compile_targets(_vicreg())]
    assert names == ["backbone.encoder", "objective"]  # the Linear/BN head is torch.nn's: Dynamo skips it
    m = _vicreg()
    m.backbone.projector.compile()  # the user's own choice survives the trainer's clean-up
    done = tc.compile_model(m, torch.device("cpu"))  # lazy: nothing is built before a call
    assert m.backbone.encoder._compiled_call_impl is not None
    tc.uncompile_model(m, done)
    assert m.backbone.encoder._compiled_call_impl is None and m.objective._compiled_call_impl is None
    assert m.backbone.projector._compiled_call_impl is not None
    ij = get_recipe("ijepa")
    ijepa = ij(ij.config_class(img_size=16, in_chans=1, embed_dim=16, depth=1, heads=2, pred_dim=8, pred_depth=1,
                               pred_heads=2))
    assert [n for n, _ in tc.compile_targets(ijepa)] == ["encoder", "predictor", "teacher"]  # masks stay eager
    exp = load_experiment(ROOT / "configs" / "vicreg_digits.yaml", ["train.compile=true"])
    assert exp.train.compile is True
    assert load_experiment(ROOT / "configs" / "vicreg_digits.yaml").train.compile is False
    with pytest.raises(ConfigError, match="train.compile"):
        TrainConfig(compile="yes")  # type: ignore[arg-type]
