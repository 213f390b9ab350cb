"""The contract every data source keeps: ``batch(step, batch_size, rank, world_size)``.

A source is a pure function of ``(seed, step)``: the trainer resumes bit-exactly without saving a
sampler, and DDP ranks take disjoint row slices of the *same* global batch, so the number of
processes never changes the math.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from jepalab.errors import DataError


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
