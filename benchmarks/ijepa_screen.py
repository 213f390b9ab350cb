"""I-JEPA on MNIST vs its random-init ViT: screen configuration deltas, then rerun the final one.

Why: the table's I-JEPA MNIST row (``benchmarks/ssl_table.py``) beat its random encoder by about
one seed-to-seed swing. This script measures variants of that row on the table's exact probe
protocol (``mnist_setting``, ``build_model``, ``train_cfg``, ``evaluate`` imported from
``ssl_table.py``: 10k SSL images, weighted kNN and logistic probe fit on 5000 train images, scored
on 2000 test images, frozen mean-pooled teacher tokens) next to the random ViT of the same shape
and image size, same seed.

    .venv/bin/python benchmarks/ijepa_screen.py                      # final comparison, seeds 0 and 1
    .venv/bin/python benchmarks/ijepa_screen.py --screen d2v3 --seeds 0   # one screening run (appended)

Output: ``benchmarks/results/ijepa_screen.md``. The final comparison section is rewritten by the
default command; screening runs append rows to the "Screening log" section, which later runs keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_table import (
    Method,
    build_model,
    evaluate,
    loadavg,
    methods_for,
    mnist_setting,
    train_cfg,
)

from jepalab.atomic import write_text_atomic
from jepalab.errors import ConfigError
from jepalab.train import train

OUT = Path(__file__).resolve().parent / "results" / "ijepa_screen.md"
SCREEN_HEAD = "## Screening log"
BASE_STEPS = 900

# Each variant: deltas from the table's I-JEPA MNIST row. Keys: "model" (Method.model fields),
# "img" (image size), "steps", "batch", "lr", "wd" (weight decay), "warmup" (steps).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "d2v3": {"model": {"target_layers": 3}},
    "d2v2": {"model": {"target_layers": 2}},
    "ema998": {"model": {"ema_start": 0.998}},
    "ema999": {"model": {"ema_start": 0.999, "ema_end": 0.999}},
    "wd0.2": {"wd": 0.2},
    "warm10": {"warmup": 90},
    "lr5e-4x1.5": {"lr": 5e-4, "steps": 1350},
    "big128x4": {"model": {"embed_dim": 128, "depth": 4, "heads": 4, "pred_dim": 128}},
    "prenorm": {"model": {"probe_norm": False}},
    "ema996const": {"model": {"ema_end": 0.996}},
    "steps1800": {"steps": 1800},
    "tgt3": {"model": {"num_targets": 3}},
    "img28": {"img": 28, "steps": 300,
              "model": {"patch_size": 4, "num_targets": 4, "target_scale": [0.15, 0.2], "min_context": 10}},
}
WINNER = "d2v3+steps1800"


def variant(name: str) -> dict[str, Any]:
    """The deltas of ``name``; ``"a+b"`` combines variants (later ones win, model fields merged)."""
    out: dict[str, Any] = {}
    for part in name.split("+"):
        if part not in VARIANTS:
            raise ConfigError(f"unknown variant {part!r}; choose from {sorted(VARIANTS)} (combine with '+').")
        out = {**out, **VARIANTS[part], "model": {**out.get("model", {}), **VARIANTS[part].get("model", {})}}
    if not out["model"]:
        del out["model"]
    return out


def variant_method(name: str, st_img: int) -> tuple[Method, int, dict[str, Any]]:
    """The table's I-JEPA row with the variant's deltas: (Method, steps, trainer overrides)."""
    v = variant(name)
    st = mnist_setting(16, 16, 16, img_size=st_img)  # tiny: only to build the row for this size
    base = next(m for m in methods_for(st, with_lightly=False) if m.label == "I-JEPA")
    model = dict(base.model, **v.get("model", {}))
    m = dataclasses.replace(base, label=f"I-JEPA [{name}]", model=model, batch_size=v.get("batch", base.batch_size),
                            lr=v.get("lr", base.lr))
    over = {k: v[k] for k in ("wd", "warmup") if k in v}
    return m, int(v.get("steps", BASE_STEPS)), over


def run(name: str, seed: int, random_cache: dict[tuple, dict[str, float]]) -> dict[str, Any]:
    """Train one variant on one seed; score it and the random encoder of the same shape."""
    img = int(variant(name).get("img", 16))
    m, steps, over = variant_method(name, img)
    st = mnist_setting(10000, 5000, 2000, img_size=img, seed=seed)
    arch = (img, seed, *(m.model.get(k) for k in ("embed_dim", "depth", "heads", "patch_size")))
    if arch not in random_cache:
        random_cache[arch] = evaluate(build_model(m, 0, seed), st)
    cfg = train_cfg(m, steps)
    cfg = dataclasses.replace(cfg, weight_decay=over.get("wd", cfg.weight_decay),
                              warmup_steps=over.get("warmup", cfg.warmup_steps))
    model = build_model(m, steps, seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        final = train(model, st.image_source, cfg, Path(tmp) / "run", seed=seed)
        wall = time.perf_counter() - t0
    r = evaluate(model, st)
    rnd = random_cache[arch]
    pre = {}
    if model.config.probe_norm:  # the same trained and random encoders, pooled before the final LayerNorm
        model.config.probe_norm = False
        rand = build_model(m, 0, seed)
        rand.config.probe_norm = False
        pt, pr = evaluate(model, st), evaluate(rand, st)
        pre = {"pknn": pt["knn"], "plin": pt["linear"], "prknn": pr["knn"], "prlin": pr["linear"]}
        model.config.probe_norm = True
    return dict(variant=name, seed=seed, img=img, steps=steps, batch=m.batch_size, lr=m.lr, wd=cfg.weight_decay,
                warmup=cfg.warmup_steps, wall=wall, loss=float(final["loss"]), knn=r["knn"], linear=r["linear"],
                rknn=rnd["knn"], rlin=rnd["linear"], **pre, delta=variant(name), load=loadavg())


def row_md(r: dict[str, Any]) -> str:
    dk, dl = r["knn"] - r["rknn"], r["linear"] - r["rlin"]
    return (f"| {r['variant']} | `{r['delta']}` | {r['seed']} | {r['img']} | {r['steps']} x {r['batch']} | "
            f"{r['wall']:.0f} | {r['loss']:.4f} | {r['knn']:.3f} | {r['linear']:.3f} | {r['rknn']:.3f} | "
            f"{r['rlin']:.3f} | {dk:+.3f} | {dl:+.3f} | {prenorm(r)} | {r['load']} |")


def prenorm(r: dict[str, Any]) -> str:
    """Trained vs random kNN / linear when both are probed before the final LayerNorm."""
    if "pknn" not in r:
        return "-"
    return f"{r['pknn']:.3f} / {r['plin']:.3f} vs {r['prknn']:.3f} / {r['prlin']:.3f}"


HEADER = [("| variant | delta from the table's row | seed | img | steps x batch | wall s | final loss | kNN | linear "
          "| random kNN | random linear | kNN gain | linear gain | pre-LN probe kNN / linear: trained vs random "
          "| load 1/5/15 |"), "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--screen", default="", help="comma list of variants to screen (rows appended to the log)")
    p.add_argument("--variant", default=WINNER, help="final comparison: the variant to rerun")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    out = Path(a.out)
    old = out.read_text() if out.exists() else ""
    head, _, screen = old.partition(SCREEN_HEAD)
    screen_rows = [ln for ln in screen.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")]
    cache: dict[tuple, dict[str, float]] = {}
    names = [n.strip() for n in a.screen.split(",") if n.strip()] or [a.variant]
    rows = []
    for name in names:
        for seed in seeds:
            print(f"{name} seed {seed} ...", flush=True)
            rows.append(run(name, seed, cache))
            print("   ", row_md(rows[-1]), flush=True)
            if a.screen:  # save after every run: a screen is long and the machine is shared
                screen_rows.append(row_md(rows[-1]))
                write(out, head, screen_rows)
    if not a.screen:
        cmd = " ".join([".venv/bin/python", *map(shlex.quote, ["benchmarks/ijepa_screen.py", *(argv or sys.argv[1:])])])
        ok = all(r["knn"] - r["rknn"] >= 0.05 and r["linear"] - r["rlin"] >= 0.05 for r in rows)
        head = "\n".join([
            "# I-JEPA on MNIST: trained teacher vs random ViT of the same shape", "",
            f"Command: `{cmd}` (torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU fp32).", "",
            (f"Final comparison, variant `{a.variant}` = the table's I-JEPA row with `{variant(a.variant)}`. "
            "Protocol of `ssl_table.py`: SSL on 10k MNIST train images; kNN (k=20, weighted) and logistic "
            "probe fit on 5000 train images, scored on 2000 test images; teacher, mean-pooled tokens."), "",
            *HEADER, *map(row_md, rows), "",
            f"Goal (gain >= 0.05 on kNN and linear, every seed): **{'met' if ok else 'NOT met'}**.", "", ""])
        write(out, head, screen_rows)
    return 0


def pad_row(line: str) -> str:
    """Rows logged before the pre-LN column existed get a '-' there, so every row has the header's cells."""
    cells = line.strip().strip("|").split(" | ")
    if len(cells) == len(HEADER[0].strip().strip("|").split(" | ")) - 1:
        cells.insert(-1, "-")
    return "| " + " | ".join(c.strip() for c in cells) + " |"


def write(out: Path, head: str, screen_rows: list[str]) -> None:
    body = [head.rstrip() or "# I-JEPA on MNIST: trained teacher vs random ViT of the same shape", "", SCREEN_HEAD, "",
            ("Exploratory runs (`--screen NAME`), in the order they ran, on a CPU shared with other jobs "
            "(wall times vary with the load). Variants are defined in `VARIANTS` of `benchmarks/ijepa_screen.py`; "
            "`a+b` combines two. The pre-LN column probes the same trained and random encoders pooled before "
            "the final LayerNorm (`probe_norm=False`); the gains and the goal use the default readout (after it)."),
            "", *HEADER, *map(pad_row, screen_rows), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
