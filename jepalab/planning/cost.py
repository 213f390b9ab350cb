"""Planning costs: how far an imagined future is from the goal, measured in latent space.

Why in latent space: a JEPA world model never reconstructs pixels, so the only way to score an
action sequence is to compare the predicted embedding with the goal image's embedding.
LeWorldModel (Maes et al., 2026) and DINO-WM (Zhou et al., 2024) use the distance of the *last*
predicted embedding to the goal; V-JEPA 2-AC (Assran et al., 2025) uses the L1 distance. Scoring
*every* step (mean over the horizon) rewards reaching the goal early and staying there.

A goal can also be a short *clip*: the embeddings of the goal frame and of the ``G - 1`` frames
before it, one model step apart. One frame shows where things are, not how fast they move; when
the goal test includes velocities (a pendulum's angular velocity), a single-frame goal leaves the
planner blind to half of it. With a clip, each step's distance compares the last ``G`` imagined
embeddings (the history's tail before the first prediction) with the goal clip, as one vector.
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


def goal_windows(pred: Tensor, g: int, context: Tensor | None) -> Tensor:
    """``(B, H, D) -> (B, H, G*D)``: step ``h``'s last ``g`` embeddings (oldest first), reaching
    back into ``context (B, k, D)`` (the history before the first prediction; its first embedding
    repeated when it is too short, the first prediction when there is none)."""
    if g == 1:
        return pred
    b, _, d = pred.shape
    if context is None or context.shape[1] == 0:
        context = pred[:, :1]
    if context.dim() != 3 or context.shape[0] != b or context.shape[-1] != d:
        raise ShapeError(f"context must be (B={b}, k, D={d}) embeddings, got {tuple(context.shape)}.")
    context = context[:, -(g - 1):]
    if context.shape[1] < g - 1:
        context = torch.cat([context[:, :1].expand(-1, g - 1 - context.shape[1], -1), context], dim=1)
    seq = torch.cat([context.to(pred.dtype), pred], dim=1)            # (B, g-1+H, D)
    return seq.unfold(1, g, 1).permute(0, 1, 3, 2).flatten(2)         # (B, H, g*D)


def latent_cost(pred: Tensor, goal: Tensor, kind: str = "l2", every_step: bool = False,
                reduce: str | None = None, context: Tensor | None = None) -> Tensor:
    """Distance of predicted embeddings to the goal embedding, one number per rollout.

    ``pred (B, H, D)`` imagined embeddings, ``goal (B, D)`` (or ``(D,)``, broadcast) -> ``(B,)``.
    A goal clip ``(B, G, D)`` compares each step's last ``G`` embeddings with it (module
    docstring); ``context (B, k, D)``: the embeddings before ``pred`` (the planner's history).
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
    if goal.dim() == 2:
        goal = goal.unsqueeze(1)
    if goal.dim() != 3 or goal.shape[-1] != pred.shape[-1] or goal.shape[0] not in (1, pred.shape[0]):
        raise ShapeError(f"goal must be (B, D), (D,) or a clip (B, G, D) matching predictions "
                         f"{tuple(pred.shape)}, got {tuple(goal.shape)}.")
    windows = goal_windows(pred, goal.shape[1], context)
    target = windows if reduce != "last" else windows[:, -1:]
    diff = target - goal.flatten(1).unsqueeze(1)
    if kind == "l2":
        per_step = torch.linalg.vector_norm(diff, dim=-1)
    elif kind == "l1":
        per_step = diff.abs().mean(dim=-1)
    else:
        per_step = diff.square().mean(dim=-1)
    if reduce == "min":
        return per_step.amin(dim=1) + MIN_TIEBREAK * per_step.mean(dim=1)
    return per_step.mean(dim=1)
