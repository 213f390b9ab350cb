"""SIGReg under torch.distributed (2 gloo ranks) equals one process on the concatenated batch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from jepalab.objectives import SIGReg

WORLD = 2
B = 48  # per-rank batch
D = 12


def _global_batch() -> torch.Tensor:
    return torch.randn(WORLD * B, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.7 + 0.2


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(str(Path(tmp) / "store"), WORLD)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
    try:
        sig = SIGReg(num_proj=32)
        z = _global_batch()[rank * B:(rank + 1) * B].clone().requires_grad_()
        value = sig(z, step=3)
        value.backward()
        # No step and no generator: each rank's RNG differs, rank 0's projections are broadcast.
        torch.manual_seed(100 + rank)
        value_bcast = sig(z.detach(), step=None)
        torch.save({"value": value.detach(), "grad": z.grad, "bcast": value_bcast}, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_rank(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    sig = SIGReg(num_proj=32)
    z = _global_batch().requires_grad_()
    ref = sig(z, step=3)
    ref.backward()
    torch.manual_seed(100)
    ref_bcast = sig(z.detach())

    for r, res in enumerate(results):
        assert abs(float(res["value"]) - float(ref.detach())) < 1e-5, (r, float(res["value"]), float(ref.detach()))
        assert abs(float(res["bcast"]) - float(ref_bcast)) < 1e-5
        # Each rank's local gradient is W x the true one, so DDP's mean over ranks is exact.
        local_ref = z.grad[r * B:(r + 1) * B]
        assert torch.allclose(res["grad"] / WORLD, local_ref, atol=1e-7, rtol=1e-5)
    # The statistic is a genuinely global one: a single rank's slice alone gives another value.
    alone = float(SIGReg(num_proj=32)(_global_batch()[:B], step=3))
    assert abs(alone - float(ref.detach())) > 1e-3
