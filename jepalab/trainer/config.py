"""Training hyper-parameters, the learning-rate schedule, weight-decay groups and per-step seeds.

Why here and not in the loop: these are pure functions of the config, tested on their own
(``lr_at`` values, which parameters decay) and reused by benchmarks and the CLI.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from jepalab.errors import ConfigError
from jepalab.recipes.base import Recipe


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings shared by all recipes.

    ``batch_size`` is the GLOBAL batch: under DDP each of ``W`` ranks takes ``B/W`` rows, and with
    ``accum_steps=k`` each optimizer step runs ``k`` micro-batches of ``B/(W*k)`` rows, so neither
    changes the math. ``amp="auto"`` = bf16 autocast on CUDA when supported, fp32 on CPU/MPS.
    ``grad_clip=0`` and ``monitor_every=0`` switch those off; ``checkpoint_every=0`` saves only at
    the end. ``compile=True`` runs the recipe's modules (encoders, predictors, heads, losses)
    through ``torch.compile`` during training (``jepalab.trainer.compile``): tens of seconds of
    compilation first, same losses and checkpoints as eager; masks and augmentations stay eager.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    accum_steps: int = 1
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    monitor_every: int = 100
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        def need_int(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"train.{name} must be an integer >= {lo}, got {v!r}.")

        def need_float(name: str, lo: float, hi: float = math.inf, hi_open: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v and (v < hi if hi_open else v <= hi)):
                bound = f"in [{lo}, {hi}{')' if hi_open else ']'}" if hi != math.inf else f">= {lo}"
                raise ConfigError(f"train.{name} must be a number {bound}, got {v!r}.")
            setattr(self, name, float(v))

        for name in ("steps", "batch_size", "accum_steps", "keep_last", "log_every"):
            need_int(name, 1)
        for name in ("warmup_steps", "checkpoint_every", "monitor_every"):
            need_int(name, 0)
        need_float("lr", 0.0)
        if self.lr == 0:
            raise ConfigError("train.lr must be > 0; to freeze a model, mark its parameters requires_grad=False.")
        need_float("weight_decay", 0.0)
        need_float("min_lr_ratio", 0.0, 1.0)
        need_float("grad_clip", 0.0)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas
        ):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {self.betas!r}.")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.warmup_steps > self.steps:
            raise ConfigError(
                f"train.warmup_steps ({self.warmup_steps}) exceeds train.steps ({self.steps}): lower warmup_steps."
            )
        if self.batch_size % self.accum_steps:
            raise ConfigError(
                f"train.batch_size ({self.batch_size}) must be divisible by train.accum_steps ({self.accum_steps})."
            )
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"train.amp must be one of auto, off, bf16, fp16; got {self.amp!r}.")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"train.device must be one of auto, cpu, cuda, mps; got {self.device!r}.")
        for name in ("compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"train.{name} must be true or false, got {getattr(self, name)!r}.")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of 0-based ``step``: linear warmup to ``lr`` over ``warmup_steps`` steps
    (``lr*(step+1)/warmup``), then half-cosine down to ``lr*min_lr_ratio`` at ``steps``."""
    if step < 0:
        raise ConfigError(f"step must be >= 0, got {step}.")
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_scale_of(scales: dict[str, float], name: str) -> float:
    """The learning-rate multiplier of parameter ``name``: the longest prefix of ``scales`` that it
    starts with, else 1."""
    hits = [k for k in scales if name.startswith(k)]
    return float(scales[max(hits, key=len)]) if hits else 1.0


def param_groups(model: Recipe, weight_decay: float) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """AdamW groups over ``model.trainable_parameters()``: decay on weight matrices, none on
    biases, norm scales (``ndim <= 1``) and position/mask/cls tokens (names with pos/token).
    Parameters with a learning-rate multiplier (``model.lr_scales()``) get groups of their own,
    after the two plain ones, carrying ``lr_scale``."""
    trainable = {id(p) for p in model.trainable_parameters()}
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    buckets: dict[tuple[float, bool], tuple[list[nn.Parameter], list[str]]] = {(1.0, False): ([], []),
                                                                              (1.0, True): ([], [])}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) not in trainable or id(p) in seen:
            continue
        seen.add(id(p))
        leaf = name.rsplit(".", 1)[-1].lower()
        exempt = p.ndim <= 1 or "pos" in leaf or "token" in leaf
        params, names = buckets.setdefault((lr_scale_of(scales, name), exempt), ([], []))
        params.append(p)
        names.append(name)
    if seen != trainable:
        raise ConfigError(
            f"{type(model).__name__}.trainable_parameters() returns tensors that are not parameters of "
            "the model; register them as submodules/parameters so they are saved and synchronised."
        )
    if not seen:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters (all requires_grad=False).")
    groups, group_names = [], []
    for (scale, exempt), (params, names) in buckets.items():
        if scale != 1.0 and not params:
            continue
        group = {"params": params, "weight_decay": 0.0 if exempt else weight_decay}
        if scale != 1.0:
            group["lr_scale"] = scale
        groups.append(group)
        group_names.append(names)
    return groups, group_names


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step on one rank: a hash, so nearby (seed, step) pairs are unrelated."""
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
