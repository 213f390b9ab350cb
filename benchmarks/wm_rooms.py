"""Two-Room: do the failed goals cross the wall? Success split by same-room vs other-room goals.

Evaluates a trained world model (a run of ``world_models.py``) on the held-out goals of its
recording, exactly as ``world_models.py`` does, and splits the goals by whether the start and the
goal lie on the same side of the wall (agent x vs the wall's x, state[4]). Why: Two-Room's failures
are model failures while average rollouts are accurate; if they concentrate on goals behind the
wall, the model's errors are at the wall and door, where a plan must go around instead of through.

Run: ``python benchmarks/wm_rooms.py`` (defaults: the compact seed-0 run of
``world_models.py --envs tworoom``) -> ``results/wm_rooms_tworoom.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wm_parts import CEM, HERE, ROOT, wilson  # noqa: E402

from jepalab.atomic import write_text_atomic  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "bench_world_models" / "tworoom" / "run_compact_0")
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "bench_world_models" / "tworoom" / "mixed")
    p.add_argument("--goals", type=int, default=100)
    p.add_argument("--reduce", default="min", choices=("last", "mean", "min"))
    a = p.parse_args()
    torch.set_num_threads(1)
    from jepalab.data.trajectories import load_episode
    from jepalab.planning.evaluate import evaluate_planning, load_world_model

    model = load_world_model(a.run)
    r = evaluate_planning(model, "tworoom", a.data, episodes=a.goals, goal_offset=25, budget=50, planner="cem",
                          planner_kwargs={**CEM, "reduce": a.reduce}, seed=0, baseline=False)
    groups: dict[str, list[dict]] = {"same room": [], "other room": []}
    for row in r["per_episode"]:
        ep = load_episode(a.data, row["episode"])
        s, g = ep["state"][row["start"]], ep["state"][row["start"] + 25]
        wall = float(s[4])
        groups["same room" if (s[0] < wall) == (g[0] < wall) else "other room"].append(row)
    rel = lambda p: p.relative_to(ROOT) if p.is_relative_to(ROOT) else p  # noqa: E731
    L = ["# Two-Room: success by whether the goal is behind the wall", "",
         f"Command: `python benchmarks/wm_rooms.py --run {rel(a.run)} --data {rel(a.data)}` — CEM 300 x 10, "
         f"{a.reduce} cost, {r['episodes']} held-out goals; load average {os.getloadavg()[0]:.1f}.", "",
         "| goals | count | success [Wilson 95%] | failures by cause |", "|---|---:|---|---|"]
    for name, rows in groups.items():
        k = sum(x["success"] for x in rows)
        lo, hi = wilson(k, len(rows))
        causes: dict[str, int] = {}
        for x in rows:
            if "failure" in x:
                causes[x["failure"]["cause"]] = causes.get(x["failure"]["cause"], 0) + 1
        rate = f"{100 * k / len(rows):.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]" if rows else "—"
        L.append(f"| {name} | {len(rows)} | {rate} | {', '.join(f'{c} {n}' for c, n in causes.items()) or 'none'} |")
    L.append(f"| all | {r['episodes']} | {100 * r['success_rate']:.0f}% | "
             f"{', '.join(f'{c} {n}' for c, n in r['failure_causes'].items() if n) or 'none'} |")
    out = HERE / "results" / "wm_rooms_tworoom.md"
    write_text_atomic(out, "\n".join(L) + "\n")
    print("\n".join(L))
    steps = np.mean([x["steps"] for x in r["per_episode"]])
    print(f"mean steps {steps:.1f}")


if __name__ == "__main__":
    main()
