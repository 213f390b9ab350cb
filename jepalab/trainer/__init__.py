"""The one trainer (see ``jepalab.train`` for the public entry point)."""

from jepalab.trainer.config import TrainConfig, lr_at, param_groups, step_seed
from jepalab.trainer.distributed import DistContext, resolve_device, setup_distributed
from jepalab.trainer.loop import train

__all__ = ["TrainConfig", "train", "lr_at", "param_groups", "step_seed", "DistContext", "resolve_device", "setup_distributed"]
