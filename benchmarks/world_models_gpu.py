"""World models at a GPU budget: LeWM's ViT-tiny, more recorded data, the paper's CEM in evaluation.

Why: ``world_models.py`` shows the loop end to end on a 2-core CPU, where a few minutes of training
on 60 episodes cannot say whether jepalab's LeWorldModel reaches the published success rates. This
script runs the *same parts* (``collect`` -> ``worldmodel`` recipe -> ``evaluate_planning``) at the
scale one GPU allows in minutes:

1. records episodes in parallel worker processes (half random with actions held 5 steps, half the
   scripted expert; merged by hard links into one interleaved dataset, so the held-out split holds
   both kinds);
2. trains LeWorldModel as configured in ``configs/lewm_pusht.yaml`` (ViT-tiny encoder, 12 layers,
   192-d, projector; 6-layer AdaLN-zero predictor over 3 frames; MSE + 0.09 SIGReg; frameskip 5)
   with bf16 autocast;
3. latent rollout error against horizon on held-out clips (vs copy-last);
4. goal reaching on held-out episodes with the paper's planner (CEM 300 samples x 30 iterations x
   30 elites x horizon 5, receding horizon), goal 25 steps ahead, 50-step budget, random-action
   baseline on the same goals;
5. the time of one full LeWM plan on the GPU (queue drained), its FLOPs and the fraction of the
   GPU's measured TF32 matmul peak.

``--recipe compact`` trains the CPU planning model of ``wm_parts.py`` (keypoint encoder + MLP dynamics)
on the same data instead and evaluates it with CEM 300 x 10 and the min-over-horizon cost.

Run (one env per process; two can share one GPU):
``python benchmarks/world_models_gpu.py --envs pusht --out benchmarks/results/world_models_gpu_pusht.json``
and ``python benchmarks/world_models_gpu.py --md benchmarks/results/world_models_gpu.md A.json B.json``
to merge the JSON files into one markdown table. ``--quick`` is a one-minute smoke run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from jepalab.atomic import write_text_atomic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: LeWM's model (configs/lewm_pusht.yaml) at 64 px; data and budget sized for minutes on one GPU
MODEL = dict(objective="lewm", encoder="vit", img_size=64, in_chans=3, embed_dim=192, patch_size=8, enc_depth=12,
             enc_heads=3, proj_hidden=2048, action_dim=2, frameskip=5, history=3, pred_dim=192, pred_depth=6,
             pred_heads=16, pred_residual=False, loss="l2", sigreg_weight=0.09, sigreg_proj=1024)
SETTINGS: dict[str, dict[str, Any]] = {
    "pusht": dict(episodes=700, steps=200, train_steps=3000, batch=128, lr=5e-4),
    "tworoom": dict(episodes=700, steps=100, train_steps=2000, batch=128, lr=5e-4),
    "bouncing": dict(episodes=400, steps=60, train_steps=1500, batch=128, lr=5e-4,
                     env_kwargs=dict(num_balls=1, radius=5.0, speed=[0.5, 3.0], action_scale=3.0)),
}
QUICK = dict(episodes=20, steps=60, train_steps=20, batch=16)
PLAN = dict(samples=300, iterations=30, elites=30, horizon=5)  # LeWM's planner, used for evaluation too
#: ``--recipe compact``: the CPU planning model of wm_parts.py at 64 px (keypoint encoder + MLP dynamics,
#: min-over-horizon cost), trained at the GPU budget with the same data
COMPACT = dict(objective="lewm", img_size=64, in_chans=3, action_dim=2, frameskip=5, loss="l2",
               **__import__("wm_parts").RECIPES["compact"]["model"])


# ---------------------------------------------------------------------------- data
def _collect_shard(job: tuple[str, str, int, str, int, int, int, dict[str, Any]]) -> str:
    env, out, episodes, policy, img, steps, seed, env_kwargs = job
    torch.set_num_threads(1)
    from jepalab.data.recording import collect

    kw = {"repeat": 5} if policy == "random" else {}
    collect(env, out, episodes=episodes, policy=policy, img_size=img, max_steps=steps, seed=seed,
            env_kwargs=env_kwargs, policy_kwargs=kw, progress=False)
    return out


def record_parallel(env: str, work: Path, s: dict[str, Any], workers: int) -> Path:
    """``s["episodes"]`` episodes from ``workers`` processes, interleaved into ``work/env/mixed``:
    shard ``w`` records with seed ``1000 + w``; shards alternate in pairs between random (held 5) and the
    expert, so the held-out episodes (``i % 10 == 9``, always odd) hold both kinds."""
    from jepalab.data.trajectories import episode_path, list_episodes, read_meta, write_meta

    out = work / env / "mixed"
    if (out / "meta.json").is_file() and read_meta(out).get("episodes") == s["episodes"]:
        return out
    workers = max(4, workers)
    per = -(-s["episodes"] // workers)
    jobs = [(env, str(work / env / f"shard{w}"), per, "random" if w % 4 < 2 else "expert", MODEL["img_size"],
             s["steps"], 1000 + w, dict(s.get("env_kwargs", {}))) for w in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        shards = pool.map(_collect_shard, jobs)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    n = 0
    for i in range(per):
        for sh in shards:
            if n < s["episodes"] and i in set(list_episodes(sh)):
                os.link(episode_path(sh, i), episode_path(out, n))
                n += 1
    meta = dict(read_meta(shards[0]), policy="random(repeat 5)+expert, interleaved", policy_kwargs={},
                episodes=n, seed=1000)
    write_meta(out, meta)
    return out


# ---------------------------------------------------------------------------- train + measure
def train_model(data: Path, s: dict[str, Any], run_dir: Path, device: str,
                model_cfg: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource
    from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig
    from jepalab.train import train
    from jepalab.trainer.config import TrainConfig

    torch.manual_seed(0)
    cfg = model_cfg or MODEL
    model = WorldModel(WorldModelConfig(**cfg))
    frames = cfg.get("rollout_steps", 0) + 1 if cfg.get("predictor") == "mlp" else 4
    src = TrajectorySource(TrajectoryConfig(path=str(data), frames=frames, frameskip=MODEL["frameskip"],
                                            channels=MODEL["in_chans"], img_size=MODEL["img_size"]))
    tc = TrainConfig(steps=s["train_steps"], batch_size=s["batch"], lr=s["lr"], weight_decay=0.05,
                     warmup_steps=max(1, s["train_steps"] // 15), log_every=100, monitor_every=500,
                     checkpoint_every=0, progress=False, device=device, amp="auto")
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    last = train(model, src, tc, run_dir, seed=0)
    model.eval()
    return model, {"train_s": time.perf_counter() - t0, "final_loss": float(last["loss"]),
                   "params": sum(p.numel() for p in model.parameters())}


def gpu_peak_tflops(device: torch.device) -> float:
    """Best TF32 GEMM rate (8192^3) in TFLOP/s; the CPU's fp32 rate when ``device`` is a CPU."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e12)
    return best


