"""SIGReg lambda sweep: how much does LeJEPA's one hyper-parameter matter?

Balestriero & LeCun (2025, LeJEPA) claim a single trade-off weight, ``loss = (1 - lambda) *
prediction + lambda * SIGReg``, with results stable over a wide range of lambda (they use
~0.05; the prediction term is a per-dim mean, so lambda has the paper's scale). This script trains jepalab's LeJEPA recipe on an MNIST subset at several lambdas (same
backbone, views, data order, steps and seed; only lambda changes) and reports frozen-feature kNN
and linear accuracy, RankMe, the final SIGReg statistic and the collapse monitor. ``lambda = 0``
(prediction only, no regularizer) is included as the anchor that should collapse.
    .venv/bin/python benchmarks/sigreg_sweep.py          # ~10 min on one shared thread (8 lambdas)
The table goes to ``benchmarks/results/sigreg_sweep.md`` with the command in its header.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_table import RESULTS, Method, Setting, loadavg, methods_for, mnist_setting, run_method  # noqa: E402

from jepalab.atomic import write_text_atomic
from jepalab.errors import ConfigError  # noqa: E402

DEFAULT_LAMBDAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def lejepa_method(st: Setting) -> Method:
    """The LeJEPA row of the benchmark table (same model and training settings)."""
    return next(m for m in methods_for(st, with_lightly=False) if m.recipe == "lejepa")


def sweep(st: Setting, lambdas: list[float], steps: int, seed: int, batch: int | None = None) -> list[dict[str, Any]]:
    """Train and probe one LeJEPA per lambda; returns one row dict per lambda."""
    base = lejepa_method(st)
    if batch:
        base = dataclasses.replace(base, batch_size=batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lam in lambdas:
            if not 0.0 <= lam <= 1.0:
                raise ConfigError(f"lambda {lam} is outside [0, 1]; LeJEPA mixes (1 - lambda) * pred + lambda * SIGReg.")
            m = dataclasses.replace(base, label=f"lambda={lam:g}", model=dict(base.model, sigreg_weight=lam))
            row = run_method(m, st, steps, seed, Path(tmp))
            row["lambda"] = lam
            rows.append(row)
            print(row, flush=True)
    return rows


def summary(rows: list[dict[str, Any]], lo: float = 0.005, hi: float = 0.5) -> list[str]:
    """Spread of the scores over lambda in [lo, hi] (the range the claim is about)."""
    band = [r for r in rows if lo <= r["lambda"] <= hi]
    out = []
    if len(band) >= 2:
        for key, name in (("linear", "linear acc"), ("knn", "kNN acc")):
            v = [r[key] for r in band]
            out.append(f"- {name} over lambda in [{lo:g}, {hi:g}]: min {min(v):.3f}, max {max(v):.3f}, "
                       f"spread {max(v) - min(v):.3f}, mean {statistics.mean(v):.3f}.")
    zero = [r for r in rows if r["lambda"] == 0.0]
    if zero:
        z = zero[0]
        out.append(f"- lambda=0 (no SIGReg): monitor collapsed = {'yes' if z['collapsed'] else 'no'}, "
                   f"rank {z['rank']:.1f}, linear {z['linear']:.3f}.")
    return out


def to_markdown(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = [*header, "", "| lambda | final loss | kNN acc | linear acc | eff. rank | monitor collapsed | wall s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lambda']:g} | {r['final_loss']:.4f} | {r['knn']:.3f} | {r['linear']:.3f} | {r['rank']:.1f} | "
                     f"{'yes' if r['collapsed'] else 'no'} | {r['wall_s']:.1f} |")
    return "\n".join([*lines, "", *summary(rows), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="LeJEPA SIGReg lambda sweep on MNIST.")
    p.add_argument("--lambdas", default=",".join(f"{x:g}" for x in DEFAULT_LAMBDAS))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--mnist-train", type=int, default=10000)
    p.add_argument("--probe", type=int, default=5000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "sigreg_sweep.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    lambdas = [float(x) for x in a.lambdas.split(",") if x.strip()]
    t0, load0 = time.perf_counter(), loadavg()
    st = mnist_setting(a.mnist_train, a.probe, a.test, seed=a.seed)
    rows = sweep(st, lambdas, a.steps, a.seed, a.batch)
    cmd = " ".join(["benchmarks/sigreg_sweep.py", *(sys.argv[1:] if argv is None else argv)])
    header = ["# SIGReg lambda sweep (LeJEPA on MNIST)", "", f"Command: `.venv/bin/python {cmd}`", "",
              f"jepalab LeJEPA recipe (conv encoder 64-d, 4 views, projector 256->64, SIGReg 256 directions x 17 "
              f"points on [0, 3]) on {st.note}; {a.steps} steps x batch {a.batch}, lr 2e-3, seed {a.seed}; "
              f"torch {torch.__version__} CPU, {torch.get_num_threads()} thread(s); load average at start {load0}, "
              f"total {time.perf_counter() - t0:.0f} s. lambda is in the paper's units: the prediction term is "
              "the squared error averaged over views, samples and the 64 projection dims."]
    md = to_markdown(rows, header)
    write_text_atomic(a.out, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
