"""VL-JEPA against a token-generating twin and a CLIP-style model, side by side, on the shapes world.

    python benchmarks/vljepa.py            # full comparison -> benchmarks/results/vljepa.json, VLJEPA.md
    python benchmarks/vljepa.py --quick    # a 2-minute smoke run -> vljepa_quick.json, VLJEPA_quick.md

Every model gets the same X-encoder architecture, data stream, steps, batch size and learning
rate. Measured: (1) answer accuracy on the test split (held-out wordings; half the clips show a
held-out colour-shape pair) by normalised exact match of the decoded / generated text and by
retrieval over the candidate answers, trainable parameters, training time, answer latency;
(2) zero-shot MNIST (nearest prompt embedding) and text<->video retrieval R@1 / R@5 against the
CLIP-style model; (3) selective vs fixed-rate decoding on long streams at equal event recall;
(4) AUROC of the distance to the nearest plausible answer for clips with an unseen shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vljepa_parts import (  # noqa: E402
    EMB_MODELS, QA_MODELS, eval_qa, latency, retrieval, selective_stream, train, unseen_auroc, write_table,
    zero_shot_mnist)

from jepalab.atomic import write_bytes_atomic  # noqa: E402
from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig  # noqa: E402
from jepalab.recipes.vl_baselines import ClipStyle, TokenTwin  # noqa: E402
from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig  # noqa: E402

HERE = Path(__file__).resolve().parent


def params(model: torch.nn.Module, skip: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not (skip and n.startswith(skip)))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budget (about 2 minutes): what the tests run")
    ap.add_argument("--steps", type=int, default=None, help="training steps per model (default 400, quick 40)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 32, quick 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--y-tune", action="store_true",
                    help="VL-JEPA tunes its Y-encoder (MiniLM) at 0.05 x lr; its parameters count as trainable")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/vljepa[_quick].json)")
    ap.add_argument("--table", default=None, help="markdown table (default benchmarks/VLJEPA[_quick].md)")
    a = ap.parse_args(argv)
    shown = [x for x in (sys.argv[1:] if argv is None else argv)]
    for flag in ("--out", "--table"):
        if flag in shown:
            i = shown.index(flag)
            del shown[i:i + 2]
    torch.set_num_threads(a.threads)
    q = a.quick
    steps = a.steps or (40 if q else 400)
    batch = a.batch or (16 if q else 32)
    n_eval, n_lat = (48, 4) if q else (400, 20)
    tag = "_quick" if q else ""
    out = Path(a.out or HERE / "results" / f"vljepa{tag}.json")
    table = Path(a.table or HERE / f"VLJEPA{tag}.md")
    t_start = time.time()
    train_src = ShapesWorld(ShapesWorldConfig(seed=a.seed, mnist_fraction=0.1))
    test_src = ShapesWorld(ShapesWorldConfig(seed=a.seed + 1, split="test"))
    caption_steps = steps * 3 // 10
    base = dict(caption_steps=caption_steps)
    tune = dict(y_tune=True) if a.y_tune else {}
    peer = dict(pred_dim=128, pred_depth=2, pred_heads=4)  # the twin's and the CLIP-style model's sizes
    specs = {"vljepa": (VLJEPA, dict(**tune)),  # the recipe's default predictor and decoder sizes
             "vljepa_wide": (VLJEPA, dict(pred_dim=128, pred_depth=1, pred_heads=4, dec_hidden=128, **tune)),
             "token_twin": (TokenTwin, peer), "clip_style": (ClipStyle, peer)}
    sizes = {name: {k: getattr(VLJEPAConfig(**extra), k) for k in ("pred_dim", "pred_depth", "pred_heads", "dec_hidden")}
             for name, (_, extra) in specs.items()}
    res: dict = {"command": " ".join(["python benchmarks/vljepa.py"] + shown),
                 "config": {"steps": steps, "batch": batch, "caption_steps": caption_steps, "seed": a.seed,
                            "threads": a.threads, "quick": q, "n_eval": n_eval, "y_tune": a.y_tune, "sizes": sizes},
                 "models": {}}
    models = {}
    for name, (cls, extra) in specs.items():
        torch.manual_seed(a.seed)
        model = cls(VLJEPAConfig(**base, **extra))
        secs, last = train(model, train_src, steps, batch, lr=1e-3, name=name)
        model.eval()
        models[name] = model
        row = {"train_s": secs, "final_loss": last, "trainable_params": params(model),
               "trainable_params_without_decoder": params(model, skip="decoder.")}
        print(f"{name}: trained {steps} steps in {secs:.0f} s, {row['trainable_params']} params", flush=True)
        res["models"][name] = row
    twin = res["models"]["token_twin"]["trainable_params"]
    for row in res["models"].values():
        row["share_of_twin"] = row["trainable_params"] / twin
        row["share_of_twin_without_decoder"] = row["trainable_params_without_decoder"] / twin
    for name in QA_MODELS:
        m = models[name]
        row = res["models"][name]
        row.update(eval_qa(m, test_src, n_eval))
        row.update(latency(m, test_src, n_lat))
        print(name, {k: row[k] for k in ("exact_match", "retrieval_acc")}, flush=True)
    for name in EMB_MODELS:
        m, row = models[name], res["models"][name]
        row.update(zero_shot_mnist(m, 100 if q else 1000))
        row.update(retrieval(m, test_src, 32 if q else 300))
    res["selective"] = selective_stream(models["vljepa"], quick=q, seed=a.seed)
    res["unseen"] = unseen_auroc(models["vljepa"], 24 if q else 200, seed=a.seed)
    res["wall_s"] = time.time() - t_start
    res["torch"] = torch.__version__
    write_bytes_atomic(out, (json.dumps(res, indent=2, default=float) + "\n").encode())
    write_table(res, table, out, quick=q)
    print(f"wrote {out} and {table} in {res['wall_s']:.0f} s")
    return res


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
