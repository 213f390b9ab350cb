"""Goal-reaching evaluation of a world model + planner on held-out recorded episodes.

Why this protocol: a world model is only useful if planning in its latent space reaches goals in
the real environment. LeWorldModel (Maes et al. 2026) and DINO-WM (Zhou et al. 2024) measure it
the same way, followed here: take a *held-out* recorded episode, put the environment in the state
recorded at step ``s``, use the frame recorded ``goal_offset`` (25) steps later as the goal image,
run receding-horizon MPC for at most ``budget`` (50) environment steps and score success with the
environment's state criterion. Restoring a recorded state and the goal test come with the env's
adapter (``jepalab.data.envs``: ``Env.reset_to``, ``Env.goal_success``, ``Env.criterion``), so any
env whose adapter has them can be evaluated, a user's own included. Built in: bouncing (ball 0
within two radii), Push-T (DINO-WM / LeWM: agent+block xy within 20 px, angle within pi/9),
Two-Room (agent within 16 px), Pendulum-v1 and dm_control reacher (docs/environments.md).

Held-out episodes are those :class:`jepalab.data.trajectories.TrajectorySource` puts in the test
split (``i % test_every == test_every - 1``), so a model trained on the train split never saw them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.planning.failures import CAUSES as FAILURE_CAUSES
from jepalab.planning.base import Planner

PLANNERS = ("cem", "mppi", "gradient")
_GREY = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------ model + planner
def load_world_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """The finished world model of ``run_dir`` (``save_pretrained`` files), in eval mode."""
    from jepalab.recipes.base import Recipe

    model = Recipe.from_pretrained(run_dir, map_location=device)
    if not hasattr(model, "rollout") or not hasattr(model, "encode"):
        raise ConfigError(f"{run_dir} holds a '{getattr(model, 'name', '?')}' model, which cannot imagine futures; "
                          "plan with a run of the 'worldmodel' recipe (configs/worldmodel_bouncing.yaml).")
    return model.to(device).eval().requires_grad_(False)


def make_planner(model: Any, name: str = "cem", **kwargs: Any) -> Planner:
    """``"cem"`` (LeWM defaults: 300 samples, 30 iterations, 30 elites, horizon 5), ``"mppi"`` or
    ``"gradient"``; ``kwargs`` override the planner's constructor arguments. A world model with
    frameskip ``f`` on action blocks gets ``chunks=f`` (used by coloured noise, ``noise_beta``)."""
    from jepalab.planning.cem import CEM
    from jepalab.planning.gradient import GradientPlanner
    from jepalab.planning.mppi import MPPI

    cfg = getattr(model, "config", None)
    f, a_env = int(getattr(cfg, "frameskip", 1) or 1), int(getattr(cfg, "action_dim", 0) or 0)
    if "chunks" not in kwargs and f > 1 and a_env and int(getattr(model, "action_dim", 0)) == f * a_env:
        kwargs = {"chunks": f, **kwargs}  # action blocks: lay sampling noise out in env time
    if name == "cem":
        return CEM(model, **{"horizon": 5, "samples": 300, "iterations": 30, "elites": 30, **kwargs})
    if name == "mppi":
        return MPPI(model, **{"horizon": 5, "samples": 300, "iterations": 10, **kwargs})
    if name == "gradient":
        return GradientPlanner(model, **{"horizon": 5, **kwargs})
    raise ConfigError(f"Unknown planner '{name}'; choose one of {', '.join(PLANNERS)}.")


def frame_to_model(model: Any, frame: Tensor | np.ndarray) -> Tensor:
    """An env frame ``(C, H, W)`` float in [0, 1] or a recorded ``(H, W, C)`` uint8 frame -> the
    model's input ``(1, C', S, S)`` (grey conversion and antialiased resize as TrajectorySource)."""
    x = torch.as_tensor(np.asarray(frame) if isinstance(frame, np.ndarray) else frame)
    if x.dtype == torch.uint8:
        x = x.permute(2, 0, 1).float() / 255.0
    if x.dim() != 3:
        raise ShapeError(f"a frame must be (C, H, W) or (H, W, C), got {tuple(x.shape)}.")
    cfg = model.config
    if cfg.in_chans == 1 and x.shape[0] == 3:
        x = (x * torch.tensor(_GREY).view(3, 1, 1)).sum(0, keepdim=True)
    elif cfg.in_chans == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if x.shape[0] != cfg.in_chans:
        raise ShapeError(f"frame has {x.shape[0]} channels; the model takes {cfg.in_chans}.")
    if tuple(x.shape[-2:]) != (cfg.img_size, cfg.img_size):
        x = F.interpolate(x[None], size=(cfg.img_size, cfg.img_size), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0, 1)
    return x[None].contiguous()


def encoder_fn(model: Any) -> Any:
    """``obs (dict with "pixels", or a frame) -> (D,)`` embedding, for :class:`MPCController`."""
    device = next(model.parameters()).device

    def encode(obs: Any) -> Tensor:
        pix = obs["pixels"] if isinstance(obs, dict) else obs
        with torch.inference_mode():
            return model.encode(frame_to_model(model, pix).to(device))[0].float().clone()

    return encode


def check_env_matches(model: Any, env: Any) -> None:
    """Raise ``ShapeError`` when the env's action size is not the model's (per env step)."""
    want = int(model.config.action_dim)
    if env.base_action_dim != want or env.action_dim != want:
        raise ShapeError(f"env '{env.name}' takes {env.action_dim}-dim actions but the world model was trained on "
                         f"{want}-dim actions (x frameskip {model.config.frameskip}); plan it in the env it was "
                         "trained on (see the run's data.path meta.json 'env').")


# ------------------------------------------------------------------------------ tasks from data
def held_out_episodes(dataset_dir: str | os.PathLike, test_every: int = 10) -> list[int]:
    """Indices of the test-split episodes (the rule of ``TrajectorySource``)."""
    from jepalab.data.trajectories import list_episodes

    if test_every < 1:
        raise ConfigError(f"test_every={test_every}: held-out evaluation needs a test split (>= 1).")
    eps = [i for i in list_episodes(dataset_dir) if i % test_every == test_every - 1]
    if not eps:
        raise DataError(f"{dataset_dir} has no held-out episodes (episode i is held out when i % {test_every} == "
                        f"{test_every - 1}); collect at least {test_every} episodes.")
    return eps


def pick_tasks(dataset_dir: str | os.PathLike, count: int, goal_offset: int = 25, test_every: int = 10,
               seed: int = 0, accept: Any = None) -> list[dict[str, Any]]:
    """``count`` start/goal pairs from held-out episodes, cycling over them: a random start ``s``
    with ``s + goal_offset`` inside the episode. Each task: ``episode, start, state (S,),
    goal_state (S,), goal_frame (H, W, C) uint8, start_frame``. ``accept(state, goal_state)``
    (optional) rejects pairs, e.g. those already solved at the start; a start already drawn from
    the same episode is redrawn too (up to 20 redraws each: short episodes may still repeat)."""
    from jepalab.data.trajectories import load_episode

    if count < 1 or goal_offset < 1:
        raise ConfigError(f"episodes={count} and goal_offset={goal_offset} must both be >= 1.")
    rng = np.random.default_rng(seed)
    eps = [e for e in held_out_episodes(dataset_dir, test_every)]
    loaded = {e: load_episode(dataset_dir, e) for e in eps}
    eps = [e for e in eps if loaded[e]["frames"].shape[0] > goal_offset]
    if not eps:
        raise DataError(f"No held-out episode in {dataset_dir} is longer than goal_offset={goal_offset} steps; "
                        "record longer episodes (jepalab collect --steps) or lower the goal offset.")
    tasks, used = [], set()
    for i in range(count):
        e = eps[i % len(eps)]
        ep = loaded[e]
        for _ in range(20):  # a distinct (episode, start) pair: a repeated task adds no information
            s = int(rng.integers(0, ep["frames"].shape[0] - goal_offset))
            if (e, s) not in used and (accept is None or accept(ep["state"][s], ep["state"][s + goal_offset])):
                break
        used.add((e, s))
        tasks.append({"episode": e, "start": s, "goal_step": s + goal_offset, "state": ep["state"][s],
                      "goal_state": ep["state"][s + goal_offset],
                      "start_frame": ep["frames"][s], "goal_frame": ep["frames"][s + goal_offset]})
    return tasks


def start_context(model: Any, episode: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """What the controller is given besides the start frame, from the task's recorded ``episode``:
    ``goal_obs`` -- the goal frame, or the model's ``goal_frames`` frames ending at it one model step
    (``frameskip`` env steps) apart; ``past_obs`` / ``past_actions`` -- up to ``history - 1``
    recorded frames before the start, one model step apart, with the action block taken after
    each (so the first plan sees the motion the agent is in). Frames are model inputs ``(C, S, S)``."""
    cfg = model.config
    f, k, g = int(cfg.frameskip), int(cfg.history), int(getattr(cfg, "goal_frames", 1))
    frames, acts = episode["frames"], np.asarray(episode["actions"], np.float32)
    s, goal = int(task["start"]), int(task["goal_step"])
    clip = [frame_to_model(model, frames[max(goal - f * j, 0)])[0] for j in range(g - 1, -1, -1)]
    past_obs, past_actions = [], []
    for j in range(k - 1, 0, -1):
        i = s - f * j
        if i >= 0 and i + f <= acts.shape[0]:
            past_obs.append(frame_to_model(model, frames[i])[0])
            past_actions.append(torch.from_numpy(acts[i: i + f].reshape(-1)))
    return {"goal_obs": clip if g > 1 else clip[0], "past_obs": past_obs, "past_actions": past_actions}


# ------------------------------------------------------------------------------ env state + success
def reset_to_state(env: Any, state: np.ndarray, goal_state: np.ndarray) -> dict[str, Tensor]:
    """Put a jepalab ``Env`` in the recorded ``state`` (goal: ``goal_state``); returns the obs.
    The env's adapter knows how (:meth:`jepalab.data.envs.Env.reset_to`)."""
    return env.reset_to(state, goal_state)


