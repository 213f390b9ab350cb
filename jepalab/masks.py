"""Which tokens the context encoder sees and which ones the predictor must predict.

Mask generators have ``draw(draws) -> Masks`` for the rows of a :class:`jepalab.draws.Draws`
(what recipes call: a row's mask depends on (seed, step, its global index), not on the process
or micro-batch that draws it) and ``gen(batch_size, generator) -> Masks``, deterministic given
the ``torch.Generator``. Tokens are numbered as the encoders flatten them: ``i*W + j`` on a 2D
grid, ``t*H*W + i*W + j`` on a space-time grid.

- ``MultiBlockMask``: I-JEPA (Assran et al., 2023) -- 4 target blocks (scale 0.15-0.2, aspect
  0.75-1.5) and one large context block (scale 0.85-1.0) with the targets removed from it.
- ``TubeMask``: V-JEPA (Bardes et al., 2024) -- spatial blocks extended through every frame.
- ``RandomMask``: MAE-style uniformly random token masking (He et al., 2022).
- ``FutureFrameMask``: predict every token of the last frames from the earlier ones.

Like I-JEPA, one block *shape* is drawn per batch (positions per sample), so every sample has the
same number of target tokens; context sets, whose sizes still differ, are trimmed to the batch
minimum by dropping a random subset (I-JEPA drops the last indices, which biases the trim). The
batch is the *global* batch: the shape comes from a per-step generator and every rank draws the
positions of all rows (cheap index work) to find the minimum, then keeps its own rows, so
2 processes x B/2 rows get exactly the masks 1 process x B gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from jepalab.draws import Draws
from jepalab.errors import ConfigError, ShapeError

_MAX_TRIES = 100


@dataclass
class Masks:
    """``context (B, Nc)`` and one ``(B, Nt_m)`` index tensor per target block (int64, sorted)."""

    context: Tensor
    targets: list[Tensor] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.context.shape[0])

    def to(self, device: torch.device | str) -> "Masks":
        """The same masks on ``device`` (indices are built on the CPU)."""
        return Masks(self.context.to(device), [t.to(device) for t in self.targets])

    def rows(self, index: Tensor) -> "Masks":
        """The masks of rows ``index`` (e.g. one rank's rows of the global batch's masks)."""
        return Masks(self.context[index], [t[index] for t in self.targets])


def apply_masks(x: Tensor, idx: Tensor) -> Tensor:
    """Gather tokens: ``x (B, N, D)``, ``idx (B, K)`` -> ``(B, K, D)``."""
    if x.dim() != 3:
        raise ShapeError(f"apply_masks expects tokens (B, N, D), got {tuple(x.shape)}.")
    if idx.dim() != 2 or idx.shape[0] != x.shape[0] or idx.dtype != torch.long:
        raise ShapeError(
            f"apply_masks expects int64 indices (B={x.shape[0]}, K), got {tuple(idx.shape)} {idx.dtype}."
        )
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# --- block shapes ------------------------------------------------------------------------------
def _check_range(name: str, r: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    if len(r) != 2 or not (low < r[0] <= r[1] <= high):
        raise ConfigError(f"{name} must be a (min, max) pair with {low} < min <= max <= {high}, got {r}.")
    return float(r[0]), float(r[1])


def block_shapes(grid_h: int, grid_w: int, scale: tuple[float, float], aspect: tuple[float, float]) -> list[tuple[int, int]]:
    """All ``(h, w)`` blocks whose area fraction lies in ``scale`` and ``h / w`` in ``aspect``.

    Empty when the grid is too coarse for the ranges; sampling then falls back to the closest shape.
    """
    area = grid_h * grid_w
    return [
        (h, w)
        for h in range(1, grid_h + 1)
        for w in range(1, grid_w + 1)
        if scale[0] - 1e-9 <= h * w / area <= scale[1] + 1e-9 and aspect[0] - 1e-9 <= h / w <= aspect[1] + 1e-9
    ]


def _sample_shape(
    grid_h: int, grid_w: int, scale: tuple[float, float], aspect: tuple[float, float], g: torch.Generator | None
) -> tuple[int, int]:
    """Draw a scale (uniform) and aspect (log-uniform), return the allowed integer shape nearest to them."""
    u = torch.rand(2, generator=g).tolist()
    s = scale[0] + u[0] * (scale[1] - scale[0])
    a = math.exp(math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0])))
    shapes = block_shapes(grid_h, grid_w, scale, aspect) or [
        (h, w) for h in range(1, grid_h + 1) for w in range(1, grid_w + 1)
    ]
    area = grid_h * grid_w

    def dist(hw: tuple[int, int]) -> float:
        h, w = hw
        return abs(math.log(h * w / area / s)) + abs(math.log(h / w / a))

    return min(shapes, key=dist)


def _place(grid_h: int, grid_w: int, h: int, w: int, g: torch.Generator | None) -> Tensor:
    """A bool ``(H, W)`` map with one ``h x w`` block at a uniformly random position."""
    top = int(torch.randint(0, grid_h - h + 1, (1,), generator=g))
    left = int(torch.randint(0, grid_w - w + 1, (1,), generator=g))
    m = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    m[top : top + h, left : left + w] = True
    return m


def _trim(sets: list[Tensor], gens: list[torch.Generator]) -> Tensor:
    """Stack per-sample index sets after dropping a random subset (each from its sample's own
    generator) down to the smallest size."""
    k = min(len(s) for s in sets)
    out = [s if len(s) == k else s[torch.randperm(len(s), generator=g)[:k]].sort().values for s, g in zip(sets, gens)]
    return torch.stack(out)


def _check_call(batch_size: int, generator: torch.Generator | None) -> Draws:
    """Validate a ``gen(batch_size, generator)`` call; its draws: rows ``0..B-1``, key from ``generator``."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator (or None for the global RNG), got {type(generator).__name__}.")
    return Draws(int(torch.randint(0, 2**62, (1,), generator=generator)), torch.arange(batch_size), batch_size)


