"""Opt-in ``torch.compile`` of a recipe's modules for training (``TrainConfig.compile``).

Why the modules and not ``training_step`` as a whole: a training step mixes tensor maths with
Python control flow that Dynamo handles badly: I-JEPA/V-JEPA draw their masks with Python loops
over ``int(torch.randint(...))``, which Dynamo would trace into dozens of tiny frames that
recompile for every new block position; SIGReg seeds a ``torch.Generator`` from the step. The
FLOPs, though, live in modules with a ``forward`` (encoders, predictors, projectors, losses), so
compiling those (in place, ``nn.Module.compile``) gets the speed and leaves masks, augmentations
and the optimizer eager. In place also means ``state_dict()`` keys do not gain the
``_orig_mod.`` prefix that ``torch.compile(module)`` adds, so checkpoints of compiled and eager
runs are interchangeable.

Numerics: ``fallback_random=True`` makes random ops inside compiled graphs (dropout, noise) use
eager's RNG stream, so a compiled run draws the same numbers as an eager one and resume stays
bit-exact in its randomness. ``dynamic=None`` (Dynamo's default "automatic dynamic"): the first
shape seen is compiled static; when a size changes (I-JEPA's context/target counts vary per step)
that size is recompiled once as symbolic, so a masked recipe costs 2-3 compiles per module, a
view recipe (fixed shapes) one.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch
from torch import nn

from jepalab.errors import ConfigError, MissingDependencyError

COMPILE_OPTIONS: dict[str, Any] = {"fallback_random": True}


def _overrides_forward(m: nn.Module) -> bool:
    return type(m).forward is not nn.Module.forward


def compile_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost submodules of ``model`` that define ``forward`` (name, module), in
    registration order; the recipe itself is never one (its entry point is ``training_step``).
    Parameter-free modules count (losses compile well). torch's own modules (``nn.Linear``,
    ``nn.Sequential``, ...) are searched, not taken: Dynamo does not trace a frame that starts
    inside ``torch.nn``, so compiling one alone would run it eagerly anyway."""
    found: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        for name, child in m.named_children():
            full = f"{prefix}{name}"
            if _overrides_forward(child) and not type(child).__module__.startswith("torch."):
                found.append((full, child))
            else:
                walk(full + ".", child)

    walk("", model)
    return found


def check_compile_available(device: torch.device) -> None:
    """Raise an actionable error when ``torch.compile`` cannot run here, before training starts
    (otherwise it would fail at the first step, after data and checkpoints were set up)."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError(
            f"train.compile=true, but torch.compile is not supported on this platform/Python "
            f"(torch {torch.__version__}); set train.compile=false to train eagerly."
        )
    if device.type == "cpu":
        cxx = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        if cxx is None or shutil.which(cxx.split()[0]) is None:
            raise MissingDependencyError(
                "train.compile=true on CPU needs a C++ compiler for torch.compile's inductor backend, and "
                "none was found (g++, c++, clang++ or $CXX): install one (e.g. apt-get install g++) or set "
                "train.compile=false."
            )
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise MissingDependencyError(
                "train.compile=true on CUDA needs Triton for torch.compile's inductor backend: "
                "pip install triton (the version matching your torch), or set train.compile=false."
            )


def compile_model(model: nn.Module, device: torch.device) -> list[str]:
    """Compile the :func:`compile_targets` of ``model`` in place; return their names.

    Undo with :func:`uncompile_model` (the trainer does, when training ends, so that evaluation
    afterwards does not pay a recompile for ``eval()``/``no_grad``)."""
    check_compile_available(device)
    targets = compile_targets(model)
    if not targets:
        raise ConfigError(
            f"train.compile=true, but {type(model).__name__} has no submodule with a forward() to compile; "
            "set train.compile=false."
        )
    for _, m in targets:
        m.compile(dynamic=None, options=COMPILE_OPTIONS)
    return [n for n, _ in targets]


def uncompile_model(model: nn.Module, names: list[str]) -> None:
    """Return the submodules ``names`` (from :func:`compile_model`) to eager execution; modules
    a user compiled themselves are left alone."""
    for name in names:
        # nn.Module.compile stores the compiled call here; None is its "not compiled" value.
        model.get_submodule(name)._compiled_call_impl = None


def compile_failure(e: BaseException) -> bool:
    """Whether ``e`` is torch.compile failing to build code (not an error of the recipe itself)."""
    import torch._dynamo.exc as dexc

    kinds: tuple[type, ...] = (dexc.BackendCompilerFailed,)
    try:
        from torch._inductor.exc import InductorError

        kinds += (InductorError,)
    except ImportError:  # older torch
        pass
    return isinstance(e, kinds)
