"""Process-group setup for DDP under ``torchrun``, and the few collectives the trainer needs.

Why: users run the same script on a laptop (1 process, CPU/MPS) and under
``torchrun --nproc_per_node N`` (CPU: gloo; GPUs: nccl). The trainer reads the standard
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` environment variables, so no flag is needed; a process group
that the caller already initialised is used as is (and not destroyed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from jepalab.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda (this rank's GPU) if available, else mps, else cpu; check availability."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device='cuda' but CUDA is not available here: use device='auto' or 'cpu'.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("train.device='mps' but MPS is not available here: use device='auto' or 'cpu'.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"train.device must be one of auto, cpu, cuda, mps; got {name!r}.")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun).") from e


@dataclass
class DistContext:
    """Who this process is (``rank`` of ``world_size``) and where it computes (``device``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    def barrier(self) -> None:
        """Wait for all ranks (no-op in a single process)."""
        if self.world_size > 1:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_reduce_mean(self, t: Tensor) -> Tensor:
        """In-place mean of ``t`` over ranks (no-op in a single process)."""
        if self.world_size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= self.world_size
        return t

    def all_true(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank: lets one rank's refusal (e.g. rank 0 finding the
        run directory locked) stop all of them instead of leaving the others at a barrier."""
        if self.world_size == 1:
            return ok
        t = torch.tensor([1 if ok else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup_distributed(device_name: str) -> DistContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        device = resolve_device(device_name, local)
        return DistContext(rank, world, local, device, owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext(device=resolve_device(device_name, 0))
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_name, local)
    if device.type == "mps":
        raise ConfigError("DDP is not supported on MPS: run one process, or use device='cpu' under torchrun.")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, device, owns_group=True)
