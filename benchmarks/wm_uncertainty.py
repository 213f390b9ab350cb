"""Does an uncertainty-aware planning cost help? The compact recipe with an ensemble of predictors.

Trains the ``compact`` recipe of ``wm_parts.py`` with ``model.ensemble = 3`` (three MLP predictors
on one encoder) on the env's benchmark recording, then plans the same held-out goals with CEM
300 x 10 and the min cost plus ``beta x`` the members' disagreement, for each ``beta``
(0 = the plain cost). Failed goals are classified as in ``world_models.py``.

Run: ``python benchmarks/wm_uncertainty.py --env tworoom`` (after ``world_models.py --envs tworoom``
has recorded the data) -> ``results/wm_uncertainty_<env>.md`` (+ .json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wm_parts import CEM, DATA, HERE, RECIPES, ROOT, evaluate, record, slug, train_model  # noqa: E402

from jepalab.atomic import write_text_atomic  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="tworoom", choices=list(DATA))
    p.add_argument("--ensemble", type=int, default=3)
    p.add_argument("--pred-depth", type=int, default=None, help="predictor layers (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--betas", nargs="+", type=float, default=[0.0, 0.5, 2.0])
    p.add_argument("--goals", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_world_models")
    a = p.parse_args()
    if a.ensemble < 2 or a.goals < 1 or any(b < 0 for b in a.betas):
        p.error("--ensemble must be >= 2, --goals >= 1 and every beta >= 0")
    torch.set_num_threads(1)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig

    d = DATA[a.env]
    data = record(a.env, a.work, d)
    cfg = WorldModelConfig(img_size=d["img"], in_chans=d["chans"], action_dim=d["action_dim"], frameskip=5,
                           **{**RECIPES["compact"]["model"], "ensemble": a.ensemble,
                              **({"pred_depth": a.pred_depth} if a.pred_depth else {})})
    torch.manual_seed(a.seed)
    model = WorldModel(cfg)
    tr = train_model(model, data, a.env, "compact", a.work / slug(a.env) / f"run_ensemble_{a.seed}", a.seed,
                     a.steps)
    rows = {}
    for beta in a.betas:
        t0 = time.perf_counter()
        rows[beta] = evaluate(model, a.env, data, a.goals, "cem", {**CEM, "uncertainty": beta}, "min",
                              baseline=False)
        print(f"beta {beta}: {rows[beta]['successes']}/{rows[beta]['episodes']} {rows[beta]['failure_causes']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    cmd = (f"python benchmarks/wm_uncertainty.py --env {a.env}" + (f" --steps {a.steps}" if a.steps else "")
           + (f" --pred-depth {a.pred_depth}" if a.pred_depth else ""))
    L = [f"# Uncertainty-aware planning cost ({a.env})", "",
         f"Command: `{cmd}` — compact recipe with {a.ensemble} predictors, {tr['train_steps']} steps in "
         f"{tr['train_s'] / 60:.1f} min; CEM 300 x 10, min cost + beta x ensemble disagreement; {a.goals} held-out "
         f"goals; load average before {load}.", "",
         "| beta | success [Wilson 95%] | s / plan | reached - expected cost | failures by cause |",
         "|---:|---|---:|---:|---|"]
    for beta, r in rows.items():
        lo, hi = r["wilson"]
        causes = ", ".join(f"{k} {v}" for k, v in r["failure_causes"].items() if v) or "none"
        gap = "—" if r["cost_gap"] is None else f"{r['cost_gap']:+.3f}"
        L.append(f"| {beta:g} | {100 * r['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] | "
                 f"{r['s_per_plan']:.3f} | {gap} | {causes} |")
    out = HERE / "results" / f"wm_uncertainty_{slug(a.env)}.md"
    write_text_atomic(out, "\n".join(L) + "\n")
    write_text_atomic(out.with_suffix(".json"), json.dumps({"command": cmd, "train": tr, "rows": rows}, indent=2,
                                                           default=str))
    print("\n".join(L))


if __name__ == "__main__":
    main()
