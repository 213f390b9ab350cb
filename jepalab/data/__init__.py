"""Data sources by name, so that a YAML config can say ``data: {source: digits, ...}``.

Why a registry of import strings: sources pull in optional things (scikit-learn, a wheel with
MNIST, a folder of images); importing one only when it is named keeps ``import jepalab`` fast and
lets the others be missing. Every source class has a ``config_class`` dataclass and follows the
``Source`` protocol of docs/design.md: ``batch(step, batch_size, rank=0, world_size=1)`` is a pure
function of ``(seed, step)`` and returns a dict of tensors, e.g. ``frames`` (B, T, C, H, W) or
``images`` (B, C, H, W).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from jepalab.errors import ConfigError, MissingDependencyError
from jepalab.schema import from_dict

#: source name -> "module:ClassName" (imported on first use).
SOURCES: dict[str, str] = {
    "bouncing": "jepalab.data.bouncing:BouncingBalls",
    "digits": "jepalab.data.images:DigitsImages",
    "mnist": "jepalab.data.images:MNISTImages",
    "moving-mnist": "jepalab.data.moving_mnist:MovingMNIST",
    "folder": "jepalab.data.images:FolderImages",
    "trajectories": "jepalab.data.trajectories:TrajectorySource",
    "video": "jepalab.data.video:VideoFolder",
    "nlrx": "jepalab.data.nlrx:NLRXSource",
    "shapes-world": "jepalab.data.shapes_world:ShapesWorld",
}


def get_source_class(name: str) -> type:
    """Return the source class registered under ``name`` (importing its module now)."""
    if not isinstance(name, str) or name not in SOURCES:
        close = difflib.get_close_matches(str(name), list(SOURCES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown data source '{name}'. Known sources: {', '.join(SOURCES)}.{hint}")
    module_name, _, attr = SOURCES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MissingDependencyError(
            f"Data source '{name}' could not be imported ({e}); install what it needs "
            "(e.g. `pip install scikit-learn` for digits) or choose another source."
        ) from e
    cls = getattr(module, attr, None)
    if cls is None or not hasattr(cls, "config_class"):
        raise MissingDependencyError(
            f"Data source '{name}' expects {SOURCES[name]} with a `config_class`, but the module "
            "does not define it; your jepalab install may be incomplete."
        )
    return cls


def build_source(name: str, cfg: Any = None) -> Any:
    """Instantiate source ``name`` from its config dataclass, a plain dict of its fields, or
    ``None`` (all defaults)."""
    cls = get_source_class(name)
    if cfg is None:
        cfg = cls.config_class()
    elif isinstance(cfg, Mapping):
        cfg = from_dict(cls.config_class, dict(cfg), where="data")
    elif not isinstance(cfg, cls.config_class):
        raise ConfigError(
            f"Data source '{name}' needs a {cls.config_class.__name__} (or a dict of its fields), "
            f"got {type(cfg).__name__}."
        )
    return cls(cfg)


__all__ = ["SOURCES", "get_source_class", "build_source"]
