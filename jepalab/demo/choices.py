"""The demo's command-line choices, on their own so that the parser (``jepalab.demo``) and the
model builder (``jepalab.demo.models``) share them without importing each other, and ``jepalab
--help`` does not import torch to list them."""

#: bouncing-ball worlds the demo compares the models on (a subset of ``jepalab.data.bouncing.VARIANTS``)
VARIANTS = ("stochastic", "deterministic", "distractors")
#: training lengths: 0.5x, 1x or 4x the config's train.steps
SIZES = ("tiny", "small", "base")
#: latent variable of the JEPA-with-z
Z_KINDS = ("discrete", "gaussian")

__all__ = ["VARIANTS", "SIZES", "Z_KINDS"]
