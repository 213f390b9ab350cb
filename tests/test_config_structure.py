"""The config layer's shape: parts own their dataclasses, each constraint is declared once, and the
errors still name the key, the file's line and the closest valid key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jepalab.config import experiment_from_dict, load_experiment
from jepalab.errors import ConfigError
from jepalab.nn.frame import FrameConfig
from jepalab.recipes.future import FutureConfig, FutureJEPA
from jepalab.recipes.pixel import PixelConfig, PixelTwin


def _declared_here(cls: type) -> set[str]:
    return set(cls.__dict__.get("__annotations__", {}))


def test_frame_sizes_are_declared_once_by_the_layers_that_use_them() -> None:
    shared = {f.name for f in dataclasses.fields(FrameConfig)}
    assert {"img_size", "embed_dim", "context_frames", "pred_hidden"} <= shared
    for cls in (FutureConfig, PixelConfig):
        assert issubclass(cls, FrameConfig)
        assert not _declared_here(cls) & shared, f"{cls.__name__} redeclares {_declared_here(cls) & shared}"


@pytest.mark.parametrize("recipe,cls", [("future", FutureJEPA), ("pixel", PixelTwin)])
def test_one_check_serves_the_config_and_the_constructor(recipe: str, cls: type) -> None:
    """context_frames >= 1 is FrameConfig's check: the YAML path and a model built in Python get
    the same sentence."""
    raw = {"name": "x", "recipe": recipe, "model": {"context_frames": 0},
           "data": {"source": "bouncing", "img_size": 32, "frames": 4}, "train": {"steps": 2, "warmup_steps": 0}}
    with pytest.raises(ConfigError, match=r"model.context_frames must be >= 1, got 0") as from_yaml:
        experiment_from_dict(raw)
    assert getattr(from_yaml.value, "key", "") == "model"
    with pytest.raises(ConfigError, match=r"model.context_frames must be >= 1, got 0"):
        cls(cls.config_class(context_frames=0))


def test_errors_name_the_key_the_line_and_the_closest_key(tmp_path: Path) -> None:
    cfg = tmp_path / "pixel.yaml"
    cfg.write_text("name: p\nrecipe: pixel\nmodel:\n  img_size: 32\n  context_frame: 2\n"
                   "data: {source: bouncing, img_size: 32, frames: 4}\ntrain: {steps: 2, warmup_steps: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(cfg)
    msg = str(err.value)
    assert f"{cfg}:5" in msg and "'model.context_frame'" in msg and "Did you mean 'model.context_frames'?" in msg


def test_a_learning_rate_past_the_limit_is_refused_once_with_its_key() -> None:
    """train.lr's upper bound lives in the experiment checks (TrainConfig checks lr > 0)."""
    raw = {"name": "x", "recipe": "pixel", "data": {"source": "bouncing", "img_size": 32, "frames": 4},
           "train": {"steps": 2, "warmup_steps": 0, "lr": 1e39}}
    with pytest.raises(ConfigError, match=r"'train.lr' must be a finite number") as err:
        experiment_from_dict(raw)
    assert err.value.key == "train.lr"  # type: ignore[attr-defined]
