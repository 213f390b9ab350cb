"""Collapse monitoring during training: the statistics of ``jepalab.eval.monitors`` on the
recipe's ``embeddings``, logged every ``monitor_every`` steps, with one warning event when the run
starts to look collapsed.

Why a reference from step 0: absolute thresholds miss a partial collapse (see
``jepalab.eval.monitors``), so the trainer records the ranks of the run's first embeddings and
stores them in every checkpoint, and later steps, resumed ones included, are compared with them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from jepalab.eval.monitors import collapse_stats
from jepalab.runlog import RunLog


def rank_reference(emb: Any) -> dict[str, float] | None:
    """The ranks of the run's first embeddings, which later monitor steps are compared with."""
    if not torch.is_tensor(emb) or emb.ndim < 2 or emb.shape[0] < 2:
        return None
    s = collapse_stats(emb.detach().float().cpu())
    return {"rank": float(s["rank"]), "rank_centered": float(s["rank_centered"])}


def monitor_step(emb: Any, log: RunLog, step: int, was_collapsed: bool,
                 reference: dict[str, float] | None) -> tuple[dict[str, Any], bool]:
    """Collapse statistics of the recipe's ``embeddings`` (``jepalab.eval.monitors``), also
    relative to the run's start (``reference``) when it is known."""
    if not torch.is_tensor(emb) or emb.ndim < 2 or emb.shape[0] < 2:
        return {}, was_collapsed
    s = collapse_stats(emb.detach().float().cpu(), reference=reference)
    collapsed = bool(s["collapsed"])
    rel = f", {s['rank_ratio']:.0%} of its {reference['rank']:.2f} at step 0" if "rank_ratio" in s else ""
    if collapsed and not was_collapsed:
        log.event(
            "collapse",
            f"embeddings look collapsed at step {step} (effective rank {s['rank']:.2f}{rel}; normalized std "
            f"{s['std']:.4f} vs ~{s.get('std_ref', float('nan')):.4f} for isotropic): check the EMA momentum, "
            "the regularizer weight or lower the lr.",
            level=logging.WARNING,
            step=step,
        )
    out = {"monitor/rank": float(s["rank"]), "monitor/std": float(s["std"]), "monitor/collapsed": collapsed}
    if "rank_ratio" in s:
        out["monitor/rank_ratio"] = float(s["rank_ratio"])
    return out, collapsed
