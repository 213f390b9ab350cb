"""World models end to end on this CPU: record -> train LeWM -> rollout error -> plan to held-out goals.

Why: the issue's question is whether jepalab's action-conditioned loop works as a whole, and how
it compares with a reference. Per environment (bouncing "actions" world always; Push-T and
Two-Room when their packages import) this script
1. records episodes with a random policy (actions held 5 steps) and the scripted expert, merged
   into one dataset (episode i alternates between them, so the held-out split has both);
2. trains LeWorldModel (``worldmodel`` recipe, objective ``lewm``: conv encoder + AdaLN-zero causal
   predictor, MSE + 0.09 SIGReg) with a small budget sized for this CPU;
3. measures latent rollout error against horizon on held-out clips, against copy-last;
4. plans toward held-out goals (LeWM protocol: goal 25 steps ahead, 50-step budget) with CEM and
   a random-action baseline on the same goals (``jepalab.planning.evaluate``);
5. times one full LeWM CEM plan (300 samples x 30 iterations x horizon 5) on the trained model and
   on the LeWM-size predictor, with FLOPs (FlopCounterMode) and the fraction of the measured fp32
   matmul peak (``benchmarks/matmul_peak.py``);
6. side by side: the same parts trained with lightly's ``LeWMLoss`` on identical data with an
   identical budget, in ``.venv-bench`` (torch 2.14.1 + lightly 1.6.0; skipped with a note if absent).

Run: ``python benchmarks/world_models.py`` (~20 min on the shared 2-core machine), ``--quick`` for a
smoke run, ``--envs bouncing`` for one env. Writes ``benchmarks/results/world_models.md`` (+ .json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jepalab.atomic import write_text_atomic
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"

#: per env: data, model and budget sized for a 2-core CPU (full run / --quick)
SETTINGS: dict[str, dict[str, Any]] = {
    "bouncing": dict(img=32, chans=1, env_kwargs=dict(num_balls=1, radius=5.0, speed=[0.5, 3.0], action_scale=3.0),
                     episodes=60, steps=60, frameskip=5, embed=32, enc_width=8, enc_dim=16, pred_dim=64,
                     train_steps=800, batch=16, lr=0.01),
    "pusht": dict(img=64, chans=3, env_kwargs={}, episodes=60, steps=120, frameskip=5, embed=64, enc_width=16,
                  enc_dim=32, pred_dim=96, train_steps=800, batch=16, lr=0.003),
    "tworoom": dict(img=64, chans=3, env_kwargs={}, episodes=60, steps=100, frameskip=5, embed=64, enc_width=16,
                    enc_dim=32, pred_dim=96, train_steps=800, batch=16, lr=0.003),
}
QUICK = dict(episodes=20, steps=60, train_steps=30, quick=True)
CEM_EVAL = dict(samples=64, iterations=5, elites=8, horizon=5, noise_beta=2.0)  # evaluation planner (CPU budget)
LEWM_CEM = dict(samples=300, iterations=30, elites=30, horizon=5)  # the paper's plan, timed once
#: envs also evaluated with the paper's CEM size (300 x 30, coloured noise): ~5 min per env on this CPU
FULL_CEM_ENVS = ("tworoom",)


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------- data
def record(env: str, work: Path, s: dict[str, Any], seed: int = 0) -> Path:
    """Random (held 5 steps) and expert episodes, interleaved into ``work/env/mixed``."""
    from jepalab.data.trajectories import collect, list_episodes, load_episode, read_meta, save_episode, write_meta

    out = work / env / "mixed"
    if (out / "meta.json").is_file() and read_meta(out).get("episodes") == s["episodes"] and \
            read_meta(out).get("policy", "").endswith("pairs"):
        return out
    shutil.rmtree(out, ignore_errors=True)
    if s["episodes"] % 4:
        raise ValueError(f"episodes={s['episodes']}: use a multiple of 4 (random/expert pairs alternate)")
    half = s["episodes"] // 2
    parts = {}
    for pol, kw in (("random", {"repeat": 5}), ("expert", {})):
        parts[pol] = work / env / pol
        collect(env, parts[pol], episodes=half, policy=pol, img_size=s["img"], max_steps=s["steps"], seed=seed,
                env_kwargs=s["env_kwargs"], policy_kwargs=kw, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    # pairs alternate: 0,1 random, 2,3 expert, ... so the held-out episodes (i % 10 == 9) hold both kinds
    # (plain alternation put only expert episodes there)
    for i in range(2 * half):
        pol = "random" if i % 4 < 2 else "expert"
        j = (i // 4) * 2 + i % 2
        save_episode(out, i, load_episode(parts[pol], list_episodes(parts[pol])[j]))
    meta = dict(read_meta(parts["random"]), policy="random(repeat 5)+expert, interleaved in pairs", policy_kwargs={},
                episodes=2 * half)
    write_meta(out, meta)
    return out


# ---------------------------------------------------------------------------- model + training
def world_model(s: dict[str, Any], lightly: bool = False) -> Any:
    from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig

    cfg = WorldModelConfig(encoder="conv", img_size=s["img"], in_chans=s["chans"], embed_dim=s["embed"],
                           enc_width=s["enc_width"], enc_dim=s["enc_dim"], action_dim=2, frameskip=s["frameskip"],
                           history=3, pred_dim=s["pred_dim"], pred_depth=2, pred_heads=4, sigreg_weight=0.09,
                           sigreg_proj=256)
    torch.manual_seed(0)
    return LightlyLeWM(cfg) if lightly else WorldModel(cfg)


def _lightly_class() -> Any:
    from jepalab.recipes.worldmodel import WorldModel

    class _LightlyLeWM(WorldModel):
        """The same encoder and predictor, trained with lightly's ``LeWMLoss`` (prediction MSE +
        lambda * lightly's SIGReg) instead of jepalab's objective: the side-by-side peer."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            from lightly.loss import LeWMLoss

            self.lightly_loss = LeWMLoss(lambda_param=config.sigreg_weight, sigreg_num_vectors=config.sigreg_proj)

        def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
            frames, actions = self.action_blocks(batch["frames"], batch["actions"])
            z = self.encode_clip(frames)
            pred = self.predictor(z[:, :-1], actions)
            loss = self.lightly_loss(predicted=pred, target=z[:, 1:], embeddings=z)
            return {"loss": loss, "embeddings": z.flatten(0, 1).detach()}

    return _LightlyLeWM


