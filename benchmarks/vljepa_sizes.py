"""Predictor and decoder sizes of VL-JEPA against its trainable-parameter budget: each candidate is
trained like ``benchmarks/vljepa.py`` trains it (same data, steps, batch, learning rate, seed) and
scored on the same test questions; the parameter share is relative to the token-generating twin
of that benchmark (pred_dim 128, depth 2), decoder included and excluded.

    python benchmarks/vljepa_sizes.py    # -> benchmarks/results/vljepa_sizes.json (about 6 minutes, 1 thread)

The twin itself is not retrained here: its accuracy is in ``results/vljepa.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vljepa_parts import eval_qa, train  # noqa: E402

from jepalab.atomic import write_bytes_atomic  # noqa: E402
from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig  # noqa: E402
from jepalab.recipes.vl_baselines import TokenTwin  # noqa: E402
from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
#: (pred_dim, pred_depth, pred_heads, dec_hidden)
CANDIDATES = ((128, 1, 4, 128), (96, 1, 4, 64), (64, 2, 4, 64), (64, 1, 4, 64), (64, 1, 4, 96))


def trainable(model: torch.nn.Module, skip: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not (skip and n.startswith(skip)))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "vljepa_sizes.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    caption_steps = a.steps * 3 // 10
    twin = trainable(TokenTwin(VLJEPAConfig(pred_dim=128, pred_depth=2, pred_heads=4)))
    train_src = ShapesWorld(ShapesWorldConfig(seed=a.seed, mnist_fraction=0.1))
    test_src = ShapesWorld(ShapesWorldConfig(seed=a.seed + 1, split="test"))
    rows = []
    for dim, depth, heads, dec in CANDIDATES:
        torch.manual_seed(a.seed)
        model = VLJEPA(VLJEPAConfig(pred_dim=dim, pred_depth=depth, pred_heads=heads, dec_hidden=dec,
                                    caption_steps=caption_steps))
        secs, _ = train(model, train_src, a.steps, a.batch, lr=1e-3, name=f"d{dim}x{depth} dec{dec}")
        model.eval()
        qa = eval_qa(model, test_src, a.n_eval)
        n, n_nodec = trainable(model), trainable(model, skip="decoder.")
        row = {"pred_dim": dim, "pred_depth": depth, "pred_heads": heads, "dec_hidden": dec,
               "trainable_params": n, "trainable_params_without_decoder": n_nodec,
               "share_of_twin": n / twin, "share_of_twin_without_decoder": n_nodec / twin, "train_s": secs,
               "exact_match": qa["exact_match"], "retrieval_acc": qa["retrieval_acc"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"command": "python benchmarks/vljepa_sizes.py" + (" " + " ".join(argv) if argv else ""),
           "steps": a.steps, "batch": a.batch, "n_eval": a.n_eval, "seed": a.seed, "twin_trainable_params": twin,
           "candidates": rows, "torch": torch.__version__, "threads": 1}
    write_bytes_atomic(Path(a.out), (json.dumps(res, indent=2) + "\n").encode())
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