class _GlobalBatchMasks:
    """Base of the generators whose masks depend on the whole global batch (a shape per batch,
    trimming to the batch minimum): ``draw`` builds the global batch's masks once per step (the
    last one is kept, so the micro-batches of a step share it) and returns the requested rows."""

    _last: tuple[tuple[int, int], Masks] | None = None

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> Masks:
        return self.draw(_check_call(batch_size, generator))

    def draw(self, draws: Draws) -> Masks:
        """The masks of ``draws``' rows of its global batch."""
        tag = (draws.key, draws.total)
        if self._last is None or self._last[0] != tag:
            self._last = (tag, self._global(draws.everyone()))
        return self._last[1].rows(draws.index)

    def _global(self, draws: Draws) -> Masks:
        raise NotImplementedError


def _check_grid(grid: tuple[int, ...], rank: int) -> tuple[int, ...]:
    if len(grid) != rank or any(int(n) < 1 for n in grid):
        raise ConfigError(f"mask grid must be {rank} positive sizes, got {tuple(grid)}.")
    return tuple(int(n) for n in grid)


# --- generators --------------------------------------------------------------------------------
class MultiBlockMask(_GlobalBatchMasks):
    """I-JEPA multi-block masking on a ``(H, W)`` patch grid: ``num_targets`` target blocks and a
    context block minus all targets, with at least ``min_context`` context tokens."""

    def __init__(
        self,
        grid: tuple[int, int] = (14, 14),
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        min_context: int = 10,
        context_aspect: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        self.grid = _check_grid(grid, 2)
        if num_targets < 1:
            raise ConfigError(f"num_targets must be >= 1, got {num_targets}.")
        if not 1 <= min_context < math.prod(self.grid):
            raise ConfigError(f"min_context must be in [1, {math.prod(self.grid)}), got {min_context}.")
        self.num_targets, self.min_context = num_targets, min_context
        self.target_scale = _check_range("target_scale", target_scale, 0.0, 1.0)
        self.target_aspect = _check_range("target_aspect", target_aspect, 0.0, math.inf)
        self.context_scale = _check_range("context_scale", context_scale, 0.0, 1.0)
        self.context_aspect = _check_range("context_aspect", context_aspect, 0.0, math.inf)

    def _global(self, draws: Draws) -> Masks:
        gh, gw = self.grid
        shape_gen = draws.generator("shape")
        th, tw = _sample_shape(gh, gw, self.target_scale, self.target_aspect, shape_gen)
        ch, cw = _sample_shape(gh, gw, self.context_scale, self.context_aspect, shape_gen)
        gens = draws.sample_generators()
        contexts: list[Tensor] = []
        targets: list[list[Tensor]] = [[] for _ in range(self.num_targets)]
        for g in gens:
            for _try in range(_MAX_TRIES):
                blocks = [_place(gh, gw, th, tw, g) for _ in range(self.num_targets)]
                covered = torch.stack(blocks).any(0)
                ctx = _place(gh, gw, ch, cw, g) & ~covered
                if int(ctx.sum()) >= self.min_context:
                    break
            else:
                raise ConfigError(
                    f"MultiBlockMask could not leave {self.min_context} context patches on a {gh}x{gw} grid "
                    f"with {self.num_targets} targets of {th}x{tw}; lower num_targets/target_scale or min_context."
                )
            contexts.append(ctx.flatten().nonzero().squeeze(1))
            for m, blk in enumerate(blocks):
                targets[m].append(blk.flatten().nonzero().squeeze(1))
        return Masks(_trim(contexts, gens), [torch.stack(t) for t in targets])


class TubeMask(_GlobalBatchMasks):
    """V-JEPA tube masking on a ``(T, H, W)`` grid.

    ``blocks`` lists ``(count, spatial_scale)``; every block is a spatial rectangle repeated through
    all ``T`` frames. The single target set is the union of all tubes, the context its complement.
    V-JEPA uses two generators -- ``((8, 0.15),)`` and ``((2, 0.7),)`` -- and averages their losses.
    """

    def __init__(
        self,
        grid: tuple[int, int, int] = (8, 14, 14),
        blocks: tuple[tuple[int, float], ...] = ((8, 0.15), (2, 0.7)),
        aspect: tuple[float, float] = (0.75, 1.5),
        min_context: int = 1,
    ) -> None:
        self.grid = _check_grid(grid, 3)
        self.blocks = tuple((int(n), float(s)) for n, s in blocks)
        if not self.blocks or any(n < 1 or not 0.0 < s <= 1.0 for n, s in self.blocks):
            raise ConfigError(f"blocks must be (count >= 1, 0 < scale <= 1) pairs, got {blocks}.")
        self.aspect = _check_range("aspect", aspect, 0.0, math.inf)
        self.min_context = int(min_context)

    def _global(self, draws: Draws) -> Masks:
        t, gh, gw = self.grid
        shape_gen = draws.generator("shape")
        shapes = [(n, _sample_shape(gh, gw, (s, s), self.aspect, shape_gen)) for n, s in self.blocks]
        gens = draws.sample_generators()
        contexts, targets = [], []
        for g in gens:
            for _try in range(_MAX_TRIES):
                covered = torch.zeros(gh, gw, dtype=torch.bool)
                for n, (h, w) in shapes:
                    for _ in range(n):
                        covered |= _place(gh, gw, h, w, g)
                if gh * gw - int(covered.sum()) >= self.min_context:
                    break
            else:
                raise ConfigError(
                    f"TubeMask blocks {self.blocks} leave under {self.min_context} visible patches per frame "
                    f"on a {gh}x{gw} grid; use fewer or smaller blocks."
                )
            tube = covered.unsqueeze(0).expand(t, -1, -1).flatten()
            targets.append(tube.nonzero().squeeze(1))
            contexts.append((~tube).nonzero().squeeze(1))
        return Masks(_trim(contexts, gens), [_trim(targets, gens)])


class RandomMask:
    """Hide a uniformly random ``ratio`` of the ``num_patches`` tokens of each sample."""

    def __init__(self, num_patches: int, ratio: float = 0.75) -> None:
        if num_patches < 2 or not 0.0 < ratio < 1.0:
            raise ConfigError(f"RandomMask needs num_patches >= 2 and 0 < ratio < 1, got {num_patches}, {ratio}.")
        self.num_patches, self.ratio = num_patches, ratio
        self.num_masked = min(max(int(round(ratio * num_patches)), 1), num_patches - 1)

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> Masks:
        return self.draw(_check_call(batch_size, generator))

    def draw(self, draws: Draws) -> Masks:
        """Each row's permutation from its own generator (no batch-level choice)."""
        perm = torch.stack([torch.randperm(self.num_patches, generator=g) for g in draws.sample_generators()])
        hidden, visible = perm[:, : self.num_masked], perm[:, self.num_masked :]
        return Masks(visible.sort(1).values, [hidden.sort(1).values])


class FutureFrameMask:
    """Context = all tokens of the first ``T - num_future`` frames, target = all of the last ones."""

    def __init__(self, grid: tuple[int, int, int] = (8, 14, 14), num_future: int = 1) -> None:
        self.grid = _check_grid(grid, 3)
        if not 1 <= num_future < self.grid[0]:
            raise ConfigError(f"num_future must be in [1, T={self.grid[0]}), got {num_future}.")
        self.num_future = num_future

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> Masks:
        _check_call(batch_size, generator)
        return self._fixed(batch_size)

    def draw(self, draws: Draws) -> Masks:
        """The same (non-random) masks for every row."""
        return self._fixed(len(draws))

    def _fixed(self, batch_size: int) -> Masks:
        t, h, w = self.grid
        split = (t - self.num_future) * h * w
        ctx = torch.arange(split).expand(batch_size, -1).clone()
        tgt = torch.arange(split, t * h * w).expand(batch_size, -1).clone()
        return Masks(ctx, [tgt])
