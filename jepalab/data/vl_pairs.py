"""Image-text pairs from MNIST and long streams of shapes scenes, for VL-JEPA's evaluations.

MNIST digits become still clips with captions ("a handwritten digit seven") so that the same
video model is trained on them and then classifies digits zero-shot: the label whose prompt
embedding is nearest wins (CLIP's protocol, Radford et al. 2021). Prompts of held-out wording
(the last template) are what zero-shot uses.

A stream is a long video cut into scenes of random length; inside a scene the objects drift
slowly and never touch a wall, so what a caption would say stays the same, and the scene cuts
are the moments a description must change: the ground truth of selective decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jepalab.data import shapes_text as W
from jepalab.data.shapes_draw import Clip, render
from jepalab.data.source import mix_seed


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, 28, 28)`` -> ``(N, size, size)`` by nearest-neighbour sampling (no extra dependency)."""
    idx = (np.arange(size) * 28 / size).astype(int)
    return images[:, idx][:, :, idx]


class DigitPairs:
    """MNIST digits (``train`` = MNIST's 50k training images, ``test`` = its 10k test images) as
    still clips ``(T, 3, S, S)`` with a caption and a "what digit is this?" question."""

    def __init__(self, split: str = "train", frames: int = 8, size: int = 32) -> None:
        from jepalab.data.images import load_mnist

        images, labels = load_mnist()[0 if split == "train" else 2]
        self.images = images[:, 0].numpy()
        self.labels = labels.numpy()
        self.frames, self.size = frames, size

    def still(self, i: int) -> np.ndarray:
        """Image ``i`` as a grey still clip ``(T, 3, S, S)`` in [0, 1]."""
        img = _resize(self.images[i : i + 1], self.size)[0].astype(np.float32)
        return np.broadcast_to(img, (self.frames, 3, self.size, self.size)).copy()

    def clip(self, rng: np.random.Generator, split: str) -> Clip:
        i = int(rng.integers(len(self.labels)))
        d = W.NUMBERS[int(self.labels[i])]
        caps, qs = W.templates(W.DIGIT_CAPTIONS, split), W.templates(W.DIGIT_QUESTIONS, split)
        return Clip(self.still(i), caps[rng.integers(len(caps))].format(d=d), qs[rng.integers(len(qs))], d,
                    "digit", "digit", self.frames)


def digit_prompts(split: str = "test") -> list[list[str]]:
    """``[label][template]`` prompts for zero-shot classification (``test``: held-out wording)."""
    return [[t.format(d=W.NUMBERS[n]) for t in W.templates(W.DIGIT_CAPTIONS, split)] for n in range(10)]


@dataclass
class Stream:
    """A long video ``frames (N, 3, S, S)``; ``cuts`` the first frame of every scene after the
    first; ``captions[i]`` says what scene ``i`` shows."""

    frames: np.ndarray
    cuts: list[int]
    captions: list[str]


def make_stream(seed: int, scenes: int = 10, scene_len: tuple[int, int] = (30, 60), size: int = 32) -> Stream:
    """A stream of ``scenes`` scenes of ``scene_len`` frames each (uniform in the range)."""
    rng = np.random.default_rng(mix_seed(seed, 77))
    parts, cuts, captions, start = [], [], [], 0
    prev: tuple[str, str] | None = None
    for s in range(scenes):
        n = int(rng.integers(scene_len[0], scene_len[1] + 1))
        while True:  # the main object changes at every cut
            colour = list(W.COLOURS)[rng.integers(len(W.COLOURS))]
            shape = W.SHAPES[rng.integers(len(W.SHAPES))]
            if (colour, shape) != prev and (colour, shape) not in W.HELD_OUT_COMBOS:
                break
        prev = (colour, shape)
        r = list(W.SIZES.values())[rng.integers(len(W.SIZES))] * size / 32
        x0 = rng.uniform(r + 6, size - r - 6, size=2)
        drift = rng.uniform(-1, 1, size=2)
        drift = drift / max(np.linalg.norm(drift), 1e-6) * (size / 4 - r - 2)
        phase = np.linspace(0, 1, n)[:, None]
        xy = np.clip(x0 + (phase - 0.5) * drift, r + 2, size - r - 3)
        direction = ("right" if drift[0] > 0 else "left") if abs(drift[0]) >= abs(drift[1]) else \
                    ("down" if drift[1] > 0 else "up")
        parts.append(render([{"colour": colour, "shape": shape, "r": r, "xy": xy}], W.SIDES, n, size))
        captions.append(f"a {colour} {shape} drifting {direction}")
        if s:
            cuts.append(start)
        start += n
    return Stream(np.concatenate(parts), cuts, captions)


__all__ = ["DigitPairs", "digit_prompts", "Stream", "make_stream"]
