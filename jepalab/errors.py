"""jepalab's own exception types.

Every error a user can cause (bad config, wrong tensor shape, corrupt checkpoint, missing optional
dependency) is raised as one of these with a sentence that says what is wrong and what to do.
"""

from __future__ import annotations


class JepalabError(Exception):
    """Base class: anything jepalab raises on purpose."""


class ConfigError(JepalabError, ValueError):
    """A config file or override is malformed, has an unknown key, or a value of the wrong type."""


class ShapeError(JepalabError, ValueError):
    """A tensor given to a jepalab module has the wrong shape or dtype."""


class CheckpointError(JepalabError):
    """A checkpoint or run directory is missing, truncated or corrupt."""


class TrainingDivergedError(JepalabError):
    """The loss or gradients became NaN/Inf; the last good checkpoint is left intact."""


class DataError(JepalabError, ValueError):
    """A dataset, file or batch cannot be used as given."""


class MissingDependencyError(JepalabError, ImportError):
    """An optional package (an environment, TensorBoard, ...) is needed but not installed."""


class RunBusyError(JepalabError):
    """Another live process is writing the same run directory (see ``jepalab.trainer.lock``)."""
