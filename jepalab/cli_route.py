"""Route ``jepalab eval RUN_DIR`` by the run's recipe.

Why: most recipes are evaluated by probing frozen features (``jepalab.eval.evaluate``), but some
measure something else entirely (LLM-JEPA: regex accuracy; VL-JEPA: zero-shot classification and
text<->video retrieval). A command module that owns such a recipe calls :func:`route_eval` once;
``eval`` then reads the run's ``config.json`` and hands runs of that recipe to its handler, and
every other run to whatever ``eval`` did before (so several recipes can each add their route).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def recipe_of(run_dir: str) -> str | None:
    """The recipe named in ``RUN_DIR/config.json`` (written when a model is saved), else None."""
    try:
        return json.loads((Path(run_dir) / "config.json").read_text()).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None


def route_eval(sub: Any, recipe: str, handler: Callable[[argparse.Namespace], int]) -> None:
    """Make ``eval`` of a run whose recipe is ``recipe`` call ``handler``; other runs keep the
    previous ``eval`` behaviour. Does nothing when the parser has no ``eval`` command."""
    ev = sub.choices.get("eval")
    if ev is None:
        return
    previous = ev.get_default("func")

    def routed(args: argparse.Namespace) -> int:
        return handler(args) if recipe_of(args.run_dir) == recipe else previous(args)

    ev.set_defaults(func=routed)


__all__ = ["recipe_of", "route_eval"]
