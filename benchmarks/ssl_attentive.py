"""Attentive probe (V-JEPA's protocol) for the masked JEPAs of the SSL table: trained vs random init.

Why: the table's probes read mean-pooled embeddings, and on the video set neither I-JEPA nor
V-JEPA beats its random encoder there. The V-JEPA paper evaluates frozen features with an
attentive probe (a learned query cross-attending over all tokens), which can read what pooling
throws away. This script trains the table's I-JEPA / V-JEPA rows (same configs, data, steps and
seed as ``ssl_table.py``) and their untrained twins, and scores both with
``jepalab.eval.attentive.attentive_probe`` on the frozen teacher tokens (I-JEPA on clips: the
tokens of every frame, concatenated).

Run: ``.venv/bin/python benchmarks/ssl_attentive.py`` (video and MNIST, ~8 min idle at 2 threads);
writes ``benchmarks/results/ssl_attentive.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_table import (MNIST_STEPS, RESULTS, VIDEO_STEPS, build_model, loadavg, methods_for, mnist_setting,  # noqa: E402
                       train_cfg, video_setting)

from jepalab.atomic import write_text_atomic  # noqa: E402
from jepalab.eval.attentive import attentive_probe, embed_tokens  # noqa: E402
from jepalab.recipes.base import Recipe  # noqa: E402
from jepalab.train import train  # noqa: E402


def frozen_tokens(model: Recipe, x: Tensor, chunk: int = 128) -> Tensor:
    """Teacher tokens ``(N, T, D)``; an image recipe given clips gets every frame's tokens in a row."""
    model.eval()
    if x.dim() == 5 and model.name == "ijepa":
        b, t = x.shape[:2]
        z = embed_tokens(model, x.reshape(b * t, *x.shape[2:]).split(chunk))
        return z.reshape(b, t * z.shape[1], z.shape[2])
    return embed_tokens(model, x.split(chunk))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="video,mnist")
    p.add_argument("--epochs", type=int, default=20, help="attentive-probe epochs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "ssl_attentive.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    md = ["# Attentive probe of the masked JEPAs: trained vs random init", "",
          f"Command: `.venv/bin/python benchmarks/ssl_attentive.py{' ' + ' '.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`"
          f" — torch {torch.__version__}, {a.threads} thread(s), seed 0, load average at start {loadavg()}; "
          f"attentive probe {a.epochs} epochs on frozen teacher tokens; models, data and steps as in `ssl_table.py`.", "",
          "| dataset | method | steps x batch | random init | trained | trained - random |", "|---|---|---|---|---|---|"]
    for ds in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        st = video_setting(1024, 512) if ds == "video" else mnist_setting(10000, 5000, 2000)
        base = VIDEO_STEPS if ds == "video" else MNIST_STEPS
        for m in [m for m in methods_for(st, False) if m.recipe in ("ijepa", "vjepa")]:
            steps = max(1, round(base * m.steps_scale))
            score = {}
            for trained in (False, True):
                model = build_model(m, steps, 0)
                if trained:
                    with tempfile.TemporaryDirectory() as tmp:
                        train(model, st.clip_source if m.video else st.image_source, train_cfg(m, steps), tmp, seed=0)
                t0 = time.perf_counter()
                r = attentive_probe(frozen_tokens(model, st.probe_x), st.probe_y, frozen_tokens(model, st.test_x),
                                    st.test_y, epochs=a.epochs, seed=0)
                score[trained] = float(r.get("r2", r.get("accuracy", float("nan"))))
                print(ds, m.label, "trained" if trained else "random", f"{score[trained]:.3f}",
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            metric = "R^2" if st.kind == "regress" else "acc"
            md.append(f"| {st.name} | {m.label} | {steps} x {m.batch_size} | {score[False]:.3f} {metric} | "
                      f"{score[True]:.3f} {metric} | {score[True] - score[False]:+.3f} |")
    write_text_atomic(Path(a.out), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
