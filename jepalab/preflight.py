"""Checks of *this machine* before a command does any work: where it writes, which device it
uses, whether the model and one batch fit in memory, whether a resumed run can still go forward.

Why apart from config validation: a config is valid or not anywhere, but a writable run
directory, a GPU, or enough free memory are facts of the machine at the moment a command starts.
Asked first, a hopeless run fails in a second with one sentence and exit code 2, instead of a
traceback after the first files are written, an allocation error, or a hang while the operating
system swaps (a billion-row batch is materialised row by row before anything complains).

The estimates are deliberately rough lower bounds (weights, gradients and the two AdamW moments;
the raw input batch): a run they reject cannot work, a run they accept may still need more memory
for activations.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepalab.errors import ConfigError, JepalabError

#: a batch's raw inputs may take at most this share of the free memory (the rest: activations).
BATCH_SHARE = 0.5


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`ConfigError` unless ``path`` is, or can be created as, a writable directory.

    Nothing is created: the nearest existing ancestor must be a directory this process may write
    into (a read-only file system counts as not writable). ``what`` names the option in messages,
    e.g. ``"--run-dir"``."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = f"'{p}'" if probe == p else f"'{p}' cannot be created because '{probe}'"
        raise ConfigError(f"{what} {where} is a file, not a directory: choose another path for {what}.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{p}' is not writable (no write permission in '{probe}'): choose a directory "
                          f"you can write to for {what}.")
    return p


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Free memory in bytes where tensors of ``device`` live (GPU memory for CUDA, otherwise the
    machine's available RAM); ``None`` when it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def meta_model(recipe_cls: type, model_cfg: Any) -> nn.Module | None:
    """Build the recipe on PyTorch's ``meta`` device: every shape and constructor check runs, no
    memory is allocated. jepalab's own errors propagate (they are the user's); a recipe whose
    constructor cannot run without data (loads files, reads tensor values) gives ``None``."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return recipe_cls(model_cfg)
    except JepalabError:
        raise
    except Exception:  # noqa: BLE001 - meta-incompatible constructors are checked when really built
        return None


def model_bytes(model: nn.Module, training: bool) -> tuple[int, int]:
    """``(parameter count, bytes)``: weights and buffers, plus for training the gradient and the
    two AdamW moments of every trainable parameter."""
    n_params = sum(p.numel() for p in model.parameters())
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return n_params, weights + (3 * trainable if training else 0)


def check_model_memory(model: nn.Module | None, device: torch.device | str, training: bool) -> None:
    """Refuse a model whose weights (and, for ``training``, optimizer state) exceed the free memory
    of ``device``."""
    if model is None:
        return
    n, need = model_bytes(model, training)
    free = available_memory(device)
    if free is None or need <= free:
        return
    use = "to train (weights, gradients and AdamW state)" if training else "for its weights"
    count = f"{n / 1e6:.1f} million" if n < 1e9 else f"{n:.2g}"
    raise ConfigError(f"the model has {count} parameters and needs about {_human(need)} {use}, but "
                      f"{torch.device(device).type} has {_human(free)} free: make it smaller (e.g. lower "
                      "model.embed_dim or the depth).")


def check_batch_memory(source: Any, batch_size: int, world_size: int = 1) -> None:
    """Refuse a ``batch_size`` whose raw input rows alone would take more than ``BATCH_SHARE`` of
    the free memory (measured from a 2-row batch of ``source``)."""
    free = available_memory("cpu")
    if free is None or not hasattr(source, "batch"):
        return
    with torch.random.fork_rng(devices=[]):
        sample = source.batch(0, 2)
    rows = max(1, min(int(v.shape[0]) for v in sample.values() if isinstance(v, torch.Tensor) and v.dim() > 0))
    per_row = sum(v.numel() * v.element_size() for v in sample.values() if isinstance(v, torch.Tensor)) / rows
    need = per_row * math.ceil(batch_size / max(1, world_size))
    if need > BATCH_SHARE * free:
        raise ConfigError(f"train.batch_size={batch_size} needs about {_human(need)} for the input rows of one "
                          f"step alone ({_human(per_row)} per row), more than half of the {_human(free)} of free "
                          "memory: lower train.batch_size.")


def check_resume_steps(run_dir: str | os.PathLike, steps: int) -> None:
    """Refuse to resume with ``train.steps`` below the steps the newest checkpoint has completed:
    the trainer would do nothing, yet the run would claim a shorter plan than it has run."""
    from jepalab.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return
    done = int(ckpt.name.split("_", 1)[1])
    if steps < done:
        raise ConfigError(f"train.steps={steps} is below the {done} steps {run_dir} has already completed: "
                          f"resume with --set train.steps=N for some N >= {done} (or start a new run).")


__all__ = ["check_writable_dir", "available_memory", "meta_model", "model_bytes", "check_model_memory",
           "check_batch_memory", "check_resume_steps", "BATCH_SHARE"]
