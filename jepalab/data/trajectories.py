"""Recorded episodes on disk, resumable collection, and ``TrajectorySource`` to train on them.

Why files and not a live env in the training loop: stepping and rendering a real environment
costs milliseconds per frame and is not a pure function of ``(seed, step)``; a recorded dataset
is, so world-model training resumes bit-exactly and DDP ranks slice the same global batch.

On-disk format (one directory per dataset; also in docs/trajectories.md)::

    DIR/meta.json             {"format": "jepalab-trajectories", "version": 1, "env", "env_kwargs",
                               "env_factory", "img_size", "channels", "action_dim", "frameskip",
                               "frameskip_mode", "policy", "policy_kwargs", "policy_rng", "seed",
                               "max_steps", "episodes", "proprio_dim", "state_dim"}
    DIR/episode_000123.npz    frames  uint8   (T, H, W, C)   the env's pixels resized to img_size
                              actions float32 (T-1, A)       action t moves frame t -> t+1, in [-1, 1]
                              proprio float32 (T, P)         e.g. Push-T agent position (P may be 0)
                              state   float32 (T, S)         full low-dim state for probes
                              rewards float32 (T-1,)
                              success bool    (T-1,)         env's success flag after each step

Episode ``i`` is recorded with env seed ``episode_seed(seed, i)`` and policy seed likewise, so it
does not depend on which episodes were recorded before: an interrupted ``collect`` rerun with the
same arguments writes exactly the episodes an uninterrupted one would. Every file is written to a
temporary name in DIR and renamed into place (atomic on POSIX), so a crash leaves either a whole
episode or none; stale temporaries are removed on the next run. ``meta.json["episodes"]`` counts the
complete episode files. Recording itself (``collect``, ``record_episode``, parallel workers) lives
in :mod:`jepalab.data.recording`; both names are re-exported here.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepalab.atomic import atomic_write
from jepalab.data.source import rank_rows
from jepalab.errors import ConfigError, DataError

FORMAT, VERSION = "jepalab-trajectories", 1
KEYS = ("frames", "actions", "proprio", "state", "rewards", "success")
_EPISODE_RE = re.compile(r"^episode_(\d{6,})\.npz$")
#: meta fields that must match when a collection is resumed
IDENTITY_KEYS = ("env", "env_kwargs", "img_size", "frameskip", "frameskip_mode", "policy", "policy_kwargs", "seed",
             "max_steps", "policy_rng")


def episode_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index) * 7919 + 17) % (2**31 - 1)


def episode_path(root: str | os.PathLike, index: int) -> Path:
    """``root/episode_000123.npz`` for ``index`` 123."""
    return Path(root) / f"episode_{index:06d}.npz"


def write_meta(root: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``root/meta.json`` atomically."""
    atomic_write(Path(root) / "meta.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """``root/meta.json`` as a dict; ``DataError`` if missing, corrupt or of another format."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"{root} has no meta.json: it is not a jepalab trajectory directory. "
                        f"Record one with `jepalab collect ENV --out {root}`.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is corrupt ({e}); delete the directory and collect again.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a {FORMAT} meta file (format={meta.get('format') if isinstance(meta, dict) else None!r}).")
    if int(meta.get("version", 0)) > VERSION:
        raise DataError(f"{path} has format version {meta['version']}; this jepalab reads up to {VERSION}: upgrade jepalab.")
    return meta


