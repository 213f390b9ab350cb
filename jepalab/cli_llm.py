"""``jepalab generate RUN "request"`` and ``jepalab eval RUN`` for LLM-JEPA runs.

Why a module of its own: the language recipe's evaluation (greedy decoding, exact and semantic
regex accuracy) has nothing in common with the probes of ``jepalab eval`` for image recipes, so
``register`` adds ``generate`` and routes ``eval`` of an ``llmjepa`` run here
(``jepalab.cli_route``), leaving every other run to the probe evaluator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jepalab.cli_route import recipe_of, route_eval
from jepalab.errors import CheckpointError

EVAL_FILE = "eval_nlrx.json"


def _load(run_dir: str, device: str | None) -> Any:
    from jepalab.recipes.base import Recipe

    if recipe_of(run_dir) != "llmjepa":
        raise CheckpointError(f"{run_dir} is not a finished llmjepa run (no config.json naming recipe 'llmjepa'); "
                              "train one with: jepalab train configs/llmjepa_scratch.yaml")
    return Recipe.from_pretrained(run_dir, map_location=device or "cpu")


def cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args.run_dir, args.device)
    for text in args.request:
        print(model.generate([text], max_new_tokens=args.max_new_tokens)[0])
    return 0


def cmd_eval_llm(args: argparse.Namespace) -> int:
    """Exact and semantic accuracy on the run's NL-RX test split; writes RUN_DIR/eval_nlrx.json."""
    import yaml

    from jepalab.atomic import write_text_atomic
    from jepalab.data.nlrx import load_split
    from jepalab.eval.nlrx_eval import evaluate_examples

    model = _load(args.run_dir, args.device)
    exp = yaml.safe_load((Path(args.run_dir) / "experiment.yaml").read_text()) or {}
    data = exp.get("data", {})
    examples = load_split(data.get("root", "../shared/data/nl-rx"), data.get("subset", "synth"), args.split)
    examples = examples[: args.max_test] if args.max_test else examples
    result = evaluate_examples(model, examples)
    result.update(subset=data.get("subset", "synth"), split=args.split, checker="greenery FSM equivalence")
    write_text_atomic(Path(args.run_dir) / EVAL_FILE, json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"NL-RX-{result['subset'].upper()} {args.split}, {result['n']} requests, greedy decoding")
        print(f"  exact match     {100 * result['exact']:.1f}%")
        print(f"  semantic match  {100 * result['semantic']:.1f}%  (finite-automaton equivalence)")
        print(f"wrote {Path(args.run_dir) / EVAL_FILE}")
    return 0


def register(sub: Any) -> None:
    """Add ``generate``; make ``eval`` of an llmjepa run score regexes instead of probing."""
    p = sub.add_parser("generate", help="greedy regex for a natural-language request (llmjepa runs)",
                       epilog='after `jepalab train configs/llmjepa_scratch.yaml --run-dir runs/llmjepa-scratch` (it reads the '
                              'NL-RX data, see docs/llmjepa.md), for example:\n'
                              'jepalab generate runs/llmjepa-scratch "lines containing a vowel"',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `jepalab train` with recipe llmjepa")
    p.add_argument("request", nargs="+", help="one or more requests, each quoted")
    p.add_argument("--max-new-tokens", type=int, default=None, help="decoding budget (default: the model's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    p.set_defaults(func=cmd_generate)
    route_eval(sub, "llmjepa", cmd_eval_llm)
