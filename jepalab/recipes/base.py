"""The contract every recipe fulfils, so that one trainer, one evaluator and one checkpoint format
serve them all.

A recipe is an ``nn.Module`` that composes parts from ``jepalab.nn``, ``jepalab.masks`` and
``jepalab.objectives`` and says, in ``training_step``, how one batch becomes one loss.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from jepalab.atomic import write_bytes_atomic
from jepalab.errors import CheckpointError, ShapeError
from jepalab.recipes.registry import get_recipe
from jepalab.schema import from_dict

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _frozen_encode(encode: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``encode`` under ``torch.no_grad()``, with its input checked and cast to the model's dtype.

    ``no_grad`` rather than ``inference_mode``: the embeddings stay ordinary tensors that callers
    may later feed to autograd code (a probe's optimizer, a gradient planner's goal)."""

    @functools.wraps(encode)
    def wrapper(self: "Recipe", x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if not isinstance(x, Tensor):
            raise ShapeError(f"{type(self).__name__}.encode takes a torch.Tensor, got {type(x).__name__}; "
                             "convert with torch.as_tensor(x).")
        if x.dtype in (torch.uint8, torch.bool):
            raise ShapeError(f"{type(self).__name__}.encode takes float images in [0, 1], got {x.dtype}; "
                             "convert with x.float() / 255.")
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        if x.is_floating_point() and dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        with torch.no_grad():
            return encode(self, x, *args, **kwargs)

    wrapper._frozen = True  # type: ignore[attr-defined]
    return wrapper


class Recipe(nn.Module):
    """Base class of all recipes.

    Subclasses set ``name`` (the registry key) and ``config_class`` (a dataclass describing the
    model), take that dataclass as their only constructor argument, and implement
    ``training_step`` and ``encode``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap every ``encode`` a subclass defines with :func:`_frozen_encode`, so the frozen-
        embedding contract holds for all recipes without each one having to remember it."""
        super().__init_subclass__(**kwargs)
        enc = cls.__dict__.get("encode")
        if callable(enc) and not getattr(enc, "_frozen", False):
            cls.encode = _frozen_encode(enc)  # type: ignore[method-assign]

    # --- what the trainer calls -------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """Return a dict with a differentiable scalar ``loss``; other scalars are logged and an
        optional detached ``embeddings`` (N, D) feeds the collapse monitor."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int) -> None:
        """Hook run after each optimizer step (e.g. the EMA teacher update). Default: nothing."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (a teacher's are excluded by ``requires_grad``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter-name prefix, e.g. ``{"y_encoder.": 0.05}`` trains
        the parameters under ``y_encoder`` at 5% of ``train.lr``. Default: one learning rate."""
        return {}

    # --- what evaluation calls ----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Pooled embedding ``(B, D)`` of input ``x`` for probes, retrieval and planning.

        Frozen in every recipe: it runs under ``torch.no_grad()`` and returns tensors outside the
        autograd graph, and floating-point inputs are cast to the model's dtype (a float64 array
        from NumPy works). Training code differentiates through the encoder modules themselves."""
        raise NotImplementedError

    # --- save / load for use from any Python code ------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.json`` atomically into ``directory``."""
        from safetensors.torch import save

        d = Path(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        write_bytes_atomic(d / WEIGHTS_FILE, save(state))
        meta = {"recipe": self.name, "config": dataclasses.asdict(self.config)}
        write_bytes_atomic(d / CONFIG_FILE, json.dumps(meta, indent=2).encode())
        return d

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> "Recipe":
        """Rebuild a recipe saved by ``save_pretrained``; works on the base class too
        (``Recipe.from_pretrained(dir)`` picks the recipe named in ``config.json``)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(directory)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise CheckpointError(
                f"{d} is not a saved jepalab model: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                "(write one with model.save_pretrained(dir))."
            )
        try:
            meta = json.loads(cfg_path.read_text())
            recipe_cls = get_recipe(meta["recipe"])
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{cfg_path} is corrupt or not a jepalab config ({e}).") from e
        if cls is not Recipe and not issubclass(recipe_cls, cls):
            raise CheckpointError(f"{d} holds a '{meta['recipe']}' model, not a {cls.__name__}.")
        model = recipe_cls(from_dict(recipe_cls.config_class, meta["config"], where="model"))
        try:
            state = load_file(str(w_path), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{w_path} is truncated or corrupt ({e}); re-save or re-train.") from e
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{w_path} does not match the '{meta['recipe']}' model built from its config: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}."
            )
        return model
