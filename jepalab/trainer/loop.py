"""One trainer for every recipe: AdamW + warmup/cosine, grad clipping and accumulation, AMP,
bit-exact checkpoint/resume, a NaN guard, collapse monitoring and DDP under ``torchrun``.

Why one trainer: recipes only say how a batch becomes a loss (``Recipe.training_step``); the
engineering that makes long runs survivable (resume after a kill, clear divergence errors,
multi-GPU) is written and tested once, here. Determinism: before every step the torch RNG is
seeded from ``(seed, step, rank)`` and data come from ``source.batch(step, ...)`` (a pure function
of the step), so a resumed run repeats exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from jepalab.checkpoint import capture_rng, list_checkpoints, remove_stale_temp_dirs, save_checkpoint
from jepalab.draws import attach as attach_draws
from jepalab.errors import ConfigError, DataError, RunBusyError
from jepalab.recipes.base import Recipe
from jepalab.runlog import RunLog
from jepalab.trainer.batchnorm import restore_batchnorm, use_global_batchnorm
from jepalab.trainer.compile import check_compile_available, compile_failure, compile_model, uncompile_model
from jepalab.trainer.config import TrainConfig, lr_at, param_groups, step_seed
from jepalab.trainer.distributed import DistContext, setup_distributed
from jepalab.trainer.guard import diverged_error, exploded_error, retire_after_divergence, weight_limit, weight_problem
from jepalab.trainer.lock import RunLock
from jepalab.trainer.monitor import monitor_step, rank_reference
from jepalab.trainer.resume import Resumed, restore


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``cfg.amp`` on ``device`` (``None`` = fp32)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and amp in ("auto", "bf16") and not torch.cuda.is_bf16_supported():
        if amp == "auto":
            return None
        raise ConfigError("train.amp='bf16' but this GPU has no bf16 support: use amp='fp16' or 'off'.")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp='fp16' needs CUDA (device is {device.type}): use amp='off' (fp32).")
    return torch.float16 if amp == "fp16" else torch.bfloat16


class _StepModule(nn.Module):
    """Thin wrapper whose ``forward`` is ``recipe.training_step``, so that DDP (which hooks
    ``forward``) synchronises the recipe's gradients."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe

    def forward(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        return self.recipe.training_step(batch, step)


def _check_batch(batch: Any, rows: int, step: int) -> None:
    if not isinstance(batch, dict) or not any(torch.is_tensor(v) for v in batch.values()):
        raise DataError(f"source.batch(step={step}) must return a dict of tensors, got {type(batch).__name__}.")
    for k, v in batch.items():
        if torch.is_tensor(v) and (v.ndim == 0 or v.shape[0] != rows):
            raise DataError(
                f"source.batch(step={step}) returned '{k}' with shape {tuple(v.shape)}; this rank expects "
                f"{rows} rows (global batch / world size). Check the source's rank/world_size slicing."
            )


def _micro_batches(batch: dict[str, Any], k: int, device: torch.device) -> list[dict[str, Any]]:
    """Split a rank's batch into ``k`` equal row slices and move tensors to ``device``."""
    rows = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
    m = rows // k
    return [
        {n: (v[i * m : (i + 1) * m].to(device, non_blocking=True) if torch.is_tensor(v) else v) for n, v in batch.items()}
        for i in range(k)
    ]


def _scalars(out: Any, step: int) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss and the other scalar entries of a ``training_step`` output."""
    if not isinstance(out, dict) or not torch.is_tensor(out.get("loss")) or out["loss"].numel() != 1:
        raise DataError(
            f"training_step(step={step}) must return a dict with a scalar tensor 'loss'; got "
            f"{type(out).__name__} with keys {sorted(out) if isinstance(out, dict) else '-'}."
        )
    extra = {
        k: v.detach().float().reshape(())
        for k, v in out.items()
        if k not in ("loss", "embeddings") and torch.is_tensor(v) and v.numel() == 1
    }
    return out["loss"], extra


def _ddp_forward(runner: nn.Module, batch: dict[str, Any], step: int) -> Any:
    """DDP forward that turns its 'parameters did not receive grad' error into advice."""
    try:
        return runner(batch, step)
    except RuntimeError as e:
        if "find_unused_parameters" not in str(e):
            raise
        raise ConfigError(
            "Under DDP every trainable parameter must get a gradient from training_step each step, but "
            "some did not. Freeze the parameters the loss does not use (requires_grad_(False)) so that DDP "
            f"does not wait for their gradients. DDP said: {str(e).splitlines()[0]}"
        ) from e


def _grad_norm(params: list[nn.Parameter], clip: float) -> Tensor:
    """Total L2 grad norm; clips in place when ``clip > 0``."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def train(
    model: Recipe,
    source: Any,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    seed: int = 0,
    resume: bool = False,
    experiment: dict[str, Any] | None = None,
    before_write: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``source`` for ``cfg.steps`` optimizer steps; return the final metrics.

    ``source.batch(step, batch_size, rank, world_size) -> dict[str, Tensor]`` (rows ``(B/W, ...)``)
    must be deterministic in the step. ``resume=True`` continues from the newest checkpoint in
    ``run_dir`` bit-exactly (or starts fresh, saying so, if there is none). Under ``torchrun``
    (``WORLD_SIZE>1``) it runs DDP; only rank 0 writes logs and checkpoints. ``experiment`` (the
    full experiment config) is stored in every checkpoint for reproducibility.

    One process at a time may write ``run_dir`` (``jepalab.trainer.lock``: a second one gets
    :class:`~jepalab.errors.RunBusyError`). ``before_write`` is called once, on rank 0, after the
    lock is held and the checkpoint to resume from has been loaded and checked, before anything
    is written: the place to record the run's config, so that a refused or failed start leaves
    the run directory as it was.
    """
    if not isinstance(model, Recipe):
        raise ConfigError(f"train() needs a jepalab Recipe, got {type(model).__name__}; subclass jepalab.recipes.base.Recipe.")
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r} (pass resume=... by keyword).")
    if not callable(getattr(source, "batch", None)):
        raise DataError(f"source {type(source).__name__} has no batch(step, batch_size, rank, world_size) method.")
    dist_ctx = setup_distributed(cfg.device)
    try:
        lock = _lock(Path(run_dir), dist_ctx, "resume" if resume else "train")
        try:
            return _run(model, source, cfg, Path(run_dir), seed, resume, experiment, dist_ctx, before_write)
        finally:
            if lock is not None:
                lock.release()
    finally:
        dist_ctx.close()


def _lock(run_dir: Path, dc: DistContext, command: str) -> RunLock | None:
    """Rank 0 locks the run directory; every rank stops if it could not."""
    lock, err = None, None
    if dc.rank == 0:
        try:
            lock = RunLock(run_dir, command).acquire()
        except RunBusyError as e:
            err = e
    if not dc.all_true(err is None):
        if lock is not None:
            lock.release()
        raise err or RunBusyError(f"{run_dir} is in use by another process (rank 0 could not lock it).")
    return lock


def _run(
    model: Recipe, source: Any, cfg: TrainConfig, run_dir: Path, seed: int, resume: bool,
    experiment: dict[str, Any] | None, dc: DistContext, before_write: Callable[[], None] | None,
) -> dict[str, Any]:
    rank, world, device = dc.rank, dc.world_size, dc.device
    if cfg.batch_size % (world * cfg.accum_steps):
        raise ConfigError(
            f"train.batch_size ({cfg.batch_size}) must be divisible by world_size x accum_steps "
            f"({world} x {cfg.accum_steps})."
        )
    amp = _amp_dtype(cfg.amp, device)
    if cfg.compile:  # fail before any file is written, not at the first step
        check_compile_available(device)
    model.to(device).train()
    groups, group_names = param_groups(model, cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None

    res = Resumed()
    if resume:  # checks that it fits, loads it, and says what is not exact (jepalab.trainer.resume)
        res = restore(run_dir, model, opt, scaler, cfg, seed, group_names, world, device)
    elif list_checkpoints(run_dir):
        raise ConfigError(
            f"{run_dir} already holds checkpoints; pass resume=True (CLI: `jepalab resume {run_dir}`) to "
            "continue that run, or choose a new run directory."
        )
    if res.weight_limit is None:  # the explosion bound, relative to the run's initial weights
        res.weight_limit = weight_limit(model)
    dc.barrier()  # every rank has read the checkpoint before rank 0 may write a new one
    if rank == 0 and before_write is not None:
        before_write()
    start = res.start
    log = RunLog(run_dir, total_steps=cfg.steps, start_step=start, enabled=rank == 0, progress=cfg.progress)
    compiled: list[str] = []
    bn_swaps = use_global_batchnorm(model) if world > 1 else []  # BatchNorm statistics over all ranks
    try:
        if rank == 0:
            remove_stale_temp_dirs(run_dir)
            if res.path is not None:
                log.event("resume", f"resuming from {res.path} at step {start}", step=start)
            elif resume:
                log.event("resume", f"no checkpoint in {run_dir}: starting from step 0", step=0)
            if res.changed:  # allowed (e.g. more steps, another lr), but the run is no longer one recipe
                log.event("config_changed", "resumed with different settings: " + ", ".join(
                    f"{k} {a!r} -> {b!r}" for k, (a, b) in res.changed.items()), level=logging.WARNING)
            if res.not_exact:  # allowed, but it must not pass for a bit-exact continuation
                log.event("not_bit_exact", f"resuming from {res.path} does not repeat the uninterrupted run "
                          f"bit-exactly: {'; '.join(res.not_exact)}. Resume with the same number of processes "
                          "and GPUs to continue it exactly.", level=logging.WARNING, step=start)
            log.event("start", f"training {type(model).__name__} for {cfg.steps} steps on {device} x{world}",
                      device=str(device), world_size=world, amp=str(amp), config=dataclasses.asdict(cfg))
        if cfg.compile:  # in place, before DDP wraps it: state_dict keys stay those of the eager model
            compiled = names = compile_model(model, device)
            log.event("compile", f"torch.compile (inductor) of {', '.join(names)}; the first steps include "
                      "compilation (tens of seconds on CPU)", modules=names)
        runner: nn.Module = _StepModule(model)
        ddp = None
        if world > 1:
            ddp = torch.nn.parallel.DistributedDataParallel(
                runner, device_ids=[device.index] if device.type == "cuda" else None
            )
            runner = ddp
        return _loop(model, source, cfg, run_dir, seed, experiment, dc, log, runner, ddp, opt, scaler,
                     params, group_names, amp, res)
    finally:
        uncompile_model(model, compiled)  # the returned model runs eagerly (no recompiles for eval/no_grad)
        restore_batchnorm(bn_swaps)
        log.close()


def _forward(runner: nn.Module, ddp: nn.Module | None, mb: dict[str, Any], step: int) -> Any:
    """One ``training_step`` call; a torch.compile build failure becomes advice to switch it off."""
    try:
        return _ddp_forward(runner, mb, step) if ddp is not None else runner(mb, step)
    except Exception as e:
        if not compile_failure(e):
            raise
        cause = getattr(e, "inner_exception", None) or e.__cause__ or e  # the compiler's own error
        first = (str(cause).strip().splitlines() or [""])[0][:300]
        raise ConfigError(
            f"torch.compile could not build the training step at step {step} ({type(cause).__name__}: {first}). "
            "Set train.compile=false (CLI: --set train.compile=false) to train eagerly."
        ) from e


def _loop(
    model: Recipe, source: Any, cfg: TrainConfig, run_dir: Path, seed: int, experiment: dict[str, Any] | None,
    dc: DistContext, log: RunLog, runner: nn.Module, ddp: nn.Module | None, opt: torch.optim.Optimizer,
    scaler: Any, params: list[nn.Parameter], group_names: list[list[str]], amp: torch.dtype | None,
    res: Resumed,
) -> dict[str, Any]:
    rank, world, device = dc.rank, dc.world_size, dc.device
    start, elapsed0, metrics = res.start, res.elapsed, res.metrics
    k = cfg.accum_steps
    rows = cfg.batch_size // world
    t0 = time.perf_counter()
    t_last, step_last, collapsed = t0, start, False
    for step in range(start, cfg.steps):
        torch.manual_seed(step_seed(seed, step, rank))
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)  # lr_scale: Recipe.lr_scales()
        batch = source.batch(step, cfg.batch_size, rank=rank, world_size=world)
        _check_batch(batch, rows, step)
        # masks / augmentations keyed by (seed, step, global row), not by rank (jepalab.draws)
        batch = attach_draws(batch, seed, step, rank * rows, cfg.batch_size)
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        extra_sum: dict[str, Tensor] = {}
        emb = None
        for i, mb in enumerate(_micro_batches(batch, k, device)):
            sync = contextlib.nullcontext() if ddp is None or i == k - 1 else ddp.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    out = _forward(runner, ddp, mb, step)
                loss, extra = _scalars(out, step)
                scaled = loss.float() / k
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss_sum += scaled.detach()
            for name, v in extra.items():
                extra_sum[name] = extra_sum.get(name, 0) + v / k
            emb = out.get("embeddings", emb)
        if step == 0 and rank == 0 and cfg.monitor_every > 0 and res.monitor_ref is None:
            res.monitor_ref = rank_reference(emb)  # the run's own start, for the relative collapse test
        if world > 1:  # global mean loss for logging; a NaN on any rank reaches every rank
            dc.all_reduce_mean(loss_sum)
        if scaler is not None:
            scaler.unscale_(opt)
        gnorm = _grad_norm(params, cfg.grad_clip)
        loss_v, gnorm_v = float(loss_sum), float(gnorm)
        if not math.isfinite(loss_v) or (scaler is None and not math.isfinite(gnorm_v)):
            # checkpoint step_<step> holds the weights whose forward pass this was: set it aside
            advice = retire_after_divergence(run_dir, step) if rank == 0 else ""
            log.event("diverged", f"loss={loss_v} grad_norm={gnorm_v} at step {step}", level=logging.ERROR, step=step)
            raise diverged_error(step, loss_v, gnorm_v, cfg, run_dir, advice)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        model.after_optimizer_step(step)
        done = step + 1
        log.advance()

        is_log = done % cfg.log_every == 0 or done == cfg.steps
        is_mon = cfg.monitor_every > 0 and (done % cfg.monitor_every == 0 or done == cfg.steps)
        if is_log or is_mon:
            now = time.perf_counter()
            metrics = {
                "step": done,
                "time": round(elapsed0 + now - t0, 4),
                "loss": loss_v,
                **{n: float(v) for n, v in extra_sum.items()},
                "lr": lr,
                "grad_norm": gnorm_v,
                "samples_per_s": (done - step_last) * cfg.batch_size / max(now - t_last, 1e-9),
            }
            t_last, step_last = now, done
            if is_mon and rank == 0:
                mon, collapsed = monitor_step(emb, log, done, collapsed, res.monitor_ref)
                metrics.update(mon)
            log.metrics(metrics)

        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps:
            problem = weight_problem(model, res.weight_limit)  # same weights on every rank: same answer
            if problem:  # never save weights that cannot be resumed from
                advice = retire_after_divergence(run_dir, done) if rank == 0 else ""
                log.event("diverged", f"weights unusable after step {step}: {problem}", level=logging.ERROR, step=done)
                raise exploded_error(step, problem, cfg, run_dir, advice)
            dc.barrier()
            if rank == 0:
                state = {
                    "config": dataclasses.asdict(cfg),
                    "seed": seed,
                    "world_size": world,
                    "device": device.type,
                    "weight_limit": res.weight_limit,
                    "monitor_ref": res.monitor_ref,
                    "scheduler": {"kind": "warmup_cosine", "last_lr": lr,
                                  "next_lr": lr_at(done, cfg) if done < cfg.steps else None},
                    "data": {"next_step": done, "global_batch": cfg.batch_size},
                    "rng": capture_rng(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "param_names": group_names,
                    "metrics": metrics,
                    "elapsed": elapsed0 + time.perf_counter() - t0,
                    "experiment": experiment,
                    "versions": {"torch": torch.__version__},
                }
                save_checkpoint(run_dir, done, model, opt, state, keep_last=cfg.keep_last)
            dc.barrier()

    if rank == 0 and dataclasses.is_dataclass(model.config):
        model.save_pretrained(run_dir)  # run_dir/model.safetensors + config.json: Recipe.from_pretrained(run_dir)
    return metrics

