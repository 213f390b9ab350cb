"""``jepalab demo`` is reproducible at a fixed seed and reads its YAML config like every command."""

from __future__ import annotations

import json
import re
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


# --- the README's demo figures come from the committed results file ------------------------------
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo_stochastic.json"
#: Numbers the README's demo section may state that are settings, not measurements.
SETTINGS_IN_PROSE = {"1e-3": "the fixed ridge of the probe", "0.9": "the stated target of the probe"}


def _demo_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### The main job: `jepalab demo`")
    return text[start:text.index("\n### ", start + 1)]


def _renderings(obj) -> set[str]:
    """Every way the README may print a number of the results file: as is, with thousands
    separators, rounded to 0-3 decimals, as a percentage, or a duration in seconds/minutes."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for v in obj.values():
            out |= _renderings(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _renderings(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        v = float(obj)
        out |= {f"{v:.{d}f}" for d in range(4)} | {f"{v:,.0f}", f"{100 * v:.0f}%", f"{100 * v:.0f}"}
        out |= {f"{int(v // 60)} min {round(v % 60):02d} s", f"{v:.0f} s"}
    return out


def test_readme_demo_numbers_come_from_the_committed_results():
    res = json.loads(RESULTS.read_text())
    assert res["command"] == "jepalab demo" and res["size"] == "small" and res["variant"] == "stochastic"
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())  # the file was made from today's configs/demo.yaml
    for section in ("model", "data", "train"):
        for key, value in raw[section].items():
            rec = res["config"][section][key]
            assert rec == value, \
                f"{RESULTS.name} was made with {section}.{key}={rec}, configs/demo.yaml now says {value}: rerun"
    section = _demo_section()
    prose = re.sub(r"`[^`]*`", "", section)  # commands and paths are not figures
    allowed = _renderings(res) | set(SETTINGS_IN_PROSE) | {str(res["seed"])}
    found = re.findall(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?%?(?: min \d\d s)?", prose)
    unbacked = [n for n in found if n.lstrip("+") not in allowed and n.lstrip("+-") not in allowed]
    assert not unbacked, f"README demo numbers not in {RESULTS.name}: {unbacked}"
    assert len(found) >= 20  # the section does quote the file
