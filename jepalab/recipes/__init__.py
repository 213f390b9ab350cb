"""Recipes: one short file per method, each composing the core parts.

Recipes are looked up by name and imported lazily, so that importing jepalab stays fast and a
recipe's optional dependencies are only needed when it is used.
"""

from __future__ import annotations

import importlib

from jepalab.errors import ConfigError

from .base import Recipe

#: name -> module that defines a ``Recipe`` subclass exported as ``RECIPE``.
RECIPES: dict[str, str] = {
    "ijepa": "jepalab.recipes.ijepa",
    "vjepa": "jepalab.recipes.vjepa",
    "lejepa": "jepalab.recipes.lejepa",
    "vicreg": "jepalab.recipes.vicreg",
    "barlow": "jepalab.recipes.barlow",
    "future": "jepalab.recipes.future",
    "pixel": "jepalab.recipes.pixel",
    "worldmodel": "jepalab.recipes.worldmodel",
}


def get_recipe(name: str) -> type[Recipe]:
    """Return the recipe class registered under ``name``."""
    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown recipe '{name}'. Known recipes: {', '.join(RECIPES)}.{hint}")
    module = importlib.import_module(RECIPES[name])
    return module.RECIPE


__all__ = ["Recipe", "RECIPES", "get_recipe"]
