"""Why did a goal fail? Blame the model, the search or the cost — measured, per failed goal.

A held-out task comes with a *recorded* action sequence that reaches the goal in the real env.
From the task's start we compare three plans under the planning cost: the recorded one, the one
the planner found, and what the found one really does when executed open loop in the env:

- ``search``: the recorded plan is clearly cheaper under the model than the plan the planner
  returned (``c_recorded < c_found - SEARCH_TOL x |z_start - z_goal|``): a better plan existed and the search missed it (more samples or
  iterations, a wider or coloured sampling spread).
- ``model``: the found plan is at least as cheap as the recorded one in imagination, but executed
  in the env its real embeddings are much farther from the goal than imagined
  (``c_real - c_found > tol x |z_start - z_goal|``): the model mispredicted what the chosen actions do
  (a planner exploiting model error looks exactly like this).
- ``cost``: imagination was right (the real path scores what the model said) and the path is
  cheap, yet the env state is not at the goal: the embedding distance does not measure
  distance to the goal well enough (its minimum is not where the success test is).
- ``replanning``: the first plan, executed open loop, does reach the goal: the episode was lost by
  the receding-horizon loop (later plans), not by any of the three above. Checked first.

The thresholds are relative to the start-goal distance in embedding space, so they do not depend
on the embedding's scale. Used by :func:`jepalab.planning.evaluate.evaluate_planning` on every
failed goal (``per_episode[i]["failure"]``) and counted in its result (``failure_causes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepalab.planning.cost import latent_cost

CAUSES = ("search", "model", "cost", "replanning")
#: fraction of the start-goal embedding distance by which reality may exceed imagination before
#: the model is blamed
MODEL_TOL = 0.25
#: the recorded plan must beat the found one by this fraction of the start-goal distance to blame
#: the search (a found plan a hair costlier than the recorded one is not a search failure)
SEARCH_TOL = 0.05


def recorded_blocks(actions: np.ndarray, start: int, horizon: int, frameskip: int) -> Tensor:
    """The recorded env actions after ``start`` as ``(H, f*A)`` action blocks (zero-padded past the
    episode's end: "no push")."""
    need = horizon * frameskip
    a = np.asarray(actions[start: start + need], np.float32)
    if a.shape[0] < need:
        a = np.concatenate([a, np.zeros((need - a.shape[0], a.shape[1]), np.float32)])
    return torch.from_numpy(a.reshape(horizon, frameskip * a.shape[1]))


def classify_failure(model: Any, planner: Any, env: Any, task: dict[str, Any], actions: np.ndarray,
                     encode: Any, goal_z: Tensor,
                     past: tuple[list[Tensor], list[Tensor]] | None = None) -> dict[str, Any]:
    """Classify one failed task (module docstring). ``actions``: the recorded episode's env actions;
    ``encode(obs) -> (D,)``; ``goal_z (D,)`` or a goal clip ``(G, D)``; ``past``: the embeddings
    before the start and the action blocks after each (the controller's history), if any.
    Returns ``cause`` and the costs behind it."""
    f = int(model.config.frameskip)
    obs = env.reset_to(task["state"], task["goal_state"])
    z0 = encode(obs)
    dev = z0.device
    past_z, past_a = past if past is not None else ([], [])
    z_hist = torch.stack([*past_z, z0])[None].to(dev)                        # (1, k, D)
    a_hist = torch.stack(past_a)[None].to(dev) if past_a else None
    rec = recorded_blocks(actions, int(task["start"]), planner.horizon, f).to(dev)
    planner.reset()
    found = planner.solve(z_hist, goal_z[None], a_hist)
    plan, c_found = found.actions[0], float(found.cost[0])
    with torch.inference_mode():
        c_rec = float(latent_cost(model.rollout(z_hist, rec[None], a_hist), goal_z[None], planner.cost_kind,
                                  reduce=planner.reduce, context=z_hist)[0])
    last_goal = goal_z if goal_z.dim() == 1 else goal_z[-1]
    scale = float(torch.linalg.vector_norm(z0 - last_goal)) or 1.0
    out = {"c_recorded": c_rec, "c_found": c_found, "start_goal_distance": scale}
    # execute the found plan open loop, encoding the frame after each action block
    real, reached = [], False
    for block in plan.cpu().numpy().reshape(planner.horizon, f, -1):
        for a in block:
            obs, _r, done, _i = env.step(a)
            reached = reached or env.goal_success(obs["state"].numpy(), task["goal_state"])[0]
            if done:
                break
        real.append(encode(obs))
        if done:
            break
    while len(real) < planner.horizon:  # an episode that ended early stays where it ended
        real.append(real[-1])
    c_real = float(latent_cost(torch.stack(real)[None], goal_z[None], planner.cost_kind, reduce=planner.reduce,
                               context=z_hist)[0])
    out["c_real"] = c_real
    if reached:
        return {**out, "cause": "replanning"}
    if c_rec < c_found - SEARCH_TOL * scale:
        return {**out, "cause": "search"}
    if c_real - c_found > MODEL_TOL * scale:
        return {**out, "cause": "model"}
    return {**out, "cause": "cost"}


__all__ = ["CAUSES", "MODEL_TOL", "SEARCH_TOL", "classify_failure", "recorded_blocks"]
