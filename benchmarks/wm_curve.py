"""Planning success against training steps: is a world model limited by its design or its budget?

Why: the compact model planned 83-86% of the Two-Room goals after 600 CPU steps and 97% after
2000 x 128 steps on a GPU. This script trains one model for ``--steps`` steps, keeps a checkpoint
every ``--every`` steps, and plans the same held-out goals from each checkpoint (CEM 300 x 10, the
recipe's cost, no random baseline), so one run draws the curve. The learning-rate schedule is the
full run's, so an intermediate checkpoint is not a shorter run: it was trained at a higher rate.

Variants: ``recipe`` (the compact recipe: batch 64, learning rate 3e-3, a 256-wide 3-layer MLP
predictor), ``shallow`` (its predictor with 2 layers), ``gpu`` (the GPU benchmark's batch 128,
learning rate 5e-4, weight decay 0.05, 2-layer predictor), and the predictor-size study on seed 1
(whose failures were at the wall): ``wide`` (512 wide, 3 layers), ``deep`` (256 wide, 3 layers: the
recipe's predictor) and ``w384`` (384 wide, 2 layers).

Run: ``python benchmarks/wm_curve.py --env tworoom --variant shallow --steps 1500 --every 300`` and
``--variant gpu --steps 750 --every 150`` (the recording of ``world_models.py --envs tworoom`` must
exist); writes ``results/wm_curve_<env>_<variant>.json`` and ``results/wm_curve_<env>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from jepalab.atomic import write_text_atomic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from wm_parts import CEM, DATA, RECIPES, evaluate, slug, world_model  # noqa: E402

VARIANTS = {"recipe": {},                                           # the compact recipe (3-layer predictor)
            "shallow": dict(model=dict(pred_depth=2)),               # its predictor with 2 layers
            "gpu": dict(batch=128, lr=5e-4, weight_decay=0.05, model=dict(pred_depth=2)),
            # a predictor with 4x the parameters: is its capacity what limits the dynamics at a wall?
            "wide": dict(model=dict(pred_dim=512, pred_depth=3)),
            "deep": dict(model=dict(pred_dim=256, pred_depth=3)),   # depth alone (2x the predictor FLOPs)
            "w384": dict(model=dict(pred_dim=384, pred_depth=2))}   # width alone (2x the predictor FLOPs)


def run(env: str, variant: str, steps: int, every: int, goals: int, work: Path, seed: int = 0) -> dict:
    from jepalab.checkpoint import list_checkpoints, load_checkpoint
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource
    from jepalab.train import train
    from jepalab.trainer.config import TrainConfig

    r, d, v = RECIPES["compact"], DATA[env], VARIANTS[variant]
    data = work / slug(env) / "mixed"
    if not (data / "meta.json").is_file():
        raise SystemExit(f"no recording at {data}: run `python benchmarks/world_models.py --envs {env}` first.")
    model = world_model(env, "compact", seed=seed, overrides=v.get("model"))
    src = TrajectorySource(TrajectoryConfig(path=str(data), frames=r["frames"], frameskip=5, channels=d["chans"],
                                            img_size=d["img"], seed=seed))
    run_dir = work / slug(env) / f"curve_{variant}_{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    tc = TrainConfig(steps=steps, batch_size=v.get("batch", r["batch"]), lr=v.get("lr", r["lr"]),
                     weight_decay=v.get("weight_decay", 0.0), warmup_steps=min(50, steps // 4), log_every=100,
                     monitor_every=0, checkpoint_every=every, keep_last=100, progress=False, device="cpu")
    t0 = time.perf_counter()
    train(model, src, tc, run_dir, seed=seed)
    out = {"env": env, "variant": variant, "train": {**VARIANTS[variant], "steps": steps, "seed": seed},
           "train_s": time.perf_counter() - t0, "goals": goals, "curve": []}
    print(f"[{variant}] trained {steps} steps in {out['train_s']:.0f} s", flush=True)
    for ck in list_checkpoints(run_dir):
        step = load_checkpoint(ck, model).get("step")
        model.eval()
        e = evaluate(model, env, data, goals, "cem", CEM, r["reduce"], baseline=False)
        out["curve"].append({"step": step, "success_rate": e["success_rate"], "wilson": e["wilson"],
                             "failure_causes": e["failure_causes"]})
        print(f"[{variant}] step {step}: {e['successes']}/{goals} {e['failure_causes']}", flush=True)
    return out


def to_markdown(results: list[dict]) -> str:
    L = ["# Planning success against training steps (compact recipe, CEM 300 x 10, min cost)", "",
         "| env | variant | seed | batch / lr / weight decay | step | success [Wilson 95%] | goals | failures by cause |",
         "|---|---|---:|---|---:|---|---:|---|"]
    for res in results:
        r, v = RECIPES["compact"], res["train"]
        hp = f"{v.get('batch', r['batch'])} / {v.get('lr', r['lr'])} / {v.get('weight_decay', 0.0)}"
        if v.get("model"):
            hp += " (" + ", ".join(f"{k} {x}" for k, x in v["model"].items()) + ")"
        for p in res["curve"]:
            lo, hi = p["wilson"]
            causes = ", ".join(f"{k} {n}" for k, n in p["failure_causes"].items() if n) or "none"
            L.append(f"| {res['env']} | {res['variant']} | {v.get('seed', 0)} | {hp} | {p['step']} / {v['steps']} | "
                     f"{100 * p['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] | {res['goals']} | {causes} |")
    L += ["", "Runs: " + "; ".join(f"`{res['command']}` (training {res['train_s'] / 60:.1f} min, load "
                                   f"{res['load']})" for res in results)]
    return "\n".join(L) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="tworoom", choices=list(DATA))
    p.add_argument("--variant", default="recipe", choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--every", type=int, default=300)
    p.add_argument("--goals", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="initialisation and clip-sampling seed")
    p.add_argument("--work", type=Path, default=HERE.parent / "runs" / "bench_world_models")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    a = p.parse_args()
    if a.steps < 1 or a.every < 1 or a.goals < 1:
        p.error("--steps, --every and --goals must be >= 1")
    torch.set_num_threads(1)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    res = run(a.env, a.variant, a.steps, a.every, a.goals, a.work, a.seed)
    res["command"] = f"python benchmarks/wm_curve.py --env {a.env} --variant {a.variant} --steps {a.steps} " \
                     f"--every {a.every}" + (f" --goals {a.goals}" if a.goals != 100 else "") \
                     + (f" --seed {a.seed}" if a.seed else "")
    res["load"] = f"{load} before, " + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " after"
    a.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"wm_curve_{slug(a.env)}_{a.variant}{f'_seed{a.seed}' if a.seed else ''}.json"
    write_text_atomic(a.out_dir / name, json.dumps(res, indent=2))
    found = [json.loads(f.read_text()) for f in sorted(a.out_dir.glob(f"wm_curve_{slug(a.env)}_*.json"))]
    print(write_md(a.out_dir / f"wm_curve_{slug(a.env)}.md", found))


def write_md(path: Path, results: list[dict]) -> str:
    text = to_markdown(results)
    write_text_atomic(path, text)
    return text


if __name__ == "__main__":
    main()
