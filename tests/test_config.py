"""Config loading: every kind of bad config must fail early with a ConfigError that names the
problem, and good configs must round-trip through YAML unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import torch
import yaml

from jepalab.config import (
    Experiment,
    apply_overrides,
    from_dict,
    load_experiment,
    parse_override,
    save_experiment,
    to_dict,
)
from jepalab.errors import ConfigError

torch.set_num_threads(1)


@dataclass
class Inner:
    width: int = 8
    scale: tuple[float, float] = (0.15, 0.2)


@dataclass
class Outer:
    name: str
    lr: float = 1e-3
    steps: int = 10
    amp: bool = False
    kind: Literal["l1", "l2"] = "l2"
    clip: Optional[float] = None
    blocks: tuple[int, ...] = (1, 2)
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


# --- from_dict ---------------------------------------------------------------------------------
def test_from_dict_builds_nested_and_converts() -> None:
    cfg = from_dict(Outer, {"name": "a", "lr": "3e-4", "steps": 5, "kind": "l1", "clip": 1,
                            "blocks": [3, 4, 5], "tags": ["x"], "inner": {"scale": [0.1, 0.3]}}, "m")
    assert cfg.lr == pytest.approx(3e-4) and isinstance(cfg.lr, float)
    assert cfg.clip == 1.0 and isinstance(cfg.clip, float)  # int accepted for float
    assert cfg.blocks == (3, 4, 5) and cfg.tags == ["x"]
    assert cfg.inner == Inner(width=8, scale=(0.1, 0.3))


def test_from_dict_defaults_and_optional_none() -> None:
    cfg = from_dict(Outer, {"name": "a", "clip": None}, "m")
    assert cfg == Outer(name="a")


@pytest.mark.parametrize(
    "data, needles",
    [
        ({"name": "a", "stpes": 3}, ["m.stpes", "m.steps"]),                    # typo + suggestion
        ({"name": "a", "inner": {"widht": 3}}, ["m.inner.widht", "m.inner.width"]),
        ({"name": "a", "steps": True}, ["m.steps", "int", "True"]),             # bool is not int
        ({"name": "a", "steps": 2.5}, ["m.steps", "int", "2.5"]),
        ({"name": "a", "lr": "fast"}, ["m.lr", "float", "fast"]),
        ({"name": "a", "amp": "yes"}, ["m.amp", "bool"]),
        ({"name": "a", "kind": "l3"}, ["m.kind", "'l1'", "'l2'"]),
        ({"name": "a", "steps": [1, 2]}, ["m.steps", "int", "[1, 2]"]),         # list for scalar
        ({"name": "a", "inner": {"scale": [0.1]}}, ["m.inner.scale", "exactly 2"]),
        ({"name": "a", "blocks": "12"}, ["m.blocks", "tuple"]),
        ({"name": "a", "inner": 5}, ["m.inner", "mapping"]),
        ({"lr": 0.1}, ["Missing", "m.name"]),
        ({"name": 3}, ["m.name", "str"]),
        ({"name": "a", "clip": "x"}, ["m.clip", "float or null"]),
    ],
)
def test_from_dict_rejects_with_named_key(data: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data, "m")
    for n in needles:
        assert n in str(exc.value), (n, str(exc.value))


def test_post_init_errors_become_config_errors() -> None:
    @dataclass
    class Checked:
        n: int = 1

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n must be >= 0")

    with pytest.raises(ConfigError, match="n must be >= 0"):
        from_dict(Checked, {"n": -1}, "model")


def test_to_dict_round_trip_through_yaml() -> None:
    cfg = Outer(name="z", lr=2e-4, blocks=(7,), inner=Inner(width=3, scale=(0.2, 0.4)))
    text = yaml.safe_dump(to_dict(cfg))
    assert from_dict(Outer, yaml.safe_load(text), "m") == cfg


# --- overrides ---------------------------------------------------------------------------------
def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("train.lr=3e-4") == ("train.lr", "3e-4")
    assert parse_override("train.amp=true") == ("train.amp", True)
    assert parse_override("model.grid=[8, 8]") == ("model.grid", [8, 8])
    assert parse_override("name=a=b") == ("name", "a=b")


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1", "train.lr x=1", "a.b=[1,"])
def test_parse_override_rejects_malformed(bad: str) -> None:
    with pytest.raises(ConfigError, match="Override"):
        parse_override(bad)


def test_apply_override_into_scalar_is_an_error() -> None:
    raw = {"seed": 3}
    with pytest.raises(ConfigError, match="'seed' is a value"):
        apply_overrides(raw, ["seed.x=1"])
    raw = {"train": {"lr": 0.1}}
    apply_overrides(raw, ["train.steps=7", "model.embed_dim=32"])
    assert raw == {"train": {"lr": 0.1, "steps": 7}, "model": {"embed_dim": 32}}


# --- experiments -------------------------------------------------------------------------------
GOOD = """\
name: tiny
seed: 3
recipe: future
model:
  img_size: 32
  embed_dim: 32
