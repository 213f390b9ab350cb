"""Is this model state worth keeping? The check behind every checkpoint and every divergence advice.

Why the weights and not only the loss: a too-large step can leave every weight finite but huge
(an AdamW step with ``lr=1e4`` moves each weight by about 1e4); the loss of the *next* forward
pass is then ~1e17 or NaN. A checkpoint saved after such a step holds poisoned weights, and
"resume from the last checkpoint with a smaller lr" reproduces the same divergence, because the
forward pass does not depend on the lr. So a checkpoint is written only when its weights are
finite and not exploded, and after a divergence at step ``s`` the checkpoint ``step_s`` (the
weights whose forward pass diverged) is set aside.

"Exploded" is relative to the run's own start: some parameter's largest magnitude exceeds
:data:`GROWTH_LIMIT` times the largest initial magnitude (at least 1, so that zero-initialised
models get a sensible bound). Healthy networks keep weights of order one (norm scales start at 1,
linear weights at ~0.02-0.2), so a 1000-fold margin never trips on a working run; only a step
size far too large for the model gets there.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from jepalab.checkpoint import list_checkpoints, set_aside
from jepalab.errors import TrainingDivergedError
from jepalab.trainer.config import TrainConfig

#: the weights count as exploded when some |w| exceeds this many times max(1, initial max |w|)
GROWTH_LIMIT = 1e3


def max_abs_weight(model: nn.Module) -> float:
    """Largest magnitude over the model's floating-point parameters (trainable or not)."""
    m = 0.0
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.numel():
                m = max(m, float(p.detach().abs().max()))
    return m


def weight_limit(model: nn.Module) -> float:
    """The explosion bound for a run that starts from ``model``'s current weights."""
    return GROWTH_LIMIT * max(1.0, max_abs_weight(model))


def weight_problem(model: nn.Module, limit: float) -> str | None:
    """``None`` when every floating tensor of ``model`` (parameters and buffers, e.g. an EMA
    teacher or running statistics) is finite and no parameter exceeds ``limit`` in magnitude;
    otherwise one phrase naming the first offending tensor."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"'{name}' holds NaN/Inf values"
        for name, p in model.named_parameters():
            if p.is_floating_point() and p.numel():
                m = float(p.detach().abs().max())
                if not math.isfinite(m) or m > limit:
                    return (f"'{name}' reached |w| = {m:.3g}, over the bound {limit:.3g} ({GROWTH_LIMIT:g}x the "
                            "larger of 1 and the run's largest initial |w|): the weights exploded")
    return None


def retire_after_divergence(run_dir: Path, step: int) -> str:
    """Set aside the checkpoints of ``step`` and later (see module docstring) and return the
    sentence that names the checkpoint a fixed config can resume from."""
    moved = set_aside(run_dir, step, label="diverged")
    left = list_checkpoints(run_dir)
    aside = (f" {', '.join(p.name for p in moved)} (the weights that diverged) was set aside and will not be "
             "resumed from." if moved else "")
    if left:
        return f"The last good checkpoint is {left[-1]}; a resume continues from it.{aside}"
    return f"No good checkpoint exists yet, so a resume starts from step 0.{aside}"


def _resume_hint(run_dir: Path) -> str:
    return f"CLI: jepalab resume {run_dir} --set train.lr=...; Python: train(..., resume=True)"


def diverged_error(step: int, loss: float, grad_norm: float, cfg: TrainConfig, run_dir: Path,
                   advice: str) -> TrainingDivergedError:
    """The error for a non-finite loss or gradient at 0-based ``step``: likely causes, then
    ``advice`` (from :func:`retire_after_divergence`) on where a resume continues."""
    return TrainingDivergedError(
        f"Training diverged at step {step} (0-based, as passed to training_step): loss={loss}, "
        f"grad_norm={grad_norm}. Likely causes: learning rate too high (lr={cfg.lr:g}: try 3-10x lower or a "
        f"longer warmup), no gradient clipping (grad_clip={cfg.grad_clip:g}: try 1.0), fp16 overflow "
        f"(amp={cfg.amp}: try 'bf16' or 'off'), or NaN/Inf in the input data. {advice} Fix the config and "
        f"resume ({_resume_hint(run_dir)})."
    )


def exploded_error(step: int, problem: str, cfg: TrainConfig, run_dir: Path, advice: str) -> TrainingDivergedError:
    """The error for weights that became unusable in the update of 0-based ``step``."""
    return TrainingDivergedError(
        f"Training diverged in the update of step {step}: {problem}, so that state was not saved. The "
        f"learning rate is likely far too high for this model (lr={cfg.lr:g}, warmup_steps={cfg.warmup_steps}: "
        f"try 10-100x lower or a longer warmup). {advice} Fix the config and resume ({_resume_hint(run_dir)})."
    )