def run_env(env: str, work: Path, quick: bool, goals: int, workers: int, device: str,
            recipe: str = "lewm") -> dict[str, Any]:
    wm = __import__("wm_parts")
    from jepalab.planning.evaluate import evaluate_planning

    s = {**SETTINGS[env], **(QUICK if quick else {})}
    t0 = time.perf_counter()
    data = record_parallel(env, work, s, workers)
    cfg = COMPACT if recipe == "compact" else MODEL
    out: dict[str, Any] = {"env": env, "settings": s, "model": cfg, "recipe": recipe,
                           "record_s": time.perf_counter() - t0}
    print(f"[{env}] recorded {s['episodes']} episodes in {out['record_s']:.0f} s", flush=True)
    model, tr = train_model(data, s, work / env / f"run_{recipe}", device, cfg)
    out.update(tr)
    print(f"[{env}] trained {s['train_steps']} steps in {tr['train_s']:.0f} s, loss {tr['final_loss']:.4f}", flush=True)
    out["rollout"] = wm.rollout_error(model, data, env, img=MODEL["img_size"], chans=MODEL["in_chans"])
    dev = next(model.parameters()).device
    out["peak_tflops"] = gpu_peak_tflops(dev)
    out["speed"] = wm.plan_speed(model, out["peak_tflops"] * 1e3, PLAN)
    print(f"[{env}] one plan {out['speed']['s_per_plan']:.3f} s", flush=True)
    plan = {**PLAN, **({"iterations": 10, "reduce": "min"} if recipe == "compact" else {}),
            **({"iterations": 3} if quick else {})}
    t1 = time.perf_counter()
    r = evaluate_planning(model, env, data, episodes=goals, goal_offset=25, budget=50, planner="cem",
                          planner_kwargs=plan, seed=0)
    out["planning"] = {k: r[k] for k in ("success_rate", "random_success_rate", "s_per_plan", "flops_per_plan",
                                         "criterion", "episodes", "mean_steps", "plans")}
    out["eval_s"] = time.perf_counter() - t1
    out["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    out["torch"] = torch.__version__
    print(f"[{env}] success {r['success_rate']:.2f} (random {r['random_success_rate']:.2f}) "
          f"in {out['eval_s']:.0f} s", flush=True)
    return out


# ---------------------------------------------------------------------------- report
def to_markdown(results: list[dict[str, Any]], cmd: str) -> str:
    L = ["# World models at a GPU budget (LeWM ViT-tiny with the paper's CEM; the compact recipe)", "",
         "Run: `RESULTS=benchmarks/results PYTHON=python3 bash benchmarks/world_models_gpu.sh` (wheels for the "
         "environments carried in `.whl/`), which starts these processes:", "", f"`{cmd}`", "",
         "| env | device | data (episodes x steps) | params | train steps x batch / s | success [Wilson 95%] | random "
         "| goals | s / plan (median, eval) | criterion |", "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        s, p = r["settings"], r["planning"]
        lo, hi = __import__("wm_parts").wilson(round(p["success_rate"] * p["episodes"]), p["episodes"])
        L.append(f"| {r['env']} ({r.get('recipe', 'lewm')}) | {r['device']} | {s['episodes']} x <= {s['steps']} | {r['params'] / 1e6:.1f}M | "
                 f"{s['train_steps']} x {s['batch']} / {r['train_s']:.0f} | {100 * p['success_rate']:.0f}% "
                 f"[{100 * lo:.0f}, {100 * hi:.0f}] | "
                 f"{100 * p['random_success_rate']:.0f}% | {p['episodes']} | {p['s_per_plan']:.3f} | {p['criterion']} |")
    L += ["", "Latent rollout error (held-out clips; squared error / embedding variance; h = model steps):", "",
          "| env | model | h=1 | h=2 | h=4 | h=8 |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        for name, e in ((r.get("recipe", "lewm"), r["rollout"]["model"]), ("copy-last", r["rollout"]["copy_last"])):
            L.append(f"| {r['env']} | {name} | " + " | ".join(f"{e[h - 1]:.3f}" if h <= len(e) else "—"
                                                          for h in (1, 2, 4, 8)) + " |")
    L += ["", "One full plan at LeWM's budget (CEM 300 x 30 x horizon 5) with each trained model, fp32 (TF32 "
          "matmuls), queue drained before and after:", "",
          "| env | model | device | s / plan | GFLOP / plan | TFLOP/s | % of TF32 peak |",
          "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        sp = r["speed"]
        L.append(f"| {r['env']} | {r.get('recipe', 'lewm')} | {r['device']} | {sp['s_per_plan']:.3f} | {sp['gflop_per_plan']:.0f} | "
                 f"{sp['gflops'] / 1e3:.2f} | {sp['pct_peak']:.1f}% (peak {r['peak_tflops']:.0f} TFLOP/s) |")
    return "\n".join(L) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["pusht"], choices=list(SETTINGS))
    p.add_argument("--goals", type=int, default=None, help="held-out goals per env (default 50; quick 3)")
    p.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 2) // 2), help="recording processes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--recipe", choices=("lewm", "compact"), default="lewm",
                   help="lewm: LeWM's ViT-tiny and CEM 300 x 30 (default); compact: wm_parts.py's planning model")
    p.add_argument("--work", type=Path, default=HERE.parent / "runs" / "bench_world_models_gpu")
    p.add_argument("--out", type=Path, default=None, help="JSON results file (one per process)")
    p.add_argument("--md", type=Path, default=None, help="merge the JSON files given as arguments into this table")
    p.add_argument("json", nargs="*", type=Path)
    a = p.parse_args()
    if a.md is not None:
        res = [r for f in a.json for r in json.loads(f.read_text())]
        write_text_atomic(a.md, to_markdown(res, "; ".join(r.get("command", "?") for r in res)))
        print(a.md.read_text())
        return
    torch.set_float32_matmul_precision("high")
    goals = a.goals or (3 if a.quick else 50)
    cmd = "python benchmarks/world_models_gpu.py " + " ".join(sys.argv[1:])
    res = []
    for env in a.envs:
        res.append({**run_env(env, a.work, a.quick, goals, a.workers, a.device, a.recipe), "command": cmd})
        if a.out is not None:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(a.out, json.dumps(res, indent=2, default=str))
    print(to_markdown(res, cmd))


if __name__ == "__main__":
    main()
