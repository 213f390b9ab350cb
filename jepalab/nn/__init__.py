"""Network modules: ViT and conv encoders, transformer blocks, the masked predictor, positions,
and the per-frame encoder / predictor / decoder shared by the frame-level recipes."""

from .blocks import Block, Transformer
from .conv import ConvEncoder
from .frame import FrameConfig, FrameDecoder, FrameEncoder, FramePredictor
from .posenc import sincos_1d, sincos_2d, sincos_3d, sincos_grid
from .predictor import MaskedPredictor
from .vit import ViT

__all__ = [
    "Block",
    "ConvEncoder",
    "FrameConfig",
    "FrameDecoder",
    "FrameEncoder",
    "FramePredictor",
    "MaskedPredictor",
    "Transformer",
    "ViT",
    "sincos_1d",
    "sincos_2d",
    "sincos_3d",
    "sincos_grid",
]
