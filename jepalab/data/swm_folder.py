"""Import stable-worldmodel's "folder" datasets into jepalab's trajectory format.

Why: stable-worldmodel (MIT) records Push-T, Two-Room and its other envs in a simple layout that
users may already have on disk; converting once lets ``TrajectorySource`` train on them. The
layout (``stable_worldmodel.data.formats.folder``, read here for facts only)::

    SRC/ep_len.npz, SRC/ep_offset.npz     arr_0: length and first global row of every episode
    SRC/<column>.npz                       arr_0: all episodes' rows concatenated (action, proprio, state, ...)
    SRC/pixels/ep_<i>_step_<j>.jpeg        one image per step

Its recorder rotates the action list so that row t of an episode is the action taken at step t
(the last row is the reset placeholder): we keep rows ``0 .. T-2`` as ``actions``, which is
jepalab's convention (action t moves frame t -> t+1). Actions are normalized to [-1, 1] with the
env's action bounds (``action_low``/``action_high``), or must already lie in [-1, 1].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from jepalab.data.envs.base import resize_frame
from jepalab.data.trajectories import FORMAT, VERSION, list_episodes, read_meta, save_episode, write_meta
from jepalab.errors import ConfigError, DataError, MissingDependencyError


def _column(src: Path, name: str) -> np.ndarray | None:
    path = src / f"{name}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return z["arr_0"]


def _image(src: Path, key: str, ep: int, step: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingDependencyError("Reading stable-worldmodel image folders needs Pillow: pip install pillow") from e
    for ext in (".jpeg", ".jpg", ".png"):
        path = src / key / f"ep_{ep}_step_{step}{ext}"
        if path.is_file():
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
    raise DataError(f"{src / key} has no image for episode {ep} step {step} (ep_{ep}_step_{step}.jpeg); "
                    "the folder dataset is incomplete.")


def import_swm_folder(src: str | os.PathLike, dst: str | os.PathLike, img_size: int = 64,
                      action_low: Any = None, action_high: Any = None, image_key: str = "pixels",
                      progress: bool = True) -> dict[str, Any]:
    """Convert stable-worldmodel folder dataset ``src`` into a jepalab trajectory directory ``dst``.

    Resumable like ``collect`` (episodes already in ``dst`` are skipped). Returns the meta dict.
    """
    src, dst = Path(src), Path(dst)
    lengths, offsets = _column(src, "ep_len"), _column(src, "ep_offset")
    if lengths is None or offsets is None or not (src / image_key).is_dir():
        raise DataError(f"{src} is not a stable-worldmodel folder dataset: it needs ep_len.npz, ep_offset.npz "
                        f"and a '{image_key}/' image folder.")
    action = _column(src, "action")
    if action is None:
        raise DataError(f"{src} has no action.npz; a world model needs the actions.")
    action = action.reshape(action.shape[0], -1).astype(np.float64)
    if (action_low is None) != (action_high is None):
        raise ConfigError("Give both action_low and action_high (the env's action bounds), or neither.")
    if action_low is not None:
        low, high = np.broadcast_to(np.asarray(action_low, np.float64), action.shape[1:]), \
            np.broadcast_to(np.asarray(action_high, np.float64), action.shape[1:])
        if not np.all(high > low):
            raise ConfigError(f"action_high must exceed action_low; got {action_low} and {action_high}.")
    proprio, state = _column(src, "proprio"), _column(src, "state")
    success = _column(src, "success")
    dst.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, "env": "swm-folder", "env_kwargs": {"source": str(src.resolve())},
            "img_size": img_size, "action_dim": int(action.shape[1]), "frameskip": 1, "frameskip_mode": "repeat",
            "policy": "imported", "policy_kwargs": {}, "seed": 0, "max_steps": int(lengths.max()) - 1}
    if (dst / "meta.json").is_file() and read_meta(dst).get("env_kwargs") != meta["env_kwargs"]:
        raise ConfigError(f"{dst} already holds another dataset; choose an empty output directory.")
    done = set(list_episodes(dst))
    write_meta(dst, {**meta, "episodes": len(done)})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(lengths), initial=len(done), desc="import swm", unit="ep")
    for i, (n, off) in enumerate(zip(lengths.tolist(), offsets.tolist())):
        if i in done or n < 1:
            continue
        rows = slice(off, off + n)
        a = action[off:off + n - 1]
        if not np.all(np.isfinite(a)):
            raise DataError(f"episode {i} of {src} has non-finite actions before its last step.")
        if action_low is not None:
            a = (a - low) / (high - low) * 2 - 1
        elif a.size and np.abs(a).max() > 1 + 1e-5:
            raise DataError(f"actions of {src} exceed [-1, 1] (max |a| = {np.abs(a).max():.3g}); pass the env's "
                            "action bounds as action_low/action_high to normalize them.")
        frames = np.stack([(resize_frame(_image(src, image_key, i, j), img_size).permute(1, 2, 0) * 255)
                           .round().byte().numpy() for j in range(n)])
        empty = np.zeros((n, 0), np.float32)
        ep = {"frames": frames, "actions": np.clip(a, -1, 1),
              "proprio": proprio[rows].reshape(n, -1) if proprio is not None else empty,
              "state": state[rows].reshape(n, -1) if state is not None else empty,
              "rewards": np.zeros(n - 1, np.float32),
              "success": success[rows][1:].reshape(n - 1).astype(bool) if success is not None else np.zeros(n - 1, bool)}
        save_episode(dst, i, ep)
        done.add(i)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    meta.update(episodes=len(done), channels=3, proprio_dim=int(proprio[:1].reshape(1, -1).shape[1]) if proprio is not None else 0,
                state_dim=int(state[:1].reshape(1, -1).shape[1]) if state is not None else 0)
    write_meta(dst, meta)
    return meta


__all__ = ["import_swm_folder"]
