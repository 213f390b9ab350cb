"""Network modules: ViT and conv encoders, transformer blocks, the masked predictor, positions."""

from .blocks import Block, Transformer
from .conv import ConvEncoder
from .posenc import sincos_1d, sincos_2d, sincos_3d, sincos_grid
from .predictor import MaskedPredictor
from .vit import ViT

__all__ = [
    "Block",
    "ConvEncoder",
    "MaskedPredictor",
    "Transformer",
    "ViT",
    "sincos_1d",
    "sincos_2d",
    "sincos_3d",
    "sincos_grid",
]