def LightlyLeWM(cfg: Any) -> Any:  # noqa: N802 - a factory standing in for the class
    return _lightly_class()(cfg)


def train_model(model: Any, data: Path, s: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource
    from jepalab.train import train
    from jepalab.trainer.config import TrainConfig

    src = TrajectorySource(TrajectoryConfig(path=str(data), frames=4, frameskip=s["frameskip"],
                                            channels=s["chans"], img_size=s["img"]))
    tc = TrainConfig(steps=s["train_steps"], batch_size=s["batch"], lr=s["lr"], weight_decay=0.0,
                     warmup_steps=min(50, s["train_steps"] // 4),
                     log_every=50, monitor_every=0, checkpoint_every=0, progress=False, device="cpu")
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time the benchmark runs
    t0 = time.perf_counter()
    last = train(model, src, tc, run_dir, seed=0)
    model.eval()
    return {"train_s": time.perf_counter() - t0, "final_loss": float(last["loss"])}


# ---------------------------------------------------------------------------- measurements
@torch.inference_mode()
def rollout_error(model: Any, data: Path, s: dict[str, Any], horizon: int = 8, clips: int = 64) -> dict[str, Any]:
    """Held-out clips: encode, imagine ``horizon`` steps from 3 context frames and the recorded
    actions; per step ``h`` the MSE to the encoded truth divided by the embeddings' variance, for
    the model and for copy-last (predict the last context embedding forever)."""
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource

    from jepalab.errors import DataError

    k = 3
    while True:  # the longest horizon the held-out episodes allow (Two-Room episodes end at the target)
        try:
            src = TrajectorySource(TrajectoryConfig(path=str(data), frames=k + horizon, frameskip=s["frameskip"],
                                                    split="test", channels=s["chans"], img_size=s["img"]))
            break
        except DataError:
            if horizon <= 1:
                raise
            horizon -= 1
    dev = next(model.parameters()).device
    b = src.batch(0, clips)
    z = model.encode_clip(b["frames"].to(dev))                         # (B, k+H, D)
    a = b["actions"].to(dev)                                           # (B, k+H-1, f*A)
    pred = model.rollout(z[:, :k], a[:, k - 1:], a[:, : k - 1])        # (B, H, D)
    truth = z[:, k:]
    var = float(z.flatten(0, 1).var(0).sum())
    err = ((pred - truth) ** 2).sum(-1).mean(0) / var
    copy = ((z[:, k - 1: k] - truth) ** 2).sum(-1).mean(0) / var
    return {"model": [round(float(e), 4) for e in err], "copy_last": [round(float(e), 4) for e in copy]}


def plan_speed(model: Any, peak: float, plan: dict[str, Any]) -> dict[str, Any]:
    """Seconds, FLOPs and % of peak of one plan (FLOPs: a 1-iteration plan counted, x iterations)."""
    from torch.utils.flop_counter import FlopCounterMode

    from jepalab.planning import CEM

    d, a = int(model.embed_dim if hasattr(model, "embed_dim") else 192), int(model.action_dim)
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)
    z, goal = torch.randn(1, 3, d, generator=g).to(dev), torch.randn(1, d, generator=g).to(dev)
    a_hist = (torch.rand(1, 2, a, generator=g) * 2 - 1).to(dev)
    with FlopCounterMode(display=False) as fc:
        CEM(model, **{**plan, "iterations": 1}).solve(z, goal, a_hist)
    flops = fc.get_total_flops() * plan["iterations"]
    planner = CEM(model, **plan)
    if dev.type == "cuda":  # warm-up (kernel selection), then time with the queue drained
        planner.solve(z, goal, a_hist)
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    planner.solve(z, goal, a_hist)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    sec = time.perf_counter() - t0
    return {"s_per_plan": sec, "gflop_per_plan": flops / 1e9, "gflops": flops / sec / 1e9,
            "pct_peak": 100 * flops / sec / 1e9 / peak}


def evaluate_env(env: str, model: Any, data: Path, s: dict[str, Any], episodes: int,
                 plan: dict[str, Any] | None = None) -> dict[str, Any]:
    from jepalab.planning.evaluate import evaluate_planning

    r = evaluate_planning(model, env, data, episodes=episodes, goal_offset=25, budget=50, planner="cem",
                          planner_kwargs=plan or CEM_EVAL, seed=0)
    return {k: r[k] for k in ("success_rate", "random_success_rate", "s_per_plan", "flops_per_plan", "criterion",
                              "episodes", "mean_steps")}


def run_column(env: str, work: Path, s: dict[str, Any], lightly: bool, episodes: int) -> dict[str, Any]:
    data = record(env, work, s)
    model = world_model(s, lightly)
    out: dict[str, Any] = train_model(model, data, s, work / env / ("run_lightly" if lightly else "run_jepalab"))
    out["rollout"] = rollout_error(model, data, s)
    out["planning"] = evaluate_env(env, model, data, s, episodes)
    if env in FULL_CEM_ENVS and not s.get("quick"):
        out["planning_full"] = evaluate_env(env, model, data, s, episodes, {**LEWM_CEM, "noise_beta": 2.0})
    out["torch"] = torch.__version__
    return out | {"_model": model}


def lightly_column(env: str, work: Path, quick: bool, episodes: int, scale: int = 1) -> dict[str, Any]:
    """Run the lightly column in .venv-bench (a subprocess of this script); a note if impossible."""
    if not BENCH_PY.is_file():
        return {"skipped": "no .venv-bench (run scripts/setup_bench_env.sh)"}
    check = subprocess.run([str(BENCH_PY), "-c", "import lightly.loss, jepalab"], capture_output=True, text=True)
    if check.returncode:
        return {"skipped": f"lightly does not import in .venv-bench: {check.stderr.strip().splitlines()[-1:]}"}
    out = work / env / "lightly.json"
    cmd = [str(BENCH_PY), str(Path(__file__)), "--lightly-worker", env, "--work", str(work), "--episodes",
           str(episodes), "--scale", str(scale)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode or not out.is_file():
        return {"skipped": f"lightly worker failed: {proc.stderr.strip()[-400:]}"}
    from jepalab.planning.evaluate import load_world_model

    s = settings(env, quick, scale)
    model, data = load_world_model(work / env / "lightly_model"), work / env / "mixed"
    return {**json.loads(out.read_text()), "rollout": rollout_error(model, data, s),
            "planning": evaluate_env(env, model, data, s, episodes)}


def settings(env: str, quick: bool, scale: int = 1) -> dict[str, Any]:
    """The env's data/model/budget; ``scale`` multiplies the recorded episodes and the training steps."""
    s = {**SETTINGS[env], **(QUICK if quick else {})}
    return {**s, "episodes": s["episodes"] * scale, "train_steps": s["train_steps"] * scale}


def available(env: str) -> str | None:
    """None if the env can be built here, else the reason."""
    from jepalab.data.envs import make_env
    from jepalab.errors import JepalabError

    try:
        make_env(env, img_size=32).close()
        return None
    except JepalabError as e:
        return str(e)


# ---------------------------------------------------------------------------- report
def write_report(args: argparse.Namespace, res: dict[str, Any], peak: Any, lewm_size: dict[str, Any],
                 load: str, wall: float) -> None:
    cmd = "python benchmarks/world_models.py" + (" --quick" if args.quick else "") + \
        (f" --scale {args.scale}" if args.scale != 1 else "") + (" --no-lightly" if args.no_lightly else "") + \
        (f" --out {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
         if args.out != HERE / "results" / "world_models.md" else "") + \
        (f" --envs {' '.join(args.envs)}" if args.envs != list(SETTINGS) else "")
    L = ["# World models end to end (CPU, fp32)", "", f"Command: `{cmd}` — torch {torch.__version__}, "
         f"{torch.get_num_threads()} thread(s), load average before the run: {load}; total {wall / 60:.1f} min.", "",
         f"fp32 matmul peak measured here: **{peak.peak_gflops:.0f} GFLOP/s** (1 thread).", "",
         "Planning success on held-out goals (goal = recorded frame 25 steps ahead, 50-step budget, receding-horizon "
         f"CEM {CEM_EVAL['samples']} samples x {CEM_EVAL['iterations']} iterations x horizon {CEM_EVAL['horizon']}, "
         f"coloured sampling noise beta {CEM_EVAL['noise_beta']}, replan every model step) vs random actions on the same goals:", "",
         "| env | data (episodes x steps) | train steps / min | success jepalab | success lightly LeWMLoss | random "
         "| s / plan (eval CEM) | criterion |", "|---|---|---|---:|---:|---:|---:|---|"]
    for env, r in res.items():
        if "skipped" in r:
            L.append(f"| {env} | skipped: {r['skipped']} | | | | | | |")
            continue
        j, s = r["jepalab"], r["settings"]
        lt = r["lightly"]
        lsucc = f"{100 * lt['planning']['success_rate']:.0f}%" if "planning" in lt else "—"
        L.append(f"| {env} | {s['episodes']} x <= {s['steps']} | {s['train_steps']} / {j['train_s'] / 60:.1f} | "
                 f"{100 * j['planning']['success_rate']:.0f}% ({j['planning']['episodes']} goals) | {lsucc} | "
                 f"{100 * j['planning']['random_success_rate']:.0f}% | {j['planning']['s_per_plan']:.3f} | "
                 f"{j['planning']['criterion']} |")
    for env, r in res.items():
        full = r.get("jepalab", {}).get("planning_full")
        if full:
            L += ["", f"{env} with the paper's CEM size ({LEWM_CEM['samples']} x {LEWM_CEM['iterations']} x horizon "
                  f"{LEWM_CEM['horizon']}, coloured noise beta 2), jepalab model: **{100 * full['success_rate']:.0f}%** "
                  f"of {full['episodes']} goals (random {100 * full['random_success_rate']:.0f}%), "
                  f"{full['s_per_plan']:.2f} s / plan."]
    L += ["", "Latent rollout error (held-out clips, 3 context frames; squared error / embedding variance; "
          "h = model steps, each `frameskip` env steps):", "",
          "| env | model | h=1 | h=2 | h=4 | h=8 |", "|---|---|---:|---:|---:|---:|"]
    for env, r in res.items():
        if "skipped" in r:
            continue
        rows = [("jepalab LeWM", r["jepalab"]["rollout"]["model"]), ("copy-last", r["jepalab"]["rollout"]["copy_last"])]
        if "rollout" in r["lightly"]:
            rows.append(("lightly LeWMLoss", r["lightly"]["rollout"]["model"]))
        for name, e in rows:
            L.append(f"| {env} | {name} | " + " | ".join(f"{e[h - 1]:.3f}" if h <= len(e) else "—"
                                                        for h in (1, 2, 4, 8)) + " |")
    L += ["", "One full LeWM plan (CEM 300 samples x 30 iterations x horizon 5, 3 history frames), 1 thread:", "",
          "| predictor | s / plan | GFLOP / plan | GFLOP/s | % of matmul peak |", "|---|---:|---:|---:|---:|"]
    for env, r in res.items():
        if "speed" in r:
            p = r["speed"]
            L.append(f"| {env} model (trained here) | {p['s_per_plan']:.2f} | {p['gflop_per_plan']:.2f} | "
                     f"{p['gflops']:.1f} | {p['pct_peak']:.0f}% |")
    p = lewm_size
    L.append(f"| LeWM size (6 layers, 192-d, actions 10-d) | {p['s_per_plan']:.2f} | {p['gflop_per_plan']:.1f} | "
             f"{p['gflops']:.1f} | {p['pct_peak']:.0f}% |")
    notes = [f"- {env}: lightly column skipped: {r['lightly']['skipped']}" for env, r in res.items()
             if "lightly" in r and "skipped" in r["lightly"]]
    L += ["", "Notes:", "- lightly column: the same encoder/predictor/data/budget/seed trained with lightly 1.6.0's "
          "`LeWMLoss` in `.venv-bench` (torch 2.14.1; the jepalab column runs on torch 2.13.0).",
          "- stable-worldmodel's own LeWM baseline is not run: its checkpoints and datasets download from a hub "
          "(no network here) and its package imports torchvision, which breaks beside torch 2.13 CPU.",
          "- FLOPs: FlopCounterMode (matmuls + attention only), so % of peak is a lower bound.", *notes]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "\n".join(L) + "\n")
    write_text_atomic(args.out.with_suffix(".json"), json.dumps({"results": res, "lewm_size_plan": lewm_size,
                                                         "peak_gflops": peak.peak_gflops}, indent=2, default=str))
    print(f"wrote {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--episodes", type=int, default=None, help="held-out goals per env (default 20; quick 4)")
    p.add_argument("--quick", action="store_true", help="tiny data and budget: a smoke run, not the table")
    p.add_argument("--no-lightly", action="store_true", help="skip the lightly side-by-side column")
    p.add_argument("--scale", type=int, default=1, help="x recorded episodes and x training steps (default 1)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_world_models")
    p.add_argument("--out", type=Path, default=HERE / "results" / "world_models.md")
    p.add_argument("--lightly-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(1)
    episodes = args.episodes or (4 if args.quick else 20)
    if args.lightly_worker:  # inside .venv-bench: train the lightly column; the main process evaluates it
        env = args.lightly_worker
        s = settings(env, args.quick, args.scale)
        model = world_model(s, lightly=True)
        r = train_model(model, args.work / env / "mixed", s, args.work / env / "run_lightly")
        plain = world_model(s)
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("lightly_loss.")})
        plain.save_pretrained(args.work / env / "lightly_model")
        write_text_atomic(args.work / env / "lightly.json", json.dumps({**r, "torch": torch.__version__}, indent=2))
        return
    t_start, load = time.perf_counter(), os.getloadavg()
    peak = _load("matmul_peak").measure_matmul_peak(1, (512, 1024), repeats=3)
    print(f"fp32 matmul peak {peak.peak_gflops:.0f} GFLOP/s", flush=True)
    res: dict[str, Any] = {}
    for env in args.envs:
        why = available(env)
        if why:
            res[env] = {"skipped": why}
            continue
        s = settings(env, args.quick, args.scale)
        t0 = time.perf_counter()
        col = run_column(env, args.work, s, False, episodes)
        model = col.pop("_model")
        speed = plan_speed(model, peak.peak_gflops, LEWM_CEM)
        lt = {"skipped": "--no-lightly"} if args.no_lightly else lightly_column(env, args.work, args.quick, episodes, args.scale)
        res[env] = {"settings": s, "jepalab": col, "lightly": lt, "speed": speed}
        print(f"{env}: {json.dumps({k: v for k, v in res[env].items() if k != 'settings'}, default=str)} "
              f"({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
    lewm = _load("plan_speed").lewm_predictor()
    lewm.embed_dim = 192
    lewm_size = plan_speed(lewm, peak.peak_gflops, LEWM_CEM)
    write_report(args, res, peak, lewm_size, " / ".join(f"{x:.1f}" for x in load), time.perf_counter() - t_start)


if __name__ == "__main__":
    main()
