"""Exact-match and semantic accuracy of an LLM-JEPA model on NL-RX test requests.

Exact match is the paper's score (the generated regex is the target string); semantic accuracy
counts a regex that denotes the same language as the target (``jepalab.eval.regex_equiv``, finite
automata, so ``~`` and ``&`` are judged too). Greedy decoding, as in the paper.
"""

from __future__ import annotations

import time
from typing import Any

from jepalab.data.nlrx import Example
from jepalab.eval.regex_equiv import equivalent


def score(predictions: list[str], targets: list[str]) -> dict[str, float]:
    """``{"exact", "semantic", "n"}`` of predictions against targets (fractions in [0, 1])."""
    n = len(targets)
    exact = sum(p == t for p, t in zip(predictions, targets))
    sem = sum(equivalent(p, t) for p, t in zip(predictions, targets))
    return {"exact": exact / max(n, 1), "semantic": sem / max(n, 1), "n": n}


def evaluate_examples(model: Any, examples: list[Example], batch_size: int = 64) -> dict[str, Any]:
    """Generate for every example and score; also returns a few (request, target, output) rows."""
    t0 = time.perf_counter()
    preds = model.generate([e.request for e in examples], batch_size=batch_size)
    gen_s = time.perf_counter() - t0
    out: dict[str, Any] = score(preds, [e.regex for e in examples])
    out["generate_s"] = gen_s
    out["samples"] = [{"request": e.request, "target": e.regex, "output": p} for e, p in zip(examples[:5], preds[:5])]
    return out


__all__ = ["score", "evaluate_examples"]
