"""The parts of the world-model benchmark: data, the two recipes, training, rollout error, speed.

Two recipes over the same data and evaluation (``world_models.py`` runs them side by side):

- ``compact`` — the CPU planning model (``configs/wm_tworoom.yaml``): a keypoint encoder (spatial
  soft-argmax, 16 keypoints -> 16-d), a residual MLP predictor over one frame, teacher forcing +
  a 4-step rollout loss, variance-covariance and inverse-dynamics terms; planned with the
  ``min``-over-horizon cost.
- ``lewm`` — LeWorldModel's recipe at CPU size, the paper-faithful reference: conv encoder with a
  BatchNorm projector (LeWM's ViT-tiny does not train on this CPU in minutes), AdaLN-zero causal
  transformer predictor over 3 frames, MSE + 0.09 SIGReg; planned with LeWM's last-step cost.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"

#: per env: recorded data, image format, env action size, and whether a scripted expert records
#: half the episodes (envs without one record random actions held 5 steps only); ``model``: fields
#: the env needs in every recipe -- a pendulum or an arm is in motion, and one frame does not show
#: how fast, so the predictor sees two frames (``history``) and the goal is a two-frame clip when
#: the goal test includes velocities (``goal_frames``, planning/cost.py). ``pred_depth=2``: the
#: 2-layer predictor these envs were measured with (the 3-layer one was chosen on Two-Room's wall,
#: ``wm_curve.py``; the other envs' results files are not yet re-measured with it)
DATA: dict[str, dict[str, Any]] = {
    "tworoom": dict(img=64, chans=3, episodes=200, steps=100, env_kwargs={}, action_dim=2, expert=True),
    "bouncing": dict(img=32, chans=1, episodes=200, steps=60, action_dim=2, expert=True,
                     env_kwargs=dict(num_balls=1, radius=5.0, speed=[0.5, 3.0], action_scale=3.0),
                     model=dict(pred_depth=2)),
    "pusht": dict(img=64, chans=3, episodes=200, steps=120, env_kwargs={}, action_dim=2, expert=True,
                  model=dict(pred_depth=2)),
    "Pendulum-v1": dict(img=32, chans=1, episodes=200, steps=100, env_kwargs={}, action_dim=1, expert=False,
                        model=dict(history=2, goal_frames=2)),
    "dm_control/reacher-easy-v0": dict(img=64, chans=3, episodes=100, steps=100, env_kwargs={}, action_dim=2,
                                       expert=False, model=dict(history=2, pred_depth=2)),
}
#: per recipe: model fields (WorldModelConfig), training budget, evaluation planner
RECIPES: dict[str, dict[str, Any]] = {
    "compact": dict(model=dict(encoder="keypoint", embed_dim=16, enc_width=32, keypoints=16, predictor="mlp",
                               pred_dim=256, pred_depth=3, history=1, sigreg_weight=0.0, var_weight=1.0,
                               cov_weight=0.04, idm_weight=1.0, rollout_steps=4),
                    frames=5, train_steps=1000, batch=64, lr=3e-3, reduce="min"),
    "lewm": dict(model=dict(encoder="conv", embed_dim=64, enc_width=16, enc_dim=32, predictor="transformer",
                            pred_dim=96, pred_depth=2, pred_heads=4, history=3, sigreg_weight=0.09, sigreg_proj=256),
                 frames=4, train_steps=800, batch=16, lr=3e-3, reduce="last"),
}
CEM = dict(samples=300, iterations=10, elites=30, horizon=5)     # evaluation planner (both recipes)
MPPI = dict(samples=300, iterations=10, horizon=5)
LEWM_CEM = dict(samples=300, iterations=30, elites=30, horizon=5)  # the paper's plan, timed once
QUICK = dict(episodes=20, train_steps=20)


def slug(env: str) -> str:
    """A file-name-safe form of an env id (``dm_control/reacher-easy-v0`` -> ``dm_control_reacher-easy-v0``)."""
    return env.replace("/", "_")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a success rate ``k / n`` (Wilson 1927): unlike the normal
    approximation it stays inside [0, 1] and is honest near 0% and 100%."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


# ---------------------------------------------------------------------------- data
def record(env: str, work: Path, d: dict[str, Any], seed: int = 0) -> Path:
    """``d["episodes"]`` episodes, random (actions held 5 steps) and scripted expert in pairs
    (0,1 random, 2,3 expert, ...), so the held-out episodes (``i % 10 == 9``) hold both kinds;
    only random ones where the env has no expert."""
    from jepalab.data.recording import collect
    from jepalab.data.trajectories import list_episodes, load_episode, read_meta, save_episode, write_meta

    out = work / slug(env) / "mixed"
    if (out / "meta.json").is_file() and read_meta(out).get("episodes") == d["episodes"]:
        return out
    if not d.get("expert", True):
        shutil.rmtree(out, ignore_errors=True)
        collect(env, out, episodes=d["episodes"], policy="random", img_size=d["img"], max_steps=d["steps"],
                seed=seed, env_kwargs=d["env_kwargs"], policy_kwargs={"repeat": 5}, progress=False,
                workers=2)
        return out
    if d["episodes"] % 4:
        raise ValueError(f"episodes={d['episodes']}: use a multiple of 4 (random/expert pairs alternate)")
    shutil.rmtree(out, ignore_errors=True)
    half, parts = d["episodes"] // 2, {}
    for pol, kw in (("random", {"repeat": 5}), ("expert", {})):
        parts[pol] = work / slug(env) / pol
        shutil.rmtree(parts[pol], ignore_errors=True)
        collect(env, parts[pol], episodes=half, policy=pol, img_size=d["img"], max_steps=d["steps"], seed=seed,
                env_kwargs=d["env_kwargs"], policy_kwargs=kw, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(2 * half):
        pol = "random" if i % 4 < 2 else "expert"
        save_episode(out, i, load_episode(parts[pol], list_episodes(parts[pol])[(i // 4) * 2 + i % 2]))
    write_meta(out, dict(read_meta(parts["random"]), policy="random(repeat 5)+expert, interleaved in pairs",
                         policy_kwargs={}, episodes=2 * half))
    return out


# ---------------------------------------------------------------------------- models
def world_model(env: str, recipe: str, seed: int = 0, lightly: bool = False,
                overrides: dict[str, Any] | None = None) -> Any:
    """A fresh model of ``recipe`` for ``env``'s frames, initialised from ``seed``; ``overrides``:
    model fields that replace the recipe's (a study's variant)."""
    from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig

    d = DATA[env]
    fields, need = dict(RECIPES[recipe]["model"]), d.get("model", {})
    fields.update({k: v for k, v in need.items() if k != "history"})
    fields["history"] = max(fields["history"], need.get("history", 1))
    fields.update(overrides or {})
    cfg = WorldModelConfig(img_size=d["img"], in_chans=d["chans"], action_dim=d["action_dim"], frameskip=5, **fields)
    torch.manual_seed(seed)
    return _lightly_class()(cfg) if lightly else WorldModel(cfg)


def _lightly_class() -> Any:
    from jepalab.recipes.worldmodel import WorldModel

    class LightlyLeWM(WorldModel):
        """The same encoder and predictor trained with lightly's ``LeWMLoss`` (prediction MSE +
        lambda * lightly's SIGReg) instead of jepalab's objective: the side-by-side peer."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            from lightly.loss import LeWMLoss

            self.lightly_loss = LeWMLoss(lambda_param=config.sigreg_weight, sigreg_num_vectors=config.sigreg_proj)

        def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
            frames, actions = self.action_blocks(batch["frames"], batch["actions"])
            z = self.encode_clip(frames)
            pred = self.predictor(z[:, :-1], actions)
            return {"loss": self.lightly_loss(predicted=pred, target=z[:, 1:], embeddings=z),
                    "embeddings": z.flatten(0, 1).detach()}

    return LightlyLeWM


