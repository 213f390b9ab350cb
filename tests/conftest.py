"""Shared fixtures: a tiny but real Recipe (student, EMA teacher, RNG use) and a deterministic
source, small enough that a training step takes about a millisecond on one CPU thread.

Also runnable as ``python -m conftest '<json>'`` (with this directory on PYTHONPATH), so that the
resume and DDP tests can train in a subprocess / under torchrun with exactly the same model.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.recipes.base import Recipe

torch.set_num_threads(1)
TESTS_DIR = Path(__file__).resolve().parent


@dataclass
class TinyConfig:
    dim: int = 8
    hidden: int = 16
    noise: float = 0.1  # input noise drawn from the global torch RNG (makes resume non-trivial)
    ema: float = 0.9
    sleep: float = 0.0  # seconds per step, so a subprocess can be killed mid-run
    nan_at: int = -1  # step whose loss is NaN (divergence test)
    collapse: bool = False  # report constant embeddings (collapse monitor test)
    unused: bool = False  # add a trainable layer the loss never uses (DDP error test)


class TinyRecipe(Recipe):
    """Regression head on a 2-layer encoder + an EMA teacher consistency term (a mini JEPA)."""

    name = "tiny"
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        h = config.hidden
        self.encoder = nn.Sequential(nn.Linear(config.dim, h), nn.LayerNorm(h), nn.GELU(), nn.Linear(h, h))
        self.pos_embed = nn.Parameter(torch.zeros(1, h))
        self.head = nn.Linear(h, 4)
        self.teacher = copy.deepcopy(self.encoder).requires_grad_(False)
        if config.unused:
            self.spare = nn.Linear(h, h)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        xn = x + self.config.noise * torch.randn_like(x) if self.config.noise else x
        z = self.encoder(xn) + self.pos_embed
        mse = F.mse_loss(self.head(z), y)
        with torch.no_grad():
            zt = self.teacher(x)
        loss = mse + 0.1 * F.mse_loss(z, zt)
        if step == self.config.nan_at:
            loss = loss * float("nan")
        if self.config.sleep:
            time.sleep(self.config.sleep)
        emb = torch.ones_like(z) if self.config.collapse else z.detach()
        return {"loss": loss, "mse": mse.detach(), "embeddings": emb}

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        for pt, ps in zip(self.teacher.parameters(), self.encoder.parameters()):
            pt.mul_(self.config.ema).add_(ps.detach(), alpha=1 - self.config.ema)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)


RECIPE = TinyRecipe


class TinySource:
    """``y = tanh(W x)`` with ``x ~ N(0, I)``; batch ``step`` is a pure function of (seed, step)."""

    def __init__(self, seed: int = 0, dim: int = 8) -> None:
        self.seed, self.dim = seed, dim
        self.w = torch.randn(4, dim, generator=torch.Generator().manual_seed(seed + 12345)) / dim**0.5

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        x = torch.randn(batch_size, self.dim, generator=g)
        y = torch.tanh(3 * x @ self.w.T)
        per = batch_size // world_size
        sl = slice(rank * per, (rank + 1) * per)
        return {"x": x[sl], "y": y[sl]}


def make_model(init_seed: int = 0, **cfg: Any) -> TinyRecipe:
    """A TinyRecipe whose initial weights depend only on ``init_seed``."""
    torch.manual_seed(init_seed)
    return TinyRecipe(TinyConfig(**cfg))


def worker_main(argv: list[str]) -> None:
    """Entry point of training subprocesses: ``{"model": {...}, "train": {...}, "run_dir", "seed",
    "resume"}`` as one JSON argument."""
    from jepalab.train import TrainConfig, train

    args = json.loads(argv[0])
    model = make_model(args.get("init_seed", 0), **args.get("model", {}))
    train(model, TinySource(), TrainConfig(**args["train"]), args["run_dir"], seed=args.get("seed", 0),
          resume=args.get("resume", False))


def subprocess_env() -> dict[str, str]:
    """Environment for child Pythons: this directory importable, one thread each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def worker_cmd(args: dict[str, Any], nproc: int = 1) -> list[str]:
    """Command line that trains per ``args`` in ``nproc`` processes (torchrun when > 1)."""
    payload = json.dumps(args)
    if nproc == 1:
        return [sys.executable, "-m", "conftest", payload]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "conftest", payload]


def run_worker(args: dict[str, Any], nproc: int = 1, timeout: float = 240, check: bool = True
               ) -> subprocess.CompletedProcess:
    """Run a worker to completion; fail the test with its output if it fails and ``check``."""
    proc = subprocess.run(worker_cmd(args, nproc), env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=TESTS_DIR)
    if check and proc.returncode != 0:
        pytest.fail(f"worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def tiny_model() -> TinyRecipe:
    return make_model()


@pytest.fixture
def tiny_source() -> TinySource:
    return TinySource()


if __name__ == "__main__":
    worker_main(sys.argv[1:])
