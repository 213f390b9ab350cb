"""Turn a validated ``Experiment`` into a model and a data source, and run it with the trainer.

Why a separate step: the CLI, the tests and a notebook all need the same three lines (check the
config, build the parts with the experiment's seed, call the one trainer), and the run directory
must always record the fully resolved config so that ``jepalab resume`` and ``jepalab info`` can
rebuild exactly what was trained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jepalab.config import Experiment, save_experiment, to_dict, validate_experiment
from jepalab.data import build_source
from jepalab.errors import ConfigError
from jepalab.preflight import (check_batch_memory, check_model_memory, check_resume_steps, check_writable_dir,
                               meta_model)
from jepalab.recipes import get_recipe
from jepalab.train import train
from jepalab.trainer.distributed import resolve_device

EXPERIMENT_FILE = "experiment.yaml"


def build(exp: Experiment) -> tuple[Any, Any]:
    """Build ``(model, source)`` for ``exp``. The model's initial weights are a function of
    ``exp.seed`` alone (the global RNG is restored afterwards)."""
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
    rd = Path(run_dir)
    preflight(exp, rd, resume=resume)
    model, source = build(exp)
    return train(model, source, exp.train, rd, seed=exp.seed, resume=resume, experiment=to_dict(exp),
                 before_write=lambda: save_experiment(exp, rd / EXPERIMENT_FILE))  # rank 0 only
