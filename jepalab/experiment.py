"""Turn a validated ``Experiment`` into a model and a data source, and run it with the trainer.

Why a separate step: the CLI, the tests and a notebook all need the same three lines (check the
config, build the parts with the experiment's seed, call the one trainer), and the run directory
must always record the fully resolved config so that ``jepalab resume`` and ``jepalab info`` can
rebuild exactly what was trained.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from jepalab.config import Experiment, config_error, save_experiment, to_dict
from jepalab.errors import ConfigError, JepalabError
from jepalab.preflight import (check_batch_memory, check_model_memory, check_resume_steps, check_writable_dir,
                               meta_model)

EXPERIMENT_FILE = "experiment.yaml"

# Integer fields that must be positive wherever they appear in model/data/train configs.
_POSITIVE_INTS = ("img_size", "patch_size", "embed_dim", "num_heads", "num_frames", "tubelet",
                  "in_chans", "batch_size", "steps", "accum_steps")
# Learning rates above this only overflow the optimizer's float32 arithmetic or blow the weights up.
MAX_LR = 1e6
# (a, b) pairs where a must be a multiple of b inside the same config dataclass.
_DIVISIBLE = (("img_size", "patch_size"), ("embed_dim", "num_heads"), ("num_frames", "tubelet"))


def _walk(obj: Any, where: str) -> Iterable[tuple[str, Any]]:
    """Yield ``(dotted_path, dataclass_instance)`` for ``obj`` and every nested dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield where, obj
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), f"{where}.{f.name}")


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise config_error(key, message)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_experiment(exp: Experiment) -> None:
    """Checks that types cannot express: positive sizes and steps, lr > 0, a patch grid that tiles
    the image, heads that divide the width, model and data agreeing on the image size. Config
    classes with their own ``validate()`` method are asked too; their ValueErrors become
    ConfigErrors naming the section."""
    _check(bool(exp.name) and "/" not in exp.name and exp.name not in (".", ".."), "name",
           f"'name' must be a non-empty name without '/', got {exp.name!r}.")
    _check(0 <= exp.seed < 2**63, "seed", f"'seed' must be in [0, 2**63), got {exp.seed}.")
    for section in ("model", "data", "train"):
        for where, obj in _walk(getattr(exp, section), section):
            vals = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            for k in _POSITIVE_INTS if section != "data" else ():  # data: 0 can mean "native"
                v = vals.get(k)
                _check(not _is_num(v) or v > 0, f"{where}.{k}", f"'{where}.{k}' must be positive, got {v}.")
            for big, small in _DIVISIBLE:
                a, b = vals.get(big), vals.get(small)
                if isinstance(a, int) and isinstance(b, int) and b > 0:
                    _check(a % b == 0, f"{where}.{small}",
                           f"'{where}.{big}'={a} must be divisible by '{where}.{small}'={b}.")
        cfg = getattr(exp, section)
        if callable(getattr(cfg, "validate", None)):
            try:
                cfg.validate()
            except ConfigError as e:
                raise config_error(section, f"{section}: {e}") from None
            except (ValueError, TypeError) as e:
                raise config_error(section, f"Invalid {section} config: {e}") from None
    tv = {f.name: getattr(exp.train, f.name) for f in dataclasses.fields(exp.train)}
    lr = tv.get("lr")
    if _is_num(lr):
        _check(math.isfinite(lr) and 0 < lr <= MAX_LR, "train.lr",
               f"'train.lr' must be a finite number in (0, {MAX_LR:g}], got {lr} (typical: 1e-4 to 1e-2).")
    for k in ("weight_decay", "warmup_steps", "checkpoint_every", "log_every", "monitor_every"):
        v = tv.get(k)
        _check(not _is_num(v) or v >= 0, f"train.{k}", f"'train.{k}' must be >= 0, got {v}.")
    gc = tv.get("grad_clip")
    _check(not _is_num(gc) or gc >= 0, "train.grad_clip",
           f"'train.grad_clip' must be >= 0 (0 or null turns clipping off), got {gc}.")
    mlr = tv.get("min_lr_ratio")
    _check(not _is_num(mlr) or 0 <= mlr <= 1, "train.min_lr_ratio",
           f"'train.min_lr_ratio' must be in [0, 1], got {mlr}.")
    dev = tv.get("device")
    if isinstance(dev, str) and dev != "auto":
        try:
            torch.device(dev)
        except RuntimeError:
            raise config_error("train.device", f"'train.device'={dev!r} is not a device: use auto, "
                               "cpu, cuda or mps.") from None
    for mk, dk, what in (("img_size", "img_size", "images of the wrong size"),
                         ("in_chans", "channels", "the wrong number of channels")):
        mv, dv = getattr(exp.model, mk, None), getattr(exp.data, dk, None)
        if _is_num(mv) and _is_num(dv) and dv > 0:  # data: 0 = the dataset's native value
            _check(mv == dv, f"data.{dk}", f"'data.{dk}'={dv} differs from 'model.{mk}'={mv}: the "
                   f"model would receive {what}; make them equal.")
    _check_history(exp)
    from jepalab.recipes import get_recipe

    try:
        meta_model(get_recipe(exp.recipe), exp.model)  # every constructor check, without allocating
    except ConfigError as e:
        raise config_error(getattr(e, "key", "") or "model", f"model: {e}") from None
    except JepalabError as e:
        raise config_error("model", f"Invalid model config: {e}") from None


