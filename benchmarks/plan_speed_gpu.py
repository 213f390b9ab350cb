"""LeWM's plan on a GPU: how much of the TF32 peak one CEM plan uses, alone and with goals batched.

Why: one LeWM-size plan (CEM 300 samples x 30 iterations x horizon 5, the 6-layer width-192
predictor of ``plan_speed.py``) is about 0.9 TFLOP, spread over some 13,000 small kernels. On an
H200 that plan is launch-bound: the GPU waits on Python and the driver, not on arithmetic. The
planners already batch ``E`` environments x candidates into one rollout, so planning ``E`` goals
at once (a vector env, or many held-out goals in an evaluation) multiplies the work per kernel by
``E`` at nearly the same launch count. ``--compile`` adds a row with the predictor's rollout under
``torch.compile(mode="reduce-overhead")`` (CUDA graphs: one launch replays the captured kernels).

Each row: seconds per ``solve`` (the median of ``--repeats`` after a warm-up, queue drained),
counted FLOPs (``FlopCounterMode``: matmuls), the achieved rate and its share of the measured TF32
GEMM peak (8192^3). Rows are written to the JSON file as they finish, so a run cut short keeps
what it measured. Run: ``python benchmarks/plan_speed_gpu.py --out benchmarks/results/plan_speed_gpu.json``
then ``--md benchmarks/results/plan_speed_gpu.md FILE.json`` for the table. On a CPU it runs
too (``--device cpu --envs 1 --quick``: a smoke run of the same code).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from jepalab.atomic import write_text_atomic
from jepalab.planning import CEM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_solve(make: Callable[[int], CEM], iters: int, inputs: tuple[torch.Tensor, ...], repeats: int,
               dev: torch.device) -> list[float]:
    """Seconds of ``repeats`` full solves after two warm-up solves (compilation, autotuning, caches)."""
    for _ in range(2):
        make(iters).solve(*inputs)
    _sync(dev)
    out = []
    for r in range(repeats):
        planner = make(iters)
        planner.reset(seed=r)
        _sync(dev)
        t0 = time.perf_counter()
        planner.solve(*inputs)
        _sync(dev)
        out.append(time.perf_counter() - t0)
    return out


def measure(args: argparse.Namespace) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from plan_speed import lewm_predictor
    from world_models_gpu import gpu_peak_tflops

    dev = torch.device(args.device)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls: the peak we compare with
    peak = gpu_peak_tflops(dev)  # best TF32 GEMM rate (8192^3; 1024^3 on a CPU)
    print(f"TF32 GEMM peak {peak:.1f} TFLOP/s on {dev}", flush=True)
    iters = 3 if args.quick else 30
    model = lewm_predictor().to(dev)
    g = torch.Generator().manual_seed(0)
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                           "torch": torch.__version__, "peak_tflops": peak, "iterations": iters, "rows": [],
                           "command": "python benchmarks/plan_speed_gpu.py " + " ".join(sys.argv[1:])}
    flops: dict[int, int] = {}
    variants = [("eager", e) for e in args.envs] + ([("compiled", e) for e in args.envs] if args.compile else [])
    for mode, e in variants:
        if mode == "compiled" and e not in flops:
            continue  # its eager row was not measured
        if mode == "compiled":
            model.rollout = torch.compile(type(model).rollout.__get__(model), mode="reduce-overhead",
                                          dynamic=False)
        make = lambda i: CEM(model, horizon=5, samples=300, iterations=i, elites=30)  # noqa: E731
        z = torch.randn(e, 3, 192, generator=g).to(dev)
        goal = torch.randn(e, 192, generator=g).to(dev)
        a_hist = (torch.rand(e, 2, model.action_dim, generator=g) * 2 - 1).to(dev)
        if e not in flops:  # counted once per batch size, eagerly: compilation does not change the arithmetic
            with FlopCounterMode(display=False) as fc:
                CEM(model, horizon=5, samples=300, iterations=1, elites=30).solve(z, goal, a_hist)
            flops[e] = fc.get_total_flops() * iters
        flops_1 = flops[e]
        try:
            times = time_solve(make, iters, (z, goal, a_hist), args.repeats, dev)
        except Exception as err:  # noqa: BLE001 - a compiler failure is a result to record, not a crash
            res["rows"].append({"mode": mode, "envs": e, "error": f"{type(err).__name__}: {err}"[:300]})
            print(f"{mode} E={e}: failed ({type(err).__name__})", flush=True)
            continue
        med = statistics.median(times)
        row = {"mode": mode, "envs": e, "s_per_solve": med, "best_s": min(times), "gflop": flops_1 / 1e9,
               "tflops": flops_1 / med / 1e12, "pct_peak": 100 * flops_1 / med / 1e12 / peak}
        res["rows"].append(row)
        print(f"{mode} E={e}: {med:.3f} s per solve, {row['gflop']:.0f} GFLOP, {row['tflops']:.2f} TFLOP/s = "
              f"{row['pct_peak']:.1f}% of the TF32 peak", flush=True)
        if args.out:
            write_text_atomic(args.out, json.dumps(res, indent=2))
        if mode == "compiled":
            del model.rollout  # back to the class's method for the next row's fresh compile


def to_markdown(res: dict[str, Any]) -> str:
    L = [f"# LeWM's plan on {res['device']} (CEM 300 x {res['iterations']} it x H5, width-192 6-layer predictor)", "",
         f"Run: `{res['command']}` (torch {res['torch']}). Measured TF32 GEMM peak (8192^3): "
         f"**{res['peak_tflops']:.0f} TFLOP/s**.", "",
         "| mode | goals planned together | s / solve (median) | GFLOP / solve | TFLOP/s | % of TF32 peak | s per goal |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        if "error" in r:
            L.append(f"| {r['mode']} | {r['envs']} | failed: {r['error'][:80]} | | | | |")
            continue
        L.append(f"| {r['mode']} | {r['envs']} | {r['s_per_solve']:.3f} | {r['gflop']:.0f} | {r['tflops']:.2f} | "
                 f"{r['pct_peak']:.1f}% | {r['s_per_solve'] / r['envs']:.4f} |")
    L += ["", "FLOPs are the matmuls `torch.utils.flop_counter.FlopCounterMode` counts in one eager iteration, "
          "times the iterations; the compiled rows run the same arithmetic."]
    return "\n".join(L) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--envs", type=int, nargs="+", default=[1, 8, 32, 128], help="goals planned in one batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="add torch.compile(mode='reduce-overhead') rows")
    p.add_argument("--quick", action="store_true", help="3 CEM iterations: a smoke run")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--md", type=Path, default=None, help="write the table of the JSON file given as argument")
    p.add_argument("json", nargs="?", type=Path)
    a = p.parse_args()
    if a.md is not None:
        if a.json is None:
            p.error("--md needs the JSON file to read, e.g. --md table.md results.json")
        write_text_atomic(a.md, to_markdown(json.loads(a.json.read_text())))
        print(a.md.read_text())
        return
    measure(a)


if __name__ == "__main__":
    main()
