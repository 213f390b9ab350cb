"""Planning costs: how far an imagined future is from the goal, measured in latent space.

Why in latent space: a JEPA world model never reconstructs pixels, so the only way to score an
action sequence is to compare the predicted embedding with the goal image's embedding.
LeWorldModel (Maes et al., 2026) and DINO-WM (Zhou et al., 2024) use the distance of the *last*
predicted embedding to the goal; V-JEPA 2-AC (Assran et al., 2025) uses the L1 distance. Scoring
*every* step (mean over the horizon) rewards reaching the goal early and staying there.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from jepalab.errors import ConfigError, ShapeError

CostKind = Literal["l2", "l1", "mse"]
COST_KINDS: tuple[str, ...] = ("l2", "l1", "mse")
REDUCTIONS: tuple[str, ...] = ("last", "mean", "min")
MIN_TIEBREAK = 0.01


def check_cost_kind(kind: str) -> None:
    """Raise ``ConfigError`` unless ``kind`` is one of :data:`COST_KINDS`."""
    if kind not in COST_KINDS:
        raise ConfigError(f"Unknown planning cost {kind!r}; use one of {', '.join(COST_KINDS)}.")


def check_reduce(reduce: str) -> None:
    """Raise ``ConfigError`` unless ``reduce`` is one of :data:`REDUCTIONS`."""
    if reduce not in REDUCTIONS:
        raise ConfigError(f"Unknown cost reduction {reduce!r}; use one of {', '.join(REDUCTIONS)} (module docstring).")


def latent_cost(pred: Tensor, goal: Tensor, kind: str = "l2", every_step: bool = False,
                reduce: str | None = None) -> Tensor:
    """Distance of predicted embeddings to the goal embedding, one number per rollout.

    ``pred (B, H, D)`` imagined embeddings, ``goal (B, D)`` (or ``(D,)``, broadcast) -> ``(B,)``.
    ``kind``: ``"l2"`` Euclidean norm, ``"l1"`` mean absolute difference over ``D`` (V-JEPA 2-AC),
    ``"mse"`` mean squared difference over ``D``. ``reduce``: ``"last" | "mean" | "min"`` over
    ``H`` (module docstring); ``every_step=True`` is the older spelling of ``reduce="mean"``.
    """
    check_cost_kind(kind)
    reduce = reduce if reduce is not None else ("mean" if every_step else "last")
    check_reduce(reduce)
    if pred.dim() != 3:
        raise ShapeError(f"latent_cost expects predictions (B, H, D), got {tuple(pred.shape)}.")
    if goal.dim() == 1:
        goal = goal.unsqueeze(0)
    if goal.dim() != 2 or goal.shape[-1] != pred.shape[-1] or goal.shape[0] not in (1, pred.shape[0]):
        raise ShapeError(
            f"goal must be (B, D) or (D,) matching predictions {tuple(pred.shape)}, got {tuple(goal.shape)}."
        )
    target = pred if reduce != "last" else pred[:, -1:]
    diff = target - goal.unsqueeze(1)
    if kind == "l2":
        per_step = torch.linalg.vector_norm(diff, dim=-1)
    elif kind == "l1":
        per_step = diff.abs().mean(dim=-1)
    else:
        per_step = diff.square().mean(dim=-1)
    if reduce == "min":
        return per_step.amin(dim=1) + MIN_TIEBREAK * per_step.mean(dim=1)
    return per_step.mean(dim=1)
