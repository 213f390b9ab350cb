"""Evaluate a vision-language run the way VL-JEPA (arXiv 2512.10942) reports its shared embedding
space: zero-shot classification (the label whose prompt embedding is nearest to the clip's
embedding) and text<->video retrieval (Recall@1 / Recall@5).

Why here and not in the probe evaluator: a VL model needs no read-out fitted on a training split;
its embeddings already live in the text encoder's space, so both measurements compare clip
embeddings with text embeddings directly. ``jepalab eval RUN`` of a ``vljepa`` run and
``benchmarks/vljepa.py`` both call these functions, so the CLI and the benchmark report the same
quantities.

A model here has ``encode(clips (B, T, 3, S, S)) -> (B, 384)`` unit embeddings, ``config.num_frames``,
``config.img_size`` and ``y.embed_texts(list[str]) -> (N, 384)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

VL_EVAL_FILE = "eval_vl.json"


def _stack(clips: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([c.frames for c in clips]))


@torch.no_grad()
def zero_shot_mnist(model: Any, n: int, batch: int = 100) -> dict[str, Any]:
    """Accuracy of the nearest prompt embedding on the first ``n`` MNIST test digits shown as still
    clips; each class's prompt embedding is the mean of its held-out wordings (never trained on).
    Chance is 0.1."""
    from jepalab.data.vl_pairs import DigitPairs, digit_prompts

    digits = DigitPairs("test", model.config.num_frames, model.config.img_size)
    n = min(n, len(digits.labels))
    prompts = model.y.embed_texts([p for ps in digit_prompts("test") for p in ps])
    prompts = F.normalize(prompts.view(10, -1, prompts.shape[-1]).mean(1), dim=-1)
    hits = 0
    for i in range(0, n, batch):
        idx = list(range(i, min(n, i + batch)))
        emb = model.encode(torch.from_numpy(np.stack([digits.still(j) for j in idx])))
        hits += int(((emb @ prompts.T).argmax(1).numpy() == digits.labels[idx]).sum())
    return {"zero_shot_mnist": hits / max(1, n), "zero_shot_n": n}


@torch.no_grad()
def text_video_retrieval(model: Any, source: Any, n: int, offset: int = 20_000, batch: int = 64) -> dict[str, Any]:
    """Video->text and text->video R@1 / R@5 over ``n`` clips of ``source`` (a shapes world split)
    and their captions: clip ``i`` must rank its own caption (and the caption its clip) first /
    among the first five. Identical captions of two clips tie and do not push each other down."""
    clips = [source.clip(offset + i) for i in range(n)]
    vid = torch.cat([model.encode(_stack(clips[i:i + batch])) for i in range(0, n, batch)])
    txt = model.y.embed_texts([c.caption for c in clips]).to(vid.device)
    sim = vid @ txt.T
    out: dict[str, Any] = {"retrieval_n": n}
    for name, s in (("video_to_text", sim), ("text_to_video", sim.T)):
        rank = (s > s.diag()[:, None]).sum(1)
        out[f"{name}_r1"] = float((rank < 1).float().mean())
        out[f"{name}_r5"] = float((rank < 5).float().mean())
    return out


def evaluate_vl_run(run_dir: str | os.PathLike, max_test: int = 1000) -> dict[str, Any]:
    """Zero-shot MNIST on ``max_test`` test digits and text<->video retrieval over ``max_test`` clips
    of the run's shapes world test split; writes ``RUN_DIR/eval_vl.json`` and returns the result."""
    import dataclasses
    import json

    from jepalab.atomic import write_text_atomic
    from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig
    from jepalab.errors import ConfigError
    from jepalab.eval.evaluate import load_run

    if max_test < 5:
        raise ConfigError(f"--max-test {max_test}: retrieval R@5 needs at least 5 clips; use e.g. --max-test 300.")
    model, exp = load_run(run_dir)
    if not isinstance(exp.data, ShapesWorldConfig):
        raise ConfigError(f"{run_dir} was trained on data.source={exp.source!r}; VL evaluation reads the "
                          "shapes world's test split (data.source: shapes-world).")
    model.eval()
    test = ShapesWorld(dataclasses.replace(exp.data, split="test", mnist_fraction=0.0))  # shapes clips only
    result: dict[str, Any] = {"recipe": model.name, "split": "test"}
    result.update(zero_shot_mnist(model, max_test))
    result.update(text_video_retrieval(model, test, max_test))
    write_text_atomic(Path(run_dir) / VL_EVAL_FILE, json.dumps(result, indent=2))
    return result


def format_vl(result: dict[str, Any]) -> str:
    """The result of :func:`evaluate_vl_run` as a short table."""
    r = result
    return "\n".join([
        f"{r['recipe']} run, {r['split']} split",
        f"  zero-shot MNIST accuracy   {r['zero_shot_mnist']:.3f}  ({r['zero_shot_n']} digits, chance 0.100)",
        f"  text->video  R@1 {r['text_to_video_r1']:.3f}  R@5 {r['text_to_video_r5']:.3f}  ({r['retrieval_n']} clips)",
        f"  video->text  R@1 {r['video_to_text_r1']:.3f}  R@5 {r['video_to_text_r5']:.3f}",
    ])


__all__ = ["zero_shot_mnist", "text_video_retrieval", "evaluate_vl_run", "format_vl", "VL_EVAL_FILE"]
