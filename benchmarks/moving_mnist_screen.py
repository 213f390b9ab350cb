"""The masked JEPAs (I-JEPA on frames, V-JEPA on clips) on Moving MNIST: variants vs random init.

Why: on Moving MNIST the view recipes beat their random encoder by a wide margin, the masked JEPAs
do not (``benchmarks/SSL.md``). Every variant tried for them is a named delta from the table's row,
run on the table's exact protocol (``moving_mnist_setting``, ``build_model``, ``train_cfg``,
``evaluate`` from ``ssl_table.py``: 2048 probe / 1024 test clips, kNN and logistic probe of the
digit class on frozen mean-pooled teacher tokens) next to the random encoder of the same shape.

    .venv/bin/python benchmarks/moving_mnist_screen.py                  # every variant
    .venv/bin/python benchmarks/moving_mnist_screen.py --screen vjepa_p8 # one of them

Output: ``benchmarks/results/moving_mnist_screen.md`` (rewritten whole by each command).
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
    RESULTS,
    loadavg,
    methods_for,
    moving_mnist_setting,
    run_method,
    write_report,
)

from jepalab.errors import ConfigError

OUT = RESULTS / "moving_mnist_screen.md"
_BALLS_IJEPA = {"patch_size": 4, "pred_dim": 32, "pred_depth": 2, "pred_heads": 2, "num_targets": 4,
                "target_scale": [0.15, 0.2], "min_context": 10}
_BALLS_VJEPA = {"patch_size": 4, "pred_dim": 48, "pred_depth": 2, "pred_heads": 3}

#: name -> (table row, optimizer steps, Method field changes, model field changes, what it tests)
VARIANTS: dict[str, tuple[str, int, dict[str, Any], dict[str, Any], str]] = {
    "ijepa_balls": ("I-JEPA", 1600, {"batch_size": 64}, _BALLS_IJEPA,
                    "the bouncing-ball frame recipe (8x8 grid of 4x4 patches, 32 x 2 predictor), 1600 x 64"),
    "ijepa_balls_pred64": ("I-JEPA", 1600, {"batch_size": 64, "lr": 5e-4},
                           dict(_BALLS_IJEPA, pred_dim=64, pred_depth=4, pred_heads=4), "+ 64 x 4 predictor, lr 5e-4"),
    "ijepa_900": ("I-JEPA", 900, {}, {}, "the table's row (digits recipe: 4x4 grid of 8x8 patches) at half its steps"),
    "ijepa_d2v3": ("I-JEPA", 1800, {}, {"target_layers": 3}, "the table's row with the data2vec target (last 3 blocks)"),
    "vjepa_balls": ("V-JEPA", 500, {"batch_size": 16}, _BALLS_VJEPA,
                    "the bouncing-ball row (8x8x4 grid of 4x4 patches, 48 x 2 predictor), 500 x 16"),
    "vjepa_balls_b64": ("V-JEPA", 500, {"batch_size": 64}, dict(_BALLS_VJEPA, pred_dim=96, pred_depth=4),
                        "+ 4x batch, full-width 4-deep predictor"),
    "vjepa_lr1e-3": ("V-JEPA", 900, {"lr": 1e-3}, {}, "the table's row (4x4x4 grid of 8x8 patches, 900 x 64) at lr 1e-3"),
    "vjepa_ema996": ("V-JEPA", 900, {}, {"ema_start": 0.996}, "the table's row with EMA 0.996 -> 1 (I-JEPA's)"),
    "vjepa_1800": ("V-JEPA", 1800, {}, {}, "the table's row at 2x the steps"),
    "vjepa_3600": ("V-JEPA", 3600, {}, {}, "the table's row at 4x the steps"),
    "vjepa_tubes2x2": ("V-JEPA", 900, {}, {"small_blocks": 2, "small_scale": 0.25, "large_blocks": 0},
                       "the table's row with I-JEPA-like targets: 2 tubes of 2x2 patches, no large tubes"),
}


def run_variant(name: str, st: Any, seed: int, root: Path, random_cache: dict[str, dict[str, Any]]) -> list[str]:
    """Train one variant and return its markdown row (and its random encoder's, once per shape)."""
    label, steps, fields, model, what = VARIANTS[name]
    base = next(m for m in methods_for(st, with_lightly=False) if m.label == label)
    m = dataclasses.replace(base, model=dict(base.model, **model), **fields)
    arch = f"{label} {sorted((k, str(v)) for k, v in m.model.items() if k in ('patch_size', 'embed_dim', 'depth'))}"
    rows = []
    if arch not in random_cache:
        random_cache[arch] = run_method(m, st, 0, seed, root)
        r = random_cache[arch]
        rows.append(f"| random init: {arch} | - | 0 | {r['knn']:.3f} | {r['linear']:.3f} | {r['rank']:.1f} | - | - |")
    t = run_method(m, st, steps, seed, root / name)
    rnd = random_cache[arch]
    rows.append(f"| {name} ({label}) | {what} | {steps} x {m.batch_size} | {t['knn']:.3f} ({t['knn'] - rnd['knn']:+.3f}) | "
                f"{t['linear']:.3f} ({t['linear'] - rnd['linear']:+.3f}) | {t['rank']:.1f} | {t['wall_s']:.0f} | "
                f"{'yes' if t['collapsed'] else 'no'} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--screen", default="", help=f"comma list of variants (default: all): {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--probe", type=int, default=2048, help="probe clips (the table's 2048)")
    p.add_argument("--test", type=int, default=1024, help="test clips (the table's 1024)")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    names = [n.strip() for n in a.screen.split(",") if n.strip()] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"--screen: unknown variant(s) {unknown}; choose from {list(VARIANTS)}.")
    torch.set_num_threads(a.threads)
    load0, t0 = loadavg(), time.perf_counter()
    st = moving_mnist_setting(a.probe, a.test, seed=a.seed)
    cmd = " ".join(["benchmarks/moving_mnist_screen.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    md = ["# Masked JEPAs on Moving MNIST: variants vs random init", "",
          f"Command: `.venv/bin/python {cmd}`; torch {torch.__version__}, {torch.get_num_threads()} thread(s), seed "
          f"{a.seed}; load average at start: {load0}.", "", st.note + ". In brackets: trained minus random init.", "",
          "| variant | what changes (from the table's row) | steps x batch | kNN acc | linear acc | eff. rank | wall s | collapsed |",
          "|---|---|---|---|---|---|---|---|"]
    cache: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"[screen] {name} ...", flush=True)
            md += run_variant(name, st, a.seed, Path(tmp), cache)
            print("   ", md[-1], flush=True)
    md += ["", f"Total wall time {time.perf_counter() - t0:.0f} s; load average at end: {loadavg()}.", ""]
    write_report(Path(a.out), md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
