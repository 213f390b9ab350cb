"""``jepalab demo`` is reproducible at a fixed seed and reads its YAML config like every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from jepalab.demo import run_demo
from jepalab.demo.models import DEFAULT_CONFIG, build_decoder, build_models, load_demo_experiment
from jepalab.demo.run import TIMING_FIELDS
from jepalab.errors import ConfigError
from jepalab.experiment import build

torch.set_num_threads(1)
CONFIG_STEPS = yaml.safe_load(DEFAULT_CONFIG.read_text())["train"]["steps"]


def _weights(models: dict) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in models.items() for k, v in m.state_dict().items()}


def test_initial_weights_are_a_function_of_the_seed_alone():
    exp = load_demo_experiment(size="quick")
    torch.manual_seed(123)
    first = _weights(build_models(exp))
    torch.randn(1000)  # whatever ran before in the process must not matter
    torch.manual_seed(999)
    again = _weights(build_models(exp))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = _weights(build_models(load_demo_experiment(size="quick", seed=1)))
    assert any(not torch.equal(first[k], other[k]) for k in first if k.endswith("weight"))
    # the decoders too (they draw their own initial weights)
    d1, d2 = (build_decoder(build_models(exp)["jepa"], exp.seed).decoder.state_dict() for _ in range(2))
    assert all(torch.equal(d1[k], d2[k]) for k in d1)


def test_the_demo_jepa_is_what_train_builds_from_the_same_config():
    exp = load_demo_experiment(size="small")
    model, source = build(exp)
    demo_jepa = build_models(exp)["jepa"]
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in demo_jepa.state_dict().items())
    assert type(source).__name__ == "BouncingBalls" and source.config.variant == "stochastic"


def test_the_demo_reads_its_config_file_and_overrides(tmp_path):
    assert load_demo_experiment(size="small").train.steps == CONFIG_STEPS
    assert load_demo_experiment(size="quick").train.steps == round(CONFIG_STEPS * 0.1)
    assert load_demo_experiment(size="base").train.steps == CONFIG_STEPS * 4
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["train"]["steps"], raw["model"]["embed_dim"] = 120, 32
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    exp = load_demo_experiment(cfg, size="small")
    assert (exp.train.steps, exp.model.embed_dim, exp.model.total_steps) == (120, 32, 120)
    exp = load_demo_experiment(cfg, ["train.steps=200", "train.warmup_steps=10"], size="tiny", seed=7,
                               variant="deterministic")
    assert (exp.train.steps, exp.train.warmup_steps, exp.seed, exp.data.seed, exp.data.variant) == \
        (100, 5, 7, 7, "deterministic")
    assert build_models(exp)["pixel"].config.embed_dim == 32


@pytest.mark.parametrize("kwargs, match", [
    (dict(overrides=["model.embed_dimm=3"]), "embed_dim"),
    (dict(overrides=["recipe=ijepa", "model.in_chans=1", "model.img_size=32"]), "future"),
    (dict(overrides=["model.latent_dim=4"]), "latent_dim"),
    (dict(size="huge"), "size"),
    (dict(variant="actions"), "variant"),
])
def test_bad_demo_configs_fail_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        run_demo(out_dir=str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


def _without_timing(path: Path) -> str:
    res = json.loads(path.read_text())
    for key in TIMING_FIELDS:
        res.pop(key)
    return json.dumps(res, indent=2, sort_keys=True)


def test_two_runs_with_one_seed_write_identical_results(tmp_path):
    """The --quick demo shortened further by a config override (5 steps per model): everything
    the demo measures must come back identical; only the timing fields may differ."""
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 17 + ord(name))  # a different global RNG state before each run
        run_demo(quick=True, overrides=["train.steps=50"], out_dir=str(tmp_path / name), seed=0)
    a, b = _without_timing(tmp_path / "a" / "results.json"), _without_timing(tmp_path / "b" / "results.json")
    assert a == b
    res = json.loads(a)
    assert res["steps"] == 5 and res["config"]["train"]["steps"] == 5 and res["seed"] == 0
    assert set(TIMING_FIELDS) <= set(json.loads((tmp_path / "a" / "results.json").read_text()))