def state_success(env: Any, state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
    """``(success, distance)`` of ``state`` to ``goal_state`` by the env adapter's goal test
    (:meth:`jepalab.data.envs.Env.goal_success`; ``env.criterion`` describes it)."""
    return env.goal_success(state, goal_state)


# ------------------------------------------------------------------------------ one episode
def run_goal_episode(env: Any, task: dict[str, Any], act: Any, budget: int = 50,
                     keep_frames: bool = False) -> dict[str, Any]:
    """Run ``act(obs) -> action`` from ``task``'s start for at most ``budget`` env steps, stopping
    at success. Returns ``success, steps, final_distance`` (and ``frames`` if asked)."""
    obs = reset_to_state(env, task["state"], task["goal_state"])
    frames = [obs["pixels"]] if keep_frames else []
    success, dist = state_success(env, obs["state"].numpy(), task["goal_state"])
    steps = 0
    while not success and steps < budget:
        obs, _r, done, _info = env.step(act(obs))
        steps += 1
        if keep_frames:
            frames.append(obs["pixels"])
        success, dist = state_success(env, obs["state"].numpy(), task["goal_state"])
        if done:
            break
    return {"success": bool(success), "steps": steps, "final_distance": dist, "frames": frames, "final_obs": obs}


def plan_flops(planner: Planner, z: Tensor, goal: Tensor) -> int:
    """FLOPs of one full plan from history ``z (1, k, D)`` (``FlopCounterMode``; matmuls and
    attention only, so a lower bound on the work)."""
    from torch.utils.flop_counter import FlopCounterMode

    planner.reset()
    with FlopCounterMode(display=False) as fc:
        planner.solve(z, goal)
    planner.reset()
    return int(fc.get_total_flops())


def evaluate_planning(model: Any, env_name: str, dataset_dir: str | os.PathLike, episodes: int = 10,
                      goal_offset: int = 25, budget: int = 50, planner: str = "cem",
                      planner_kwargs: dict[str, Any] | None = None, test_every: int = 10, seed: int = 0,
                      baseline: bool = True, out: str | os.PathLike | None = None,
                      progress: bool = False, diagnose: bool = True) -> dict[str, Any]:
    """Plan toward ``episodes`` held-out goals; success rate, time and FLOPs per plan (+ a random-
    action baseline on the same tasks). Writes the result as JSON to ``out`` when given.

    ``model``: a ``WorldModel`` (or anything with ``encode``, ``rollout``, ``config``).
    Returns ``dict(env, planner, episodes, success_rate, successes, random_success_rate,
    mean_steps, s_per_plan, plans, flops_per_plan, failure_causes, cost_gap, per_episode=[...])``.

    ``diagnose``: each failed goal is classified as a ``search``, ``model``, ``cost`` or
    ``replanning`` failure (:mod:`jepalab.planning.failures`), counted in ``failure_causes``.
    ``cost_gap``: the mean over goals of the closest the agent really came to the goal embedding
    (``reached_cost``, in the planner's distance) minus what the first plan expected
    (``expected_cost``): near 0 when the planner gets what it imagines; large when it exploits
    model errors.
    """
    from jepalab.data.envs import make_env_from_meta
    from jepalab.data.trajectories import read_meta
    from jepalab.planning.mpc import MPCController

    if budget < 1:
        raise ConfigError(f"budget={budget}: give at least 1 env step.")
    meta = read_meta(dataset_dir)
    if meta.get("env") != env_name:
        raise ConfigError(f"{dataset_dir} was recorded in env '{meta.get('env')}', not '{env_name}'; "
                          "evaluate in the env the episodes come from.")
    model.eval()
    env = make_env_from_meta(meta, seed=seed)
    try:
        check_env_matches(model, env)
        env.check_goal_reaching(meta.get("state_dim"))
        # a goal already reached at the start says nothing about planning: draw another start
        tasks = pick_tasks(dataset_dir, episodes, goal_offset, test_every, seed,
                           accept=lambda s, g: not state_success(env, s, g)[0])
        pl = make_planner(model, planner, **{"seed": seed, **(planner_kwargs or {})})
        f = int(model.config.frameskip)
        ctrl = MPCController(pl, encoder_fn(model), replan_every=f, execute=1, history=int(model.config.history))
        rows, plan_times, flops = [], [], None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(tasks), desc=f"plan {env_name}", unit="ep")
        from jepalab.data.trajectories import load_episode

        episodes: dict[int, dict[str, Any]] = {}  # tasks cycle over the few held-out episodes: load each once
        for i, task in enumerate(tasks):
            if task["episode"] not in episodes:
                episodes[task["episode"]] = load_episode(dataset_dir, task["episode"])
            episode = episodes[task["episode"]]
            context = start_context(model, episode, task)
            ctrl.reset(context["goal_obs"], env_action_dim=env.action_dim, past_obs=context["past_obs"],
                       past_actions=context["past_actions"])
            if flops is None:
                z = ctrl.encode_fn(frame_to_model(model, task["start_frame"])[0])[None, None]
                flops = plan_flops(pl, z, ctrl.goal[None])
            t0 = time.perf_counter()
            res = run_goal_episode(env, task, ctrl.act, budget)
            row = {"episode": task["episode"], "start": task["start"], "success": res["success"],
                   "steps": res["steps"], "final_distance": res["final_distance"], "plans": len(ctrl.plan_times),
                   "wall_s": time.perf_counter() - t0}
            plan_times += ctrl.plan_times
            if ctrl.costs:
                reached = ctrl.goal_distances + [ctrl.distance(ctrl.encode_fn(res["final_obs"]), ctrl.observed)]
                row["expected_cost"], row["reached_cost"] = ctrl.costs[0], min(reached)
            if diagnose and not res["success"]:
                from jepalab.planning.failures import classify_failure

                past = ([ctrl.encode_fn(o) for o in context["past_obs"]], context["past_actions"])
                row["failure"] = classify_failure(model, pl, env, task, episode["actions"], ctrl.encode_fn, ctrl.goal,
                                                  past)
            if baseline:
                rng = np.random.default_rng(seed * 100003 + i)
                rnd = run_goal_episode(env, task, lambda _o: rng.uniform(-1, 1, env.action_dim).astype(np.float32),
                                       budget)
                row["random_success"] = rnd["success"]
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=f"{sum(r['success'] for r in rows)}/{len(rows)}")
        if bar is not None:
            bar.close()
    finally:
        env.close()
    criterion = env.criterion
    s_plan = float(np.median(plan_times)) if plan_times else float("nan")
    result: dict[str, Any] = {
        "env": env_name, "dataset": str(dataset_dir), "planner": planner,
        "planner_kwargs": {k: v for k, v in (planner_kwargs or {}).items()}, "episodes": len(rows),
        "goal_offset": goal_offset, "budget": budget, "test_every": test_every, "seed": seed,
        "criterion": criterion,
        "success_rate": sum(r["success"] for r in rows) / len(rows), "successes": sum(r["success"] for r in rows),
        "random_success_rate": (sum(r["random_success"] for r in rows) / len(rows)) if baseline else None,
        "mean_steps": float(np.mean([r["steps"] for r in rows])), "plans": len(plan_times),
        "s_per_plan": s_plan, "flops_per_plan": flops,
        "gflops_per_s": (flops / s_plan / 1e9) if flops and plan_times else None,
        "threads": torch.get_num_threads(),
        "failure_causes": {c: sum(r.get("failure", {}).get("cause") == c for r in rows) for c in FAILURE_CAUSES},
        "cost_gap": (float(np.mean([r["reached_cost"] - r["expected_cost"] for r in rows if "expected_cost" in r]))
                     if any("expected_cost" in r for r in rows) else None),
        "per_episode": rows,
    }
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=float))
        tmp.replace(path)
    return result


__all__ = ["PLANNERS", "evaluate_planning", "load_world_model", "make_planner", "frame_to_model",
           "encoder_fn", "check_env_matches", "held_out_episodes", "pick_tasks", "reset_to_state", "start_context",
           "state_success", "run_goal_episode", "plan_flops"]
