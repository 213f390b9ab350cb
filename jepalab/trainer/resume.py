"""Continue a run from its newest checkpoint, and say plainly when the continuation cannot be exact.

Why apart from the loop: resuming is a series of checks, each with its own refusal or warning,
that all must pass before the trainer writes anything: the checkpoint fits the model (same
trainable parameters), its weights are usable (finite, not exploded: ``jepalab.trainer.guard``),
and the settings it was written under match this process. A run resumed with another number of
processes draws other random numbers per rank and sums gradients in another order, and CUDA
generator states saved on more GPUs than are visible cannot be restored: such a run goes on,
but the warning says it is no longer a bit-exact continuation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jepalab.checkpoint import latest_checkpoint, load_checkpoint, restore_rng
from jepalab.errors import CheckpointError
from jepalab.trainer.config import TrainConfig
from jepalab.trainer.guard import weight_limit, weight_problem


@dataclass
class Resumed:
    """What a resume found: where to start, and what the caller must tell the user."""

    path: Path | None = None
    start: int = 0
    elapsed: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # setting -> (saved, now)
    not_exact: list[str] = field(default_factory=list)  # why the continuation is not bit-exact
    weight_limit: float | None = None
    monitor_ref: dict[str, float] | None = None


def _plain(v: Any) -> Any:
    """A config value as it reads back from state.json (tuples become lists)."""
    return list(v) if isinstance(v, tuple) else v


def _first_difference(saved: list[list[str]], current: list[list[str]]) -> str:
    a, b = {n for g in saved for n in g}, {n for g in current for n in g}
    only_saved, only_now = sorted(a - b)[:1], sorted(b - a)[:1]
    if only_saved or only_now:
        return f"checkpoint has {only_saved or '-'}, model has {only_now or '-'}"
    return "same names in another weight-decay grouping or order"


def restore(
    run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: Any, cfg: TrainConfig,
    seed: int, group_names: list[list[str]], world: int, device: torch.device,
) -> Resumed:
    """Load the newest checkpoint of ``run_dir`` into ``model``/``opt``/``scaler`` and the RNGs
    (nothing to load: ``Resumed()``, step 0). Raises :class:`CheckpointError` when it does not fit
    or holds unusable weights; changed settings and inexactness are returned, not raised."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return Resumed()
    start_limit = weight_limit(model)  # the freshly built model's: the run's own start
    state = load_checkpoint(ckpt, model, opt, device)
    if state.get("param_names") not in (None, group_names):
        raise CheckpointError(
            f"{ckpt} was written for other trainable parameters (e.g. "
            f"{_first_difference(state['param_names'], group_names)}): resume with the same model config."
        )
    limit = float(state.get("weight_limit") or start_limit)
    problem = weight_problem(model, limit)
    if problem:
        raise CheckpointError(
            f"{ckpt} holds unusable weights ({problem}), so resuming from it would diverge again whatever "
            "the settings. Delete that directory to resume from the checkpoint before it, or start a new run."
        )
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    out = Resumed(path=ckpt, start=state["step"], elapsed=float(state.get("elapsed", 0.0)),
                  metrics=state.get("metrics", {}), weight_limit=limit, monitor_ref=state.get("monitor_ref"))
    out.changed = {k: (v, getattr(cfg, k, None)) for k, v in (state.get("config") or {}).items()
                   if _plain(getattr(cfg, k, None)) != v}
    if state.get("seed") not in (None, seed):
        out.changed["seed"] = (state["seed"], seed)
    out.not_exact = restore_rng(state["rng"])
    saved_world = state.get("world_size")
    if saved_world is not None and saved_world != world:
        out.not_exact.insert(0, f"it was written by {saved_world} process(es) and this run has {world}, so each "
                                "rank draws other random numbers and sums other rows")
    saved_device = state.get("device")
    if saved_device is not None and saved_device != device.type:
        out.not_exact.append(f"it was written on {saved_device} and this run is on {device.type}, whose kernels "
                             "round differently")
    return out