data:
  source: bouncing
  img_size: 32
  frames: 4
train:
  steps: 20
  batch_size: 8
  lr: 1e-3
  warmup_steps: 2
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_good_experiment(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, GOOD))
    assert isinstance(exp, Experiment)
    assert (exp.name, exp.seed, exp.recipe, exp.source) == ("tiny", 3, "future", "bouncing")
    assert exp.model.embed_dim == 32 and exp.train.steps == 20 and exp.train.lr == pytest.approx(1e-3)
    assert exp.data.seed == 3  # the one seed reaches the data unless data.seed is explicit
    assert exp.model.total_steps == 20  # the EMA schedule spans train.steps unless set
    explicit = load_experiment(write(tmp_path, GOOD.replace("  source: bouncing", "  source: bouncing\n  seed: 9")
                                     .replace("  embed_dim: 32", "  embed_dim: 32\n  total_steps: 7"), "e2.yaml"))
    assert explicit.data.seed == 9 and explicit.model.total_steps == 7


def test_name_defaults_to_file_stem_and_overrides_apply(tmp_path: Path) -> None:
    text = GOOD.replace("name: tiny\n", "")
    exp = load_experiment(write(tmp_path, text, "my_run.yaml"), ["train.steps=5", "model.embed_dim=16"])
    assert exp.name == "my_run" and exp.train.steps == 5 and exp.model.embed_dim == 16


def test_save_load_round_trip(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, GOOD), ["train.lr=2e-4"])
    out = save_experiment(exp, tmp_path / "run" / "experiment.yaml")
    again = load_experiment(out)
    assert to_dict(again) == to_dict(exp)
    assert again == exp
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic, no leftovers


BAD_CASES = [
    # (description, edit applied to GOOD or whole text, overrides, substrings the message must hold)
    ("unknown top-level key", GOOD + "trian: {}\n", [], ["trian", "train"]),
    ("typo'd nested key", GOOD.replace("  embed_dim: 32", "  embed_dmi: 32"), [],
     ["model.embed_dmi", "model.embed_dim", ":6"]),
    ("wrong type", GOOD.replace("batch_size: 8", "batch_size: eight"), [], ["train.batch_size", "int", "eight"]),
    ("bool for int", GOOD.replace("steps: 20", "steps: true"), [], ["train.steps", "True"]),
    ("list for scalar", GOOD.replace("seed: 3", "seed: [3]"), [], ["seed", "int"]),
    ("negative steps", GOOD.replace("steps: 20", "steps: -5"), [], ["train.steps", "-5"]),
    ("zero lr", GOOD.replace("lr: 1e-3", "lr: 0"), [], ["train.lr", "> 0"]),
    ("unknown recipe", GOOD.replace("recipe: future", "recipe: ijepaa"), [], ["ijepaa", "ijepa"]),
    ("missing recipe", GOOD.replace("recipe: future\n", ""), [], ["recipe"]),
    ("unknown data source", GOOD.replace("source: bouncing", "source: bouncy"), [], ["bouncy", "bouncing"]),
    ("missing data source", GOOD.replace("  source: bouncing\n", ""), [], ["data.source"]),
    ("malformed YAML", GOOD.replace("  steps: 20", "  steps: [20"), [], ["invalid YAML", "exp.yaml:"]),
    ("duplicate key", GOOD + "seed: 4\n", [], ["seed", "twice"]),
    ("top level not a mapping", "- a\n- b\n", [], ["mapping"]),
    ("empty file", "", [], ["empty"]),
    ("bad override syntax", GOOD, ["train.steps"], ["key=value"]),
    ("override of unknown key", GOOD, ["train.lrr=1"], ["train.lrr", "train.lr", "override 'train.lrr=1'"]),
    ("override into a value", GOOD, ["seed.x=1"], ["seed", "not a section"]),
    ("image/data size mismatch", GOOD.replace("  img_size: 32\n  frames", "  img_size: 64\n  frames"), [],
     ["data.img_size", "model.img_size"]),
    ("bad device", GOOD, ["train.device=gpu0"], ["train.device", "gpu0"]),
]