def _check_history(exp: Experiment) -> None:
    """A predictor over ``model.history`` frames must see clips with a full window plus the frame
    it predicts; shorter clips would train it on windows it never sees when planning."""
    hist, frames = getattr(exp.model, "history", None), getattr(exp.data, "frames", None)
    if not (_is_num(hist) and _is_num(frames)) or hist < 1 or frames < 1:
        return
    skip = getattr(exp.model, "frameskip", 1)
    blocked = hasattr(exp.data, "frameskip")  # the source itself keeps every f-th frame
    model_frames = frames if blocked or not _is_num(skip) or skip < 1 else (frames - 1) // skip + 1
    _check(model_frames >= hist + 1, "model.history",
           f"'model.history'={hist} needs clips of at least {hist + 1} model frames, but 'data.frames'={frames}"
           + ("" if model_frames == frames else f" with frameskip {skip} gives {model_frames}")
           + f": raise data.frames or lower model.history to {max(1, model_frames - 1)}.")


def build(exp: Experiment) -> tuple[Any, Any]:
    """Build ``(model, source)`` for ``exp``. The model's initial weights are a function of
    ``exp.seed`` alone (the global RNG is restored afterwards)."""
    from jepalab.data import build_source
    from jepalab.recipes import get_recipe

    validate_experiment(exp)
    recipe_cls = get_recipe(exp.recipe)
    check_model_memory(meta_model(recipe_cls, exp.model), "cpu", training=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(exp.seed)
        try:
            model = recipe_cls(exp.model)
        except RuntimeError as e:
            if "alloc" not in str(e).lower():
                raise
            raise ConfigError(f"building the model ran out of memory ({str(e).splitlines()[0][:120]}): make it "
                              "smaller (e.g. lower model.embed_dim or the depth).") from None
    source = build_source(exp.source, exp.data)
    check_batch_memory(source, exp.train.batch_size, int(os.environ.get("WORLD_SIZE", "1") or 1))
    return model, source


def preflight(exp: Experiment, run_dir: str | os.PathLike, resume: bool = False) -> None:
    """Everything :func:`run` can check before building or writing anything: the config, that
    ``run_dir`` is (or can become) a writable directory, that the training device exists, that
    the model and its optimizer state fit its memory, and that a resumed run's ``train.steps``
    is not below the steps already completed."""
    from jepalab.recipes import get_recipe
    from jepalab.trainer.distributed import resolve_device

    validate_experiment(exp)
    check_writable_dir(run_dir, "--run-dir")
    device = resolve_device(exp.train.device, int(os.environ.get("LOCAL_RANK", "0") or 0))
    check_model_memory(meta_model(get_recipe(exp.recipe), exp.model), device, training=True)
    if resume:
        check_resume_steps(run_dir, exp.train.steps)


def run(exp: Experiment, run_dir: str | os.PathLike, resume: bool = False) -> Any:
    """Build the parts, train, and record the resolved config in ``run_dir/experiment.yaml``.

    Returns whatever ``jepalab.train.train`` returns. With ``resume=True`` the trainer continues
    from the newest checkpoint in ``run_dir/checkpoints``. The config is written by the trainer's
    ``before_write`` hook, i.e. only once the run directory is locked and the checkpoint has been
    checked against this config, so a refused or failed start leaves the run as it was.
    """
    from jepalab.train import train

    rd = Path(run_dir)
    preflight(exp, rd, resume=resume)
    model, source = build(exp)
    return train(model, source, exp.train, rd, seed=exp.seed, resume=resume, experiment=to_dict(exp),
                 before_write=lambda: save_experiment(exp, rd / EXPERIMENT_FILE))  # rank 0 only
