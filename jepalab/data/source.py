"""The contract every data source keeps: ``batch(step, batch_size, rank, world_size)``.

A source is a pure function of ``(seed, step)``: the trainer resumes bit-exactly without saving a
sampler, and DDP ranks take disjoint row slices of the *same* global batch, so the number of
processes never changes the math. The seed mixers and the train/test split below are shared by
the sources, so that every one of them draws and splits the same way.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from jepalab.errors import ConfigError, DataError


class Source(Protocol):
    """What the trainer and the evaluators need from a dataset."""

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]: ...


def rank_rows(step: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Check ``batch`` arguments and return this rank's rows ``[lo, hi)`` of the global batch."""
    if not isinstance(step, int) or step < 0:
        raise DataError(f"step must be an int >= 0; got {step!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be an int >= 1; got {batch_size!r}.")
    if not isinstance(world_size, int) or world_size < 1 or batch_size % world_size:
        raise DataError(f"global batch_size {batch_size} must be divisible by world_size {world_size}: "
                        "choose a global batch size divisible by the number of processes.")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, {world_size}); got {rank!r}.")
    per = batch_size // world_size
    return rank * per, (rank + 1) * per


def mix_seed(*parts: int) -> int:
    """SplitMix64 over the parts: a well-spread 63-bit seed, distinct for distinct tuples."""
    mask = (1 << 64) - 1
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & mask)) & mask
        h = (h + 0x9E3779B97F4A7C15) & mask
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
        h = h ^ (h >> 31)
    return h & ((1 << 63) - 1)


def order_seed(seed: int, split: str, epoch: int) -> int:
    """A 63-bit seed for the permutation of one epoch (distinct per split)."""
    tag = sum(ord(c) * 31**i for i, c in enumerate(split))
    return (seed * 6_364_136_223_846_793_005 + epoch * 1_442_695_040_888_963_407 + tag) % (2**63 - 1)


def split_rows(m: int, split: str, test_fraction: float, split_seed: int) -> Tensor:
    """A fixed train/test partition of ``m`` rows (independent of the training seed)."""
    if split not in ("train", "test"):
        raise ConfigError(f"split={split!r}: choose 'train' or 'test'.")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction}: use a value strictly between 0 and 1.")
    n_test = max(1, int(round(m * test_fraction)))
    if n_test >= m:
        raise DataError(f"{m} images are too few for a train/test split with test_fraction={test_fraction}.")
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(split_seed))
    return perm[:n_test].sort().values if split == "test" else perm[n_test:].sort().values
