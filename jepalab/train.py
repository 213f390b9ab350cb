"""Public entry point of the one trainer: ``from jepalab.train import TrainConfig, train``.

The implementation lives in ``jepalab.trainer`` (config + schedule, distributed setup, loop);
checkpoints in ``jepalab.checkpoint``, logs in ``jepalab.runlog``.
"""

from jepalab.trainer import TrainConfig, lr_at, param_groups, step_seed, train

__all__ = ["TrainConfig", "train", "lr_at", "param_groups", "step_seed"]
