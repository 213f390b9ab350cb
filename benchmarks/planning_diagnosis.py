"""Where planning loses goals, per env: the diagnosis behind the world-model table, reproducible.

Why: ``world_models.py`` reports success rates; this script says *why* they are what they are. It
trains the benchmark's jepalab LeWM column again (same data, settings and seed as
``world_models.py``, so the same model) and runs on its held-out goals

1. ``jepalab.planning.diagnose_planning``: replay of the recorded actions, frame gap, the oracle
   rank of the recorded plan among 300 random ones under the planning cost, the search gap;
2. goal reaching with white (LeWM) vs coloured (iCEM, beta 2) sampling noise, at the benchmark's
   CEM (64 x 5) and at the paper's (300 x 30).

Run: ``.venv/bin/python benchmarks/planning_diagnosis.py`` (Two-Room, ~15 min idle);
``--envs pusht tworoom``; ``--no-full`` skips the 300 x 30 rows. Writes
``benchmarks/results/planning_diagnosis.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world_models as wm  # noqa: E402

from jepalab.atomic import write_text_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=["tworoom"], choices=["pusht", "tworoom", "bouncing"])
    p.add_argument("--goals", type=int, default=20)
    p.add_argument("--no-full", action="store_true", help="skip the paper-size CEM (300 x 30) rows")
    p.add_argument("--work", type=Path, default=wm.ROOT / "runs" / "bench_world_models")
    p.add_argument("--out", type=Path, default=wm.HERE / "results" / "planning_diagnosis.md")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from jepalab.planning.diagnose import diagnose_planning
    from jepalab.planning.evaluate import evaluate_planning

    args = " ".join(argv if argv is not None else sys.argv[1:])
    md = ["# Planning diagnosis: where goals are lost", "",
          f"Command: `.venv/bin/python benchmarks/planning_diagnosis.py{' ' + args if args else ''}` — torch "
          f"{torch.__version__}, 1 thread, load average at start {' '.join(f'{x:.1f}' for x in os.getloadavg())}; the "
          f"model is `world_models.py`'s jepalab column (same data, settings, seed); {a.goals} held-out goals, 25 "
          "steps ahead, 50-step budget.", ""]
    for env in a.envs:
        s = wm.settings(env, False)
        data = wm.record(env, a.work, s)
        model = wm.world_model(s)
        tr = wm.train_model(model, data, s, a.work / env / "run_diagnosis")
        d = diagnose_planning(model, env, data, episodes=a.goals, samples=300,
                              planner_kwargs={**wm.CEM_EVAL, "noise_beta": 0.0})
        md += [f"## {env} (trained {s['train_steps']} steps in {tr['train_s']:.0f} s)", "",
               "| replay of recorded actions reaches goal | frame gap (median) | oracle rank (median) | recorded plan "
               "cheapest among 300 random | search gap (median, CEM 64x5 white) | planner reaches the recorded plan's cost |",
               "|---:|---:|---:|---:|---:|---:|",
               f"| {100 * d['replay_success_rate']:.0f}% | {d['frame_gap']:.4f} | {d['oracle_rank']:.3f} | "
               f"{100 * d['oracle_best_rate']:.0f}% of {d['ranked_tasks']} | {d['search_gap']:.2f} | "
               f"{100 * d['planner_reaches_oracle_rate']:.0f}% |", "",
               "| CEM | noise | success | random actions | s / plan |", "|---|---|---:|---:|---:|"]
        sizes = [("64 x 5", wm.CEM_EVAL)] + ([] if a.no_full else [("300 x 30", wm.LEWM_CEM)])
        for label, size in sizes:
            for beta in (0.0, 2.0):
                t0 = time.perf_counter()
                r = evaluate_planning(model, env, data, episodes=a.goals, goal_offset=25, budget=50, planner="cem",
                                      planner_kwargs={**size, "noise_beta": beta}, seed=0)
                md.append(f"| {label} | {'white' if beta == 0 else f'coloured beta {beta:g}'} | "
                          f"{100 * r['success_rate']:.0f}% | {100 * r['random_success_rate']:.0f}% | "
                          f"{r['s_per_plan']:.3f} |")
                print(env, md[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
        md.append("")
    write_text_atomic(a.out, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
