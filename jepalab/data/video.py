"""A user's folder of videos as a clip source: frame folders, .npy/.npz arrays, .gif/.mp4 files.

Why three formats: no video codec library is guaranteed to be installed, so the formats that need
nothing beyond numpy and Pillow come first -- (a) a folder of frame images per clip
(``clip_a/frame_0001.png, ...``, sorted by the numbers in their names), (b) ``.npy`` / ``.npz``
arrays ``(T, H, W, C)`` or ``(T, H, W)`` of uint8 (or floats in [0, 1]); (c) ``.gif`` is read
with Pillow and ``.mp4``/``.avi``/``.mov``/``.webm``/``.mkv`` with ``imageio`` when it is
installed (``MissingDependencyError`` otherwise). Videos are decoded and resized once, at
construction, and kept as uint8 ``(T, C, S, S)``: meant for small folders (demo worlds,
recorded environments), not for a video corpus.

Sampling follows the ``Source`` contract of docs/design.md: global batch ``step`` is a pure
function of ``(seed, split, step)`` -- which video (an epoch permutation over videos, as the image
sources do) and which start frame (drawn from a generator seeded by ``(seed, split, step)``) --
and DDP rank ``r`` takes rows ``[r*B/W, (r+1)*B/W)`` of it. A clip is ``frames`` frames taken
every ``stride`` frames. Videos in a sub-folder of ``root`` get that sub-folder as class label.
The train/test split is by video (``test_fraction``, ``split_seed``); a source reads only the
videos of its own split, so a corrupt file in the other split is reported when that split is built.
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.data.images import IMAGE_EXTENSIONS
from jepalab.data.source import order_seed, rank_rows, split_rows
from jepalab.errors import ConfigError, DataError, MissingDependencyError

ARRAY_EXTENSIONS = (".npy", ".npz")
CODEC_EXTENSIONS = (".mp4", ".avi", ".mov", ".webm", ".mkv")
GIF_EXTENSION = ".gif"


@dataclass
class VideoConfig:
    """Where the videos are and how clips are cut from them (all fields defaulted, YAML-friendly)."""

    root: str = ""
    frames: int = 8  # frames per clip (T)
    stride: int = 1  # take every `stride`-th frame
    img_size: int = 32
    channels: int = 3
    seed: int = 0
    split: str = "train"
    test_fraction: float = 0.2  # fraction of *videos* held out as the test split
    split_seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix-it sentence for impossible settings."""
        if self.frames < 1 or self.stride < 1:
            raise ConfigError(f"VideoConfig needs frames >= 1 and stride >= 1, got {self.frames}, {self.stride}.")
        if self.channels not in (1, 3) or self.img_size < 1:
            raise ConfigError(f"VideoConfig needs channels 1 or 3 and img_size >= 1, got {self.channels}, {self.img_size}.")


def _natural_key(p: Path) -> list[object]:
    """Sort ``frame_2`` before ``frame_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _to_tchw(arr: np.ndarray, path: Path, size: int, channels: int) -> Tensor:
    """``(T, H, W[, C])`` uint8 or [0, 1] floats -> uint8 ``(T, channels, size, size)``."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[0] < 1 or arr.shape[-1] not in (1, 3, 4):
        raise DataError(f"'{path}' holds an array of shape {arr.shape}; a video must be (T, H, W, C) with C in 1, 3, 4 "
                        "or (T, H, W).")
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise DataError(f"'{path}' holds floats outside [0, 1] (or NaN); save uint8 frames or floats in [0, 1].")
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise DataError(f"'{path}' has dtype {arr.dtype}; save videos as uint8 (or floats in [0, 1]).")
    x = x[..., :3].permute(0, 3, 1, 2)  # drop alpha; (T, C, H, W)
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif channels == 1 and x.shape[1] == 3:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)


def _read_frame_folder(folder: Path, files: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"Cannot read frame '{f}' of clip '{folder}' ({type(e).__name__}: {e}); remove or replace it.") from e
    if len({fr.shape for fr in frames}) != 1:
        raise DataError(f"frames of clip '{folder}' differ in size; all frames of a clip must have one size.")
    return np.stack(frames)


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if not keys:
                raise DataError(f"'{path}' is an empty .npz; store the video under the key 'frames'.")
            return z["frames"] if "frames" in keys else z[keys[0]]
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"Cannot read video array '{path}' ({type(e).__name__}: {e}); remove or re-save it.") from e


def _read_gif(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise DataError(f"Cannot read GIF '{path}' ({type(e).__name__}: {e}); remove or replace it.") from e


def _read_codec(path: Path) -> np.ndarray:
    if importlib.util.find_spec("imageio") is None:
        raise MissingDependencyError(
            f"Reading '{path.name}' needs imageio with a video plugin: `pip install imageio imageio-ffmpeg` "
            "(or convert the video to a folder of frames or a .npy array (T, H, W, C) uint8)."
        )
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path, index=None))
    except Exception as e:  # noqa: BLE001 - codec back ends raise many types; name the file
        raise DataError(f"Cannot decode video '{path}' ({type(e).__name__}: {e}); remove or re-encode it.") from e


