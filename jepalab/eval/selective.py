"""Selective decoding on a stream: decode text only when the predicted embedding has moved.

VL-JEPA (arXiv 2512.10942) embeds a video stream continuously and runs its text decoder only when
the meaning changes, instead of at a fixed rate; the paper reports 2.85x fewer decoding operations
at matched description quality. Here a decode fires at the first window and then whenever the
cosine distance between the current embedding and the embedding at the last decode exceeds a
threshold (distance to the last *decoded* embedding, not to the previous frame, so slow drift
also triggers once it adds up). Quality is event recall: the share of ground-truth change points
followed by a decode within ``tolerance`` frames. Fixed-rate decoding is matched to the same recall,
its recall averaged over where the first decode falls (it cannot be aligned with events it does not
know of).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jepalab.errors import ShapeError


def selective_points(emb: Tensor, threshold: float) -> list[int]:
    """Indices of ``emb (N, D)`` where a decode fires (index 0 always)."""
    if emb.dim() != 2 or emb.shape[0] == 0:
        raise ShapeError(f"selective_points expects embeddings (N, D) with N >= 1; got {tuple(emb.shape)}.")
    e = torch.nn.functional.normalize(emb.float(), dim=-1)
    points, last = [0], e[0]
    for t in range(1, e.shape[0]):
        if 1.0 - float(e[t] @ last) > threshold:
            points.append(t)
            last = e[t]
    return points


def event_recall(points: list[int], events: list[int], tolerance: int) -> float:
    """Share of ``events`` with a decode in ``[event, event + tolerance]`` (1.0 when there are none)."""
    if not events:
        return 1.0
    pts = sorted(points)
    return sum(any(e <= p <= e + tolerance for p in pts) for e in events) / len(events)


def fixed_rate_recall(length: int, events: list[int], tolerance: int, every: int) -> float:
    """Event recall of decoding every ``every`` frames, averaged over the ``every`` possible start
    offsets: a fixed-rate decoder does not know where the events fall, so its expected recall,
    not the recall of the one offset that happens to line up with them, is its quality."""
    if not events:
        return 1.0
    phase = np.arange(every)[:, None]
    e = np.asarray(events)[None, :]
    wait = (phase - e) % every  # frames from an event to the next decode of this offset
    return float(((wait <= tolerance) & (e + wait < length)).mean())


def fixed_rate_for_recall(length: int, events: list[int], tolerance: int, recall: float) -> tuple[int, float]:
    """The sparsest fixed rate (decode every ``k`` frames) whose expected recall over start offsets
    (:func:`fixed_rate_recall`) reaches ``recall``: returns ``(k, decodes)``, ``decodes`` the mean
    count over the offsets (``length / k``). ``k = 1`` (every frame) always reaches 1.0."""
    best = 1
    for k in range(1, length + 1):
        if fixed_rate_recall(length, events, tolerance, k) >= recall - 1e-9:
            best = k
    return best, length / best


def calibrate_threshold(emb: Tensor, events: list[int], tolerance: int, recall: float = 0.9) -> float:
    """The largest threshold (fewest decodes) whose selective decoding still reaches ``recall`` on a
    calibration stream; the smallest candidate if none does."""
    e = torch.nn.functional.normalize(emb.float(), dim=-1)
    steps = (1.0 - (e[1:] * e[:-1]).sum(-1)).clamp_min(0)
    cands = torch.quantile(steps, torch.linspace(0.5, 0.999, 60)).tolist() + [x / 100 for x in range(1, 60)]
    ok = [th for th in sorted(set(cands)) if event_recall(selective_points(emb, th), events, tolerance) >= recall]
    return max(ok) if ok else min(cands)


__all__ = ["selective_points", "event_recall", "fixed_rate_recall", "fixed_rate_for_recall", "calibrate_threshold"]