def list_episodes(root: str | os.PathLike) -> list[int]:
    """Sorted indices of the complete episode files in ``root`` (temporaries are ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Trajectory directory {root} does not exist.")
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _EPISODE_RE.match(p.name)))


def save_episode(root: str | os.PathLike, index: int, episode: dict[str, np.ndarray]) -> Path:
    """Validate and write one episode atomically; returns its path."""
    frames = np.asarray(episode["frames"])
    t = frames.shape[0]
    if frames.dtype != np.uint8 or frames.ndim != 4 or t < 1:
        raise DataError(f"episode frames must be uint8 (T, H, W, C); got {frames.dtype} {frames.shape}.")
    arrays = {
        "frames": frames,
        "actions": np.asarray(episode["actions"], np.float32).reshape(t - 1, -1),
        "proprio": np.asarray(episode["proprio"], np.float32).reshape(t, -1),
        "state": np.asarray(episode["state"], np.float32).reshape(t, -1),
        "rewards": np.asarray(episode["rewards"], np.float32).reshape(t - 1),
        "success": np.asarray(episode["success"], bool).reshape(t - 1),
    }
    path = episode_path(root, index)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def load_episode(root: str | os.PathLike, index: int) -> dict[str, np.ndarray]:
    """Arrays of one episode (keys ``KEYS``); ``DataError`` naming the file if it is damaged."""
    path = episode_path(root, index)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in KEYS}
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; list the episodes with list_episodes({str(root)!r}).") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is damaged ({e}); delete it and rerun `jepalab collect` to re-record it.") from None
    t = out["frames"].shape[0]
    if out["actions"].shape[0] != t - 1 or out["state"].shape[0] != t or out["proprio"].shape[0] != t:
        raise DataError(f"{path} has inconsistent lengths (frames {t}, actions {out['actions'].shape[0]}).")
    return out


# ---------------------------------------------------------------------------------- training source
SPLITS = ("train", "test")


@dataclass
class TrajectoryConfig:
    """Where the episodes are and how clips are cut from them (YAML: ``data: {source: trajectories, ...}``).

    ``frames`` frames per clip, ``frameskip`` env steps between consecutive clip frames (the
    ``frameskip`` raw actions in between are concatenated, so ``actions`` is ``(T-1, A*frameskip)``
    as in LeWorldModel's action blocks). Episode ``i`` is a test episode when
    ``test_every > 0 and i % test_every == test_every - 1`` (stable when more episodes are added).
    ``img_size``/``channels`` 0 keep the recorded values; otherwise frames are resized
    (antialiased) / converted to grey on load. ``cache`` keeps all episodes of the split in memory
    (uint8); set it false for datasets larger than RAM (each batch then reads its episodes).
    ``sample``: ``"clips"`` draws every valid clip with equal probability (long episodes dominate);
    ``"episodes"`` draws an episode first, then a clip in it, so short episodes (an expert that
    reaches its target in a few steps) weigh as much as long random ones.
    """

    path: str = ""
    frames: int = 4
    frameskip: int = 1
    split: str = "train"
    test_every: int = 10
    img_size: int = 0
    channels: int = 0
    cache: bool = True
    seed: int = 0
    sample: str = "clips"

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("TrajectoryConfig.path is empty: set data.path to a directory written by "
                              "`jepalab collect ENV --out DIR`.")
        if self.split not in SPLITS:
            raise ConfigError(f"TrajectoryConfig.split={self.split!r}: choose 'train' or 'test'.")
        for k, lo in (("frames", 1), ("frameskip", 1), ("test_every", 0), ("img_size", 0)):
            v = getattr(self, k)
            if not isinstance(v, int) or v < lo:
                raise ConfigError(f"TrajectoryConfig.{k}={v!r}: use an int >= {lo}.")
        if self.channels not in (0, 1, 3):
            raise ConfigError(f"TrajectoryConfig.channels={self.channels!r}: use 0 (as recorded), 1 or 3.")
        if self.sample not in ("clips", "episodes"):
            raise ConfigError(f"TrajectoryConfig.sample={self.sample!r}: use 'clips' or 'episodes'.")


def _mix(*parts: int) -> int:
    h = 0xCBF29CE484222325
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & ((1 << 63) - 1)


class TrajectorySource:
    """Sub-clips of recorded episodes, following the ``Source`` protocol of docs/design.md.

    ``batch(step, B, rank, world_size)`` returns rows ``[rank*B/W, (rank+1)*B/W)`` of global batch
    ``step``: ``frames`` (b, T, C, H, W) float in [0, 1], ``actions`` (b, T-1, A*frameskip) in
    [-1, 1], ``proprio`` (b, T, P), ``state`` (b, T, S). Clips are drawn uniformly over all valid
    (episode, start) pairs of the split from a generator seeded by ``(seed, split, step)``.
    """

    config_class = TrajectoryConfig

    def __init__(self, config: TrajectoryConfig | None = None) -> None:
        self.config = config if config is not None else TrajectoryConfig()
        self.config.validate()
        c = self.config
        self.meta = read_meta(c.path)
        every = c.test_every
        idx = [i for i in list_episodes(c.path) if (every > 0 and i % every == every - 1) == (c.split == "test")]
        if not idx:
            raise DataError(f"{c.path} has no {c.split} episodes (test_every={every}); collect more episodes "
                            "or change data.test_every (0 puts every episode in train).")
        span = (c.frames - 1) * c.frameskip
        lengths = {}
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        for i in idx:
            ep = load_episode(c.path, i)
            lengths[i] = ep["frames"].shape[0]
            if c.cache:
                self._cache[i] = ep
        self.episodes = [i for i in idx if lengths[i] > span]
        if not self.episodes:
            raise DataError(f"No {c.split} episode in {c.path} has the {span + 1} steps a clip of {c.frames} "
                            f"frames with frameskip {c.frameskip} needs (longest: {max(lengths.values())}); "
                            "lower data.frames/frameskip or collect longer episodes.")
        counts = torch.tensor([lengths[i] - span for i in self.episodes], dtype=torch.long)
        self._cum = torch.cumsum(counts, 0)
        self.num_clips = int(self._cum[-1])

    def _episode(self, i: int) -> dict[str, np.ndarray]:
        return self._cache[i] if i in self._cache else load_episode(self.config.path, i)

    def locate(self, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """Episode indices and start steps ``(B,)``, ``(B,)`` of global batch ``step``."""
        c = self.config
        gen = torch.Generator().manual_seed(_mix(c.seed, SPLITS.index(c.split), step))
        if c.sample == "episodes":
            pos = torch.randint(0, len(self.episodes), (batch_size,), generator=gen)
            counts = torch.diff(self._cum, prepend=torch.zeros(1, dtype=torch.long))[pos]
            start = (torch.rand(batch_size, generator=gen) * counts).long().clamp_max(counts - 1)
            return torch.tensor(self.episodes)[pos], start
        flat = torch.randint(0, self.num_clips, (batch_size,), generator=gen)
        pos = torch.searchsorted(self._cum, flat, right=True)
        start = flat - torch.cat([torch.zeros(1, dtype=torch.long), self._cum])[pos]
        return torch.tensor(self.episodes)[pos], start

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        """See the class docstring."""
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        c = self.config
        eps, starts = self.locate(step, batch_size)
        span = (c.frames - 1) * c.frameskip
        rows: dict[str, list[np.ndarray]] = {"frames": [], "actions": [], "proprio": [], "state": []}
        for e, s in zip(eps[lo:hi].tolist(), starts[lo:hi].tolist()):
            ep = self._episode(e)
            t = slice(s, s + span + 1, c.frameskip)
            rows["frames"].append(ep["frames"][t])
            rows["proprio"].append(ep["proprio"][t])
            rows["state"].append(ep["state"][t])
            act = ep["actions"][s:s + span]  # (span, A): blocks of frameskip actions per clip step
            rows["actions"].append(act.reshape(c.frames - 1, c.frameskip * act.shape[-1]))
        frames = torch.from_numpy(np.stack(rows["frames"])).permute(0, 1, 4, 2, 3).float().div_(255.0)
        frames = self._convert(frames)
        return {"frames": frames.contiguous(), "actions": torch.from_numpy(np.stack(rows["actions"])),
                "proprio": torch.from_numpy(np.stack(rows["proprio"])),
                "state": torch.from_numpy(np.stack(rows["state"]))}

    def _convert(self, frames: Tensor) -> Tensor:
        """Resize (antialiased) / convert channels to the config's ``img_size``/``channels``."""
        c = self.config
        b, t, ch, h, w = frames.shape
        if c.channels == 1 and ch == 3:
            frames = (frames * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
        elif c.channels == 3 and ch == 1:
            frames = frames.expand(b, t, 3, h, w)
        if c.img_size and (h, w) != (c.img_size, c.img_size):
            flat = frames.reshape(b * t, frames.shape[2], h, w)
            flat = torch.nn.functional.interpolate(flat, size=(c.img_size, c.img_size), mode="bilinear",
                                                   align_corners=False, antialias=True).clamp_(0, 1)
            frames = flat.reshape(b, t, -1, c.img_size, c.img_size)
        return frames


__all__ = ["FORMAT", "VERSION", "KEYS", "IDENTITY_KEYS", "TrajectoryConfig", "TrajectorySource", "episode_seed",
           "save_episode", "load_episode", "list_episodes", "read_meta", "write_meta", "episode_path"]