def train_model(model: Any, data: Path, env: str, recipe: str, run_dir: Path, seed: int = 0,
                steps: int | None = None) -> dict[str, Any]:
    """Train ``model`` on ``data`` with the recipe's budget; returns wall time and last log line."""
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource
    from jepalab.train import train
    from jepalab.trainer.config import TrainConfig

    r, d = RECIPES[recipe], DATA[env]
    steps = steps or r["train_steps"]
    src = TrajectorySource(TrajectoryConfig(path=str(data), frames=r["frames"], frameskip=5, channels=d["chans"],
                                            img_size=d["img"], seed=seed, sample=r.get("sample", "clips")))
    tc = TrainConfig(steps=steps, batch_size=r["batch"], lr=r["lr"], weight_decay=0.0,
                     warmup_steps=min(50, steps // 4), log_every=50, monitor_every=0, checkpoint_every=0,
                     progress=False, device="cpu")
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    last = train(model, src, tc, run_dir, seed=seed)
    model.eval()
    return {"train_s": time.perf_counter() - t0, "train_steps": steps, "final_loss": float(last["loss"]),
            "params": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------------------- measurements
@torch.inference_mode()
def rollout_error(model: Any, data: Path, env: str, horizon: int = 8, clips: int = 64,
                  img: int | None = None, chans: int | None = None) -> dict[str, Any]:
    """Held-out clips: imagine ``horizon`` steps from 3 context frames and the recorded actions; per
    step the squared error to the encoded truth over the embeddings' total variance, for the model
    and for copy-last (the last context embedding forever). ``img``/``chans`` override the env's
    frame format (a model trained at another size)."""
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource
    from jepalab.errors import DataError

    d, k = {**DATA[env], **({"img": img} if img else {}), **({"chans": chans} if chans else {})}, 3
    dev = next(model.parameters()).device
    while True:  # the longest horizon the held-out episodes allow (Two-Room episodes end at the target)
        try:
            src = TrajectorySource(TrajectoryConfig(path=str(data), frames=k + horizon, frameskip=5, split="test",
                                                    channels=d["chans"], img_size=d["img"]))
            break
        except DataError:
            if horizon <= 1:
                raise
            horizon -= 1
    b = src.batch(0, clips)
    z = model.encode_clip(b["frames"].to(dev))
    a = b["actions"].to(dev)
    pred = model.rollout(z[:, :k], a[:, k - 1:], a[:, : k - 1])
    truth, var = z[:, k:], float(z.flatten(0, 1).var(0).sum())
    err = ((pred - truth) ** 2).sum(-1).mean(0) / var
    copy = ((z[:, k - 1: k] - truth) ** 2).sum(-1).mean(0) / var
    return {"model": [round(float(e), 4) for e in err], "copy_last": [round(float(e), 4) for e in copy]}


def plan_speed(model: Any, peak: float, plan: dict[str, Any]) -> dict[str, Any]:
    """Seconds, FLOPs and % of the matmul peak of one plan (FLOPs: 1 iteration counted x iterations)."""
    from torch.utils.flop_counter import FlopCounterMode

    from jepalab.planning import CEM as CEMPlanner

    d, a = int(model.embed_dim), int(model.action_dim)
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)
    z, goal = torch.randn(1, 3, d, generator=g).to(dev), torch.randn(1, d, generator=g).to(dev)
    a_hist = (torch.rand(1, 2, a, generator=g) * 2 - 1).to(dev)
    with FlopCounterMode(display=False) as fc:
        CEMPlanner(model, **{**plan, "iterations": 1}).solve(z, goal, a_hist)
    flops = fc.get_total_flops() * plan["iterations"]
    planner = CEMPlanner(model, **plan)
    if dev.type == "cuda":
        planner.solve(z, goal, a_hist)
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    planner.solve(z, goal, a_hist)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    sec = time.perf_counter() - t0
    return {"s_per_plan": sec, "gflop_per_plan": flops / 1e9, "gflops": flops / sec / 1e9,
            "pct_peak": 100 * flops / sec / 1e9 / peak}


def evaluate(model: Any, env: str, data: Path, goals: int, planner: str, plan: dict[str, Any], reduce: str,
             seed: int = 0, baseline: bool = True) -> dict[str, Any]:
    """Goal reaching on ``goals`` held-out goals (LeWM protocol: 25 steps ahead, 50-step budget)."""
    from jepalab.planning.evaluate import evaluate_planning

    r = evaluate_planning(model, env, data, episodes=goals, goal_offset=25, budget=50, planner=planner,
                          planner_kwargs={**plan, "reduce": reduce}, seed=seed, baseline=baseline)
    keep = ("success_rate", "successes", "random_success_rate", "s_per_plan", "flops_per_plan", "criterion",
            "episodes", "mean_steps", "failure_causes", "cost_gap")
    out = {k: r[k] for k in keep}
    out["per_episode"] = r["per_episode"]  # each goal's row (start, success, steps, failure cause)
    out["wilson"] = wilson(r["successes"], r["episodes"])
    if baseline:
        k = sum(row["random_success"] for row in r["per_episode"])
        out["random_wilson"] = wilson(k, r["episodes"])
    return out


def lightly_twin(env: str, work: Path, data: Path, goals: int, quick: bool) -> dict[str, Any]:
    """The LeWM recipe trained with lightly's LeWMLoss in ``.venv-bench`` (a subprocess of
    ``world_models.py``), evaluated here; a note when that environment is absent."""
    if not BENCH_PY.is_file():
        return {"skipped": "no .venv-bench (bash scripts/setup_bench_env.sh installs lightly 1.6.0 there)"}
    out = work / slug(env) / "lightly.json"
    cmd = [str(BENCH_PY), str(HERE / "world_models.py"), "--lightly-worker", env, "--work", str(work)] + \
        (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode or not out.is_file():
        return {"skipped": f"lightly worker failed: {proc.stderr.strip()[-400:]}"}
    from jepalab.planning.evaluate import load_world_model

    model = load_world_model(work / slug(env) / "lightly_model")
    return {**json.loads(out.read_text()), "rollout": rollout_error(model, data, env),
            "cem": evaluate(model, env, data, goals, "cem", CEM, RECIPES["lewm"]["reduce"], baseline=False)}


def available(env: str) -> str | None:
    """None if the env can be built here, else the reason."""
    from jepalab.data.envs import make_env
    from jepalab.errors import JepalabError

    try:
        make_env(env, img_size=32).close()
        return None
    except JepalabError as e:
        return str(e)