@pytest.mark.parametrize("desc, text, overrides, needles", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_experiments_name_the_problem(tmp_path: Path, desc: str, text: str, overrides: list[str],
                                          needles: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_experiment(write(tmp_path, text), overrides)
    msg = str(exc.value)
    for n in needles:
        assert n in msg, f"{desc}: {n!r} not in {msg!r}"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")


def test_experiment_train_defaults_fill_in(tmp_path: Path) -> None:
    from jepalab.train import TrainConfig

    text = GOOD[: GOOD.index("train:")]
    exp = load_experiment(write(tmp_path, text))
    assert exp.train == TrainConfig()
    assert to_dict(exp)["train"] == to_dict(TrainConfig())
    assert set(to_dict(exp)["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}


IJEPA_DIGITS = """\
recipe: ijepa
model: {img_size: 16, patch_size: 4, in_chans: 1, embed_dim: 32, depth: 1, heads: 2, pred_dim: 16,
        pred_depth: 1, pred_heads: 2}
data: {source: digits, img_size: 16}
train: {steps: 3, batch_size: 4, warmup_steps: 1}
"""


@pytest.mark.parametrize("overrides, needles", [
    (["model.in_chans=3"], ["data.channels", "model.in_chans", "channels"]),
    (["model.patch_size=5"], ["model.img_size", "model.patch_size", "divisible"]),
    (["model.embed_dim=0"], ["model.embed_dim", "positive"]),
    (["train.grad_clip=-1"], ["train.grad_clip"]),
])
def test_semantic_checks_on_image_experiment(tmp_path: Path, overrides: list[str], needles: list[str]) -> None:
    p = write(tmp_path, IJEPA_DIGITS, "ijepa_digits.yaml")
    assert load_experiment(p).recipe == "ijepa"
    with pytest.raises(ConfigError) as exc:
        load_experiment(p, overrides)
    for n in needles:
        assert n in str(exc.value), (n, str(exc.value))


def test_build_is_seeded_and_does_not_touch_global_rng(tmp_path: Path) -> None:
    from jepalab.experiment import build

    exp = load_experiment(write(tmp_path, IJEPA_DIGITS, "e.yaml"))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    m1, src = build(exp)
    assert torch.equal(torch.random.get_rng_state(), before)
    m2, _ = build(exp)
    other = load_experiment(write(tmp_path, IJEPA_DIGITS, "e.yaml"), ["seed=1"])
    m3, _ = build(other)
    p1, p2, p3 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    batch = src.batch(0, 4)
    assert all(isinstance(v, torch.Tensor) for v in batch.values())


def test_source_registry(tmp_path: Path) -> None:
    from jepalab.data import SOURCES, build_source, get_source_class

    assert {"bouncing", "digits", "mnist", "folder", "video", "trajectories"} <= set(SOURCES)
    with pytest.raises(ConfigError, match="Did you mean 'digits'"):
        get_source_class("digit")
    src = build_source("bouncing", {"img_size": 16, "frames": 3, "seed": 5})
    frames = src.batch(0, 2)["frames"]
    assert frames.shape == (2, 3, 1, 16, 16)
    assert torch.equal(frames, build_source("bouncing", src.config).batch(0, 2)["frames"])
    with pytest.raises(ConfigError, match="data.bogus"):
        build_source("bouncing", {"bogus": 1})
    with pytest.raises(ConfigError, match="BouncingConfig"):
        build_source("bouncing", 3)
