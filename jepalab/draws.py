"""Random draws keyed by (seed, step, global sample index), so they do not depend on the process.

Why: under DDP each rank trains on a slice of the global batch (``jepalab.data.source.rank_rows``)
and seeds the torch RNG per rank. Masks or view augmentations drawn from that RNG would differ
with the number of processes (and with gradient accumulation), so 2 processes would not train
the model 1 process trains. Instead the trainer tags every batch with the global index of each
row and a key made from ``(seed, step)`` (:func:`attach`); a recipe turns them into a
:class:`Draws` and takes

- per-sample draws (a block's position, a crop, noise) from a generator seeded by
  ``(key, global index, purpose)``, and
- per-batch draws (I-JEPA's one block shape per batch) from one seeded by ``(key, purpose)``,

so any split of the global batch over processes and micro-batches draws the same numbers.
A batch without these entries (a recipe called directly from Python) gets a key from the global
torch RNG and indices ``0..n-1``: seeding torch still makes such a call repeatable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jepalab.errors import DataError

SAMPLE_INDEX = "sample_index"  # (rows,) int64: each row's index in the global batch
DRAW_KEY = "draw_key"          # a StepKey: the same on every rank and micro-batch of a step

_MASK63 = (1 << 63) - 1


def mix(*parts: Any) -> int:
    """A 63-bit seed that is a hash of ``parts`` (nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


@dataclass(frozen=True)
class StepKey:
    """What every rank knows about a step's draws: the key and the global batch size."""

    key: int
    total: int


def attach(batch: dict[str, Any], seed: int, step: int, offset: int, total: int) -> dict[str, Any]:
    """``batch`` (this rank's rows ``offset .. offset+rows`` of a global batch of ``total``) plus
    the entries :meth:`Draws.of` reads. A new dict; the source's tensors are not copied."""
    rows = next(int(v.shape[0]) for v in batch.values() if torch.is_tensor(v))
    return {**batch, SAMPLE_INDEX: torch.arange(offset, offset + rows), DRAW_KEY: StepKey(mix("step", seed, step), total)}


@dataclass(frozen=True)
class Draws:
    """The draws of one (micro-)batch: ``key`` (per step), ``index`` (the global indices of its
    ``n`` rows, int64 on the CPU) and ``total`` (rows in the global batch)."""

    key: int
    index: Tensor
    total: int

    @classmethod
    def of(cls, batch: dict[str, Any], rows: int) -> "Draws":
        """The draws of ``batch`` whose inputs have ``rows`` rows (see the module doc)."""
        step_key, index = batch.get(DRAW_KEY), batch.get(SAMPLE_INDEX)
        if step_key is None or index is None:
            key = int(torch.randint(0, 2**62, (1,)))
            return cls(key, torch.arange(rows), rows)
        if not isinstance(step_key, StepKey) or not torch.is_tensor(index) or index.shape != (rows,):
            raise DataError(
                f"batch['{SAMPLE_INDEX}'] must hold one global index per row ({rows}) and batch['{DRAW_KEY}'] "
                f"a StepKey; got {getattr(index, 'shape', index)!r} and {type(step_key).__name__}. "
                "Let the trainer add them (jepalab.draws.attach), or leave both out."
            )
        return cls(step_key.key, index.detach().to("cpu", torch.long), step_key.total)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def fork(self, *purpose: Any) -> "Draws":
        """Same rows, an independent stream (e.g. one per mask generator or per view)."""
        return Draws(mix(self.key, "fork", *purpose), self.index, self.total)

    def per_item(self, t: int) -> "Draws":
        """Draws for rows that each hold ``t`` items flattened row-major (clip frames as images)."""
        index = (self.index[:, None] * t + torch.arange(t)).flatten()
        return Draws(self.key, index, self.total * t)

    def everyone(self) -> "Draws":
        """The draws of the whole global batch (for choices that depend on every sample)."""
        return Draws(self.key, torch.arange(self.total), self.total)

    def generator(self, *purpose: Any) -> torch.Generator:
        """A CPU generator for a per-batch draw, the same on every rank and micro-batch."""
        return torch.Generator().manual_seed(mix(self.key, "batch", *purpose))

    def sample_generators(self, *purpose: Any, rows: Iterable[int] | None = None) -> list[torch.Generator]:
        """One CPU generator per row (default: this batch's rows), seeded by its global index."""
        rows = self.index.tolist() if rows is None else rows
        return [torch.Generator().manual_seed(mix(self.key, int(i), *purpose)) for i in rows]
