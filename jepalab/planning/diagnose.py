"""Where does a world model + planner lose goals? Measurements that separate the four suspects.

Why: a low planning success rate alone cannot tell a bad model from a bad search, a wrong action
mapping or a preprocessing mismatch. On held-out recorded episodes (the tasks of
:func:`jepalab.planning.evaluate.evaluate_planning`) the *recorded* actions are a known-good plan,
which gives one test per suspect:

- ``replay``: restore the start state, execute the recorded actions open loop. Failure means the
  env restore or the action mapping (normalisation, frameskip blocks) is wrong, not the model.
- ``frame_gap``: distance between the embedding of the env's restored observation (the planner's
  input path, :func:`encoder_fn`) and of the recorded frame (the training input path), relative to
  the start-goal distance. Large means a preprocessing mismatch (channels, resize, scaling).
- ``oracle_rank``: under the planning cost, the fraction of ``samples`` uniformly random action
  sequences the model scores cheaper than the recorded one (ties count half, so a model that
  ignores actions scores 0.5, not 0). Near 0: the model knows which actions
  reach the goal; near 0.5: it does not (train more / better data).
- ``search_gap``: the planner's best cost minus the recorded sequence's cost from the same start.
  Positive while ``oracle_rank`` is near 0: the search misses plans the model would accept
  (more samples or iterations, coloured noise ``noise_beta``, a different initial spread).

This is the oracle test of the LeWorldModel-style evaluation (Maes et al. 2026) made routine.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from jepalab.errors import ConfigError
from jepalab.planning.cost import latent_cost


def diagnose_planning(model: Any, env_name: str, dataset_dir: str | os.PathLike, episodes: int = 10,
                      goal_offset: int = 25, test_every: int = 10, seed: int = 0, samples: int = 300,
                      planner: str = "cem", planner_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the four measurements (module docstring) on ``episodes`` held-out tasks.

    The recorded plan covers ``horizon x frameskip`` env steps from the start (the planner's
    horizon, default 5); ``goal_offset`` should equal that span so that the recorded actions end
    at the goal (a warning key ``span_mismatch`` is set otherwise). Returns per-task rows and the
    medians/rates: ``replay_success_rate, frame_gap, oracle_rank, oracle_best_rate, search_gap,
    planner_reaches_oracle_rate``.
    """
    from jepalab.data.envs import make_env
    from jepalab.data.trajectories import load_episode, read_meta
    from jepalab.planning.evaluate import (check_env_matches, encoder_fn, frame_to_model, make_planner, pick_tasks,
                                           reset_to_state, state_success)

    if samples < 2:
        raise ConfigError(f"samples={samples}: the oracle rank needs at least 2 random sequences.")
    meta = read_meta(dataset_dir)
    if meta.get("env") != env_name:
        raise ConfigError(f"{dataset_dir} was recorded in env '{meta.get('env')}', not '{env_name}'.")
    model.eval()
    env = make_env(env_name, img_size=int(meta.get("img_size", 64)), seed=seed,
                   frameskip=int(meta.get("frameskip", 1)), frameskip_mode=meta.get("frameskip_mode", "repeat"),
                   **dict(meta.get("env_kwargs") or {}))
    rows = []
    try:
        check_env_matches(model, env)
        tasks = pick_tasks(dataset_dir, episodes, goal_offset, test_every, seed,
                           accept=lambda s, g: not state_success(env, s, g)[0])
        pl = make_planner(model, planner, **{"seed": seed, **(planner_kwargs or {})})
        f, a_env = int(model.config.frameskip), int(model.config.action_dim)
        span = pl.horizon * f
        enc = encoder_fn(model)
        gen = torch.Generator().manual_seed(seed)
        for task in tasks:
            ep = load_episode(dataset_dir, task["episode"])
            s = task["start"]
            recorded = ep["actions"][s: s + span]
            obs = reset_to_state(env, task["state"], task["goal_state"])
            z_env, z_rec = enc(obs), enc(frame_to_model(model, task["start_frame"])[0])
            z_goal = enc(frame_to_model(model, task["goal_frame"])[0])
            for a in recorded[:goal_offset]:
                obs, _r, done, _i = env.step(a)
                if done:
                    break
            ok, dist = state_success(env, obs["state"].numpy(), task["goal_state"])
            row: dict[str, Any] = {"episode": task["episode"], "start": s, "replay_success": bool(ok),
                                   "replay_distance": dist,
                                   "frame_gap": float((z_env - z_rec).norm() / (z_rec - z_goal).norm().clamp_min(1e-8))}
            if recorded.shape[0] == span:  # episode long enough for a full recorded plan
                plan = torch.as_tensor(recorded, dtype=torch.float32).reshape(1, pl.horizon, f * a_env)
                rand = torch.rand(samples, pl.horizon, f * a_env, generator=gen) * 2 - 1
                z0 = z_env[None, None]
                with torch.inference_mode():
                    c_or = float(latent_cost(model.rollout(z0, plan), z_goal[None], pl.cost_kind, reduce=pl.reduce)[0])
                    c_rand = latent_cost(model.rollout(z0.expand(samples, 1, -1), rand), z_goal[None],
                                         pl.cost_kind, reduce=pl.reduce)
                pl.reset()
                c_plan = float(pl.solve(z0, z_goal[None]).cost[0])
                row.update(oracle_cost=c_or, random_best=float(c_rand.min()), planner_cost=c_plan,
                           oracle_rank=_mid_rank(c_rand, c_or), search_gap=c_plan - c_or)
            rows.append(row)
    finally:
        env.close()
    ranked = [r for r in rows if "oracle_rank" in r]
    med = lambda k, rs: float(np.median([r[k] for r in rs])) if rs else float("nan")  # noqa: E731
    out: dict[str, Any] = {
        "env": env_name, "tasks": len(rows), "ranked_tasks": len(ranked),
        "replay_success_rate": float(np.mean([r["replay_success"] for r in rows])),
        "frame_gap": med("frame_gap", rows), "oracle_rank": med("oracle_rank", ranked),
        "oracle_best_rate": float(np.mean([r["oracle_rank"] == 0.0 for r in ranked])) if ranked else float("nan"),
        "search_gap": med("search_gap", ranked),
        "planner_reaches_oracle_rate": (float(np.mean([r["planner_cost"] <= r["oracle_cost"] for r in ranked]))
                                        if ranked else float("nan")),
        "per_task": rows,
    }
    if span != goal_offset:
        out["span_mismatch"] = (f"a plan covers {span} env steps but the goal is {goal_offset} steps ahead: "
                                "the recorded plan is cut/short, so oracle costs are approximate.")
    return out


def _mid_rank(costs: torch.Tensor, c: float) -> float:
    """Fraction of ``costs`` below ``c``, ties (relative 1e-6) counted half."""
    tie = (costs - c).abs() <= 1e-6 * max(abs(c), 1e-12)
    return float(((costs < c) & ~tie).float().mean() + 0.5 * tie.float().mean())


__all__ = ["diagnose_planning"]
