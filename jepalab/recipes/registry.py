"""Recipes by name, so that a YAML config can say ``recipe: ijepa``.

Why a table of module names on its own: a recipe module is imported only when its name is asked
for (importing jepalab stays fast and a recipe's optional dependencies are needed only when it is
used), and :meth:`jepalab.recipes.base.Recipe.from_pretrained` can look a saved model's recipe up
without the base class and the package importing each other.
"""

from __future__ import annotations

import difflib
import importlib

from jepalab.errors import ConfigError

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
    "llmjepa": "jepalab.recipes.llmjepa",
    "vljepa": "jepalab.recipes.vljepa",
}


def get_recipe(name: str) -> type:
    """Return the recipe class (a ``Recipe`` subclass) registered under ``name``."""
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown recipe '{name}'. Known recipes: {', '.join(RECIPES)}.{hint}")
    return importlib.import_module(RECIPES[name]).RECIPE


__all__ = ["RECIPES", "get_recipe"]
