"""How fast is one latent plan on this machine, and how close to the fp32 matmul roofline?

Why: LeWorldModel reports about 1 s per CEM plan (300 samples x 30 iterations x horizon 5) on one
GPU and about 49 s on an 8-thread CPU. This script measures the same plan with the LeWM-size
predictor (``jepalab.nn.ac_predictor.ActionConditionedPredictor``: 6 layers, width 192, history 3,
one token per frame; actions = frameskip 5 x 2-D) on this CPU, counts its FLOPs with
``torch.utils.flop_counter.FlopCounterMode``, and relates the achieved rate to the measured fp32
GEMM peak (``benchmarks/matmul_peak.py``). Writes ``benchmarks/results/plan_speed.md``.

Run: ``python benchmarks/plan_speed.py --threads 1`` (``--quick``: 3 iterations per planner,
a smoke run). All planners run under ``torch.inference_mode`` except the gradient one.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from jepalab.atomic import write_text_atomic
from jepalab.planning import CEM, MPPI, GradientPlanner

HERE = Path(__file__).resolve().parent


def load_matmul_peak():
    """Import ``benchmarks/matmul_peak.py`` (another file's tool: used, not copied)."""
    spec = importlib.util.spec_from_file_location("matmul_peak", HERE / "matmul_peak.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError("benchmarks/matmul_peak.py is missing; it measures the fp32 GEMM peak.")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["matmul_peak"] = mod
    spec.loader.exec_module(mod)
    return mod


def lewm_predictor(action_dim: int = 10, seed: int = 0) -> nn.Module:
    """The LeWM-size action-conditioned predictor with non-trivial weights.

    The real class zero-initialises AdaLN modulation and (residual) output layers, which would
    make every candidate equally good; random small weights give a planning problem of the same
    cost per rollout with a real optimum.
    """
    from jepalab.nn.ac_predictor import ActionConditionedPredictor

    torch.manual_seed(seed)
    model = ActionConditionedPredictor(embed_dim=192, action_dim=action_dim, dim=192, depth=6, heads=4, history=3)
    for name, p in model.named_parameters():
        if "modulation" in name or "out_proj" in name:
            nn.init.normal_(p, std=0.02)
    return model.eval().requires_grad_(False)


def time_plan(make, iterations: int, z_hist: torch.Tensor, goal: torch.Tensor, a_hist: torch.Tensor,
              repeats: int) -> tuple[float, float]:
    """Median and min seconds per full ``solve`` (a 1-iteration plan warms up first)."""
    make(1).solve(z_hist, goal, a_hist)
    times = []
    for r in range(repeats):
        planner = make(iterations)
        planner.reset(seed=r)
        t0 = time.perf_counter()
        planner.solve(z_hist, goal, a_hist)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def count_flops(make, iterations: int, z_hist: torch.Tensor, goal: torch.Tensor, a_hist: torch.Tensor) -> int:
    """FLOPs of one plan: a 1-iteration plan counted by FlopCounterMode, times ``iterations``.

    Every iteration runs the same rollout on the same number of candidates (MPPI adds one
    E-row rollout of its final mean, counted here as part of the 1-iteration plan), so this is
    exact up to that final rollout and saves running the slow plan a second time.
    """
    with FlopCounterMode(display=False) as fc:
        make(1).solve(z_hist, goal, a_hist)
    return fc.get_total_flops() * iterations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (default 1: on a shared 2-core machine 2 threads can be far slower)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="3 iterations per planner: a smoke run, not the table")
    p.add_argument("--out", type=Path, default=HERE / "results" / "plan_speed.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    mm = load_matmul_peak()
    peak = mm.measure_matmul_peak(args.threads, (512, 1024), mm.vit_gemm_shapes(300 * 3, 192), repeats=5)
    print(f"fp32 GEMM peak {peak.peak_gflops:.1f} GFLOP/s ({args.threads} threads)", flush=True)
    model = lewm_predictor()
    g = torch.Generator().manual_seed(0)
    k, d, a_dim = 3, 192, model.action_dim
    runs = [  # (label, factory(iterations) -> planner, iterations, envs)
        ("CEM LeWM 300 samples x 30 it, 30 elites, H=5", lambda i: CEM(model, horizon=5, samples=300, iterations=i,
                                                                       elites=30), 30, 1),
        ("same, 4 envs in one batch", lambda i: CEM(model, horizon=5, samples=300, iterations=i, elites=30), 30, 4),
        ("CEM V-JEPA2-AC 800 x 10 it, H=1, L1, ball 0.5", lambda i: CEM(model, horizon=1, samples=800, iterations=i,
                                                                        elites=80, cost="l1", radius=0.5), 10, 1),
        ("MPPI 300 x 10 it, H=5", lambda i: MPPI(model, horizon=5, samples=300, iterations=i), 10, 1),
        ("Adam 16 restarts x 30 steps, H=5", lambda i: GradientPlanner(model, horizon=5, candidates=16,
                                                                       iterations=i), 30, 1),
    ]
    rows = []
    for label, make, iters, e in runs:
        iters = min(iters, 3) if args.quick else iters
        z_hist = torch.randn(e, k, d, generator=g)
        goal = torch.randn(e, d, generator=g)
        a_hist = torch.rand(e, k - 1, a_dim, generator=g) * 2 - 1
        flops = count_flops(make, iters, z_hist, goal, a_hist)
        med, best = time_plan(make, iters, z_hist, goal, a_hist, args.repeats)
        rate = flops / med / 1e9
        rows.append((label, e, med, best, flops / 1e9, rate, 100 * rate / peak.peak_gflops))
        print(f"{label} [E={e}]: {med:.2f} s/plan (best {best:.2f}), {flops / 1e9:.1f} GFLOP, "
              f"{rate:.1f} GFLOP/s = {rows[-1][6]:.0f}% of peak", flush=True)
    write_table(args, peak, rows)


def write_table(args: argparse.Namespace, peak, rows: list[tuple]) -> None:
    lines = [
        "# Planning speed (one plan, fp32, CPU)",
        "",
        f"`python benchmarks/plan_speed.py --threads {args.threads} --repeats {args.repeats}"
        f"{' --quick' if args.quick else ''}` — torch {torch.__version__}, "
        f"{args.threads} threads. Predictor: ActionConditionedPredictor, 6 layers, width 192, 4 heads, history 3, "
        "one token per frame, actions 10-d (frameskip 5 x 2). History k=3 embeddings.",
        "",
        f"Measured fp32 GEMM peak: **{peak.peak_gflops:.1f} GFLOP/s** "
        f"(square sizes {', '.join(f'{n}: {v:.0f}' for n, v in peak.by_size.items())}; at the predictor's "
        f"per-step shapes: {', '.join(f'{k}: {v:.0f}' for k, v in peak.shaped.items())}).",
        "",
        "| planner | envs | s / plan (median) | best | GFLOP / plan | GFLOP/s | % of peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.0f}% |" for r in rows]
    lines += [
        "",
        "FLOPs are what `torch.utils.flop_counter.FlopCounterMode` counts: here the matmuls (the CPU "
        "flash-attention kernel, layer norms and activations are not counted), so the % of peak is a lower bound "
        "on work done. The machine is shared with other jobs: timings are noisy upwards.",
        "",
        f"Why 1 s per LeWM plan is out of reach on this CPU: the plan's work is fixed by the predictor, "
        f"{rows[0][4]:.0f} GFLOP for the first row (every candidate runs 6 blocks over a 3-frame window at each of "
        f"5 steps), so 1 s per plan would take {rows[0][4]:.0f} GFLOP/s, "
        f"{rows[0][4] / peak.peak_gflops:.1f}x the measured GEMM peak.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