def find_videos(root: Path) -> list[Path]:
    """Video entries under ``root`` in sorted order: array/GIF/codec files and folders that
    directly contain frame images."""
    entries: list[Path] = []
    for p in sorted(root.rglob("*")):
        suffix = p.suffix.lower()
        if p.is_file() and suffix in ARRAY_EXTENSIONS + CODEC_EXTENSIONS + (GIF_EXTENSION,):
            if suffix == GIF_EXTENSION and p.parent != root and _is_frame_folder(p.parent):
                continue  # a GIF frame inside a frame folder
            entries.append(p)
        elif p.is_dir() and _is_frame_folder(p):
            entries.append(p)
    return entries


def _is_frame_folder(d: Path) -> bool:
    exts = tuple(e for e in IMAGE_EXTENSIONS if e != GIF_EXTENSION)
    return any(f.is_file() and f.suffix.lower() in exts for f in d.iterdir())


def read_video(entry: Path, size: int, channels: int) -> Tensor:
    """One video entry -> uint8 ``(T, channels, size, size)``; unreadable -> DataError naming it."""
    if entry.is_dir():
        exts = tuple(e for e in IMAGE_EXTENSIONS if e != GIF_EXTENSION)
        files = sorted((f for f in entry.iterdir() if f.is_file() and f.suffix.lower() in exts), key=_natural_key)
        arr = _read_frame_folder(entry, files)
    elif entry.suffix.lower() in ARRAY_EXTENSIONS:
        arr = _read_array(entry)
    elif entry.suffix.lower() == GIF_EXTENSION:
        arr = _read_gif(entry)
    else:
        arr = _read_codec(entry)
    return _to_tchw(arr, entry, size, channels)


class VideoFolder:
    """Clips of ``frames`` frames (every ``stride``-th) from the videos under ``config.root``.

    ``batch(step, B, rank, world_size)`` returns ``frames`` (B/W, T, C, S, S) float in [0, 1],
    ``labels`` (B/W,) (index of the first-level sub-folder in ``class_names``; 0 for videos
    directly in root), ``video`` (B/W,) index into ``files`` and ``start`` (B/W,) first frame.
    """

    config_class = VideoConfig

    def __init__(self, config: VideoConfig | None = None) -> None:
        config = config or VideoConfig()
        config.validate()
        root = Path(config.root).expanduser()
        if not config.root or not root.is_dir():
            raise DataError(f"VideoConfig.root={config.root!r} is not a directory; point it at a folder of videos.")
        entries = find_videos(root)
        if not entries:
            raise DataError(f"No videos under {root}: expected sub-folders of frame images, .npy/.npz arrays "
                            f"(T, H, W, C), .gif or {'/'.join(CODEC_EXTENSIONS)} files.")
        rows = split_rows(len(entries), config.split, config.test_fraction, config.split_seed) if len(entries) > 1 \
            else torch.arange(1)
        if len(entries) == 1 and config.split != "train":
            raise DataError(f"{root} holds a single video, so there is no '{config.split}' split; add more videos.")
        entries = [entries[i] for i in rows.tolist()]
        rel = [e.relative_to(root).parts for e in entries]
        dirs = [parts[0] if len(parts) > 1 else "" for parts in rel]
        self.class_names = sorted(set(dirs))
        self.labels = torch.tensor([self.class_names.index(d) for d in dirs], dtype=torch.long)
        span = (config.frames - 1) * config.stride + 1
        self.videos: list[Tensor] = []
        for e in entries:
            v = read_video(e, config.img_size, config.channels)
            if v.shape[0] < span:
                raise DataError(f"'{e}' has {v.shape[0]} frames, fewer than a clip needs ({config.frames} frames at "
                                f"stride {config.stride} = {span}); lower data.frames/stride or remove it.")
            self.videos.append(v)
        self.files = entries
        self.config = config
        self.span = span
        self.num_starts = torch.tensor([v.shape[0] - span + 1 for v in self.videos])
        self._perm_cache: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def _perm(self, epoch: int) -> Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(order_seed(self.config.seed, self.config.split, epoch))
            self._perm_cache = (epoch, torch.randperm(len(self), generator=g))
        return self._perm_cache[1]

    def clip_index(self, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """``(video, start)`` of every clip of global batch ``step``, each ``(batch_size,)``."""
        m = len(self)
        pos = torch.arange(step * batch_size, (step + 1) * batch_size)
        video = torch.empty(batch_size, dtype=torch.long)
        for epoch in torch.unique(pos // m).tolist():
            sel = (pos // m) == epoch
            video[sel] = self._perm(int(epoch))[pos[sel] % m]
        g = torch.Generator().manual_seed(order_seed(self.config.seed, self.config.split + "/start", step))
        u = torch.rand(batch_size, generator=g, dtype=torch.float64)
        start = (u * self.num_starts[video].double()).long().clamp_max(self.num_starts[video] - 1)
        return video, start

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        video, start = self.clip_index(step, batch_size)
        video, start = video[lo:hi], start[lo:hi]
        offsets = torch.arange(self.config.frames) * self.config.stride
        clips = [self.videos[int(v)][int(s) + offsets] for v, s in zip(video, start)]
        return {"frames": torch.stack(clips).float() / 255.0, "labels": self.labels[video],
                "video": video, "start": start}


__all__ = ["VideoConfig", "VideoFolder", "find_videos", "read_video"]
