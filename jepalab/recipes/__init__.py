"""Recipes: one short file per method, each composing the core parts.

``RECIPES`` names them and ``get_recipe(name)`` imports one on demand (see ``registry``);
``Recipe`` is the contract all of them fulfil (see ``base``).
"""

from __future__ import annotations

from .base import Recipe
from .registry import RECIPES, get_recipe

__all__ = ["Recipe", "RECIPES", "get_recipe"]
