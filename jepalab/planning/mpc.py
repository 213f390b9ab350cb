"""Receding-horizon model-predictive control (MPC) with a latent planner.

Why: a world model's predictions drift after a few steps, so the agent plans ``H`` steps ahead,
executes only the first few actions, observes, re-encodes and plans again (the receding-horizon
loop of LeWorldModel, Maes et al., 2026, and V-JEPA 2-AC, Assran et al., 2025).

Works with any gymnasium-style environment following jepalab's ``Env`` contract
(``jepalab.data.envs``): ``reset() -> obs``, ``step(action) -> (obs, reward, done, info)``,
``action_dim``, ``success(info) -> bool``; actions are numpy float32 vectors in ``[-1, 1]^A``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from jepalab.errors import ConfigError, ShapeError
from jepalab.planning.base import Planner
from jepalab.planning.cost import latent_cost

EncodeFn = Callable[[Any], Tensor]


class MPCController:
    """Plan in latent space, execute a few actions, replan.

    ``encode_fn(obs) -> (D,)`` (or ``(1, D)``) embeds an observation (and the goal observation).
    ``execute``: planned actions taken from each plan before the next one (1..H; 1 = classic MPC).
    ``replan_every``: env steps after which a new plan is made even if planned actions remain
    (must be a multiple of the action chunk, below). ``history``: how many past embeddings (and
    the actions between them) the model sees. If the planner's ``action_dim`` is ``m`` times the
    environment's, each planned action is a chunk of ``m`` consecutive env actions (models trained
    with frameskip ``m`` on concatenated actions, as LeWorldModel); history embeddings are then
    taken every ``m`` env steps.
    """

    def __init__(
        self,
        planner: Planner,
        encode_fn: EncodeFn,
        replan_every: int = 1,
        execute: int = 1,
        history: int = 1,
    ) -> None:
        if not 1 <= execute <= planner.horizon:
            raise ConfigError(f"execute must be in [1, horizon={planner.horizon}], got {execute}.")
        if replan_every < 1 or history < 1:
            raise ConfigError(f"replan_every and history must be >= 1, got {replan_every} and {history}.")
        self.planner, self.encode_fn = planner, encode_fn
        self.replan_every, self.execute, self.history = replan_every, execute, history
        self.chunk = 1
        self.goal: Tensor | None = None
        self.costs: list[float] = []
        self.plan_times: list[float] = []
        self.goal_distances: list[float] = []  # planning-cost distance of each observed model step to the goal
        self._queue: deque[Tensor] = deque()
        self._z: deque[Tensor] = deque(maxlen=history)
        self._a: deque[Tensor] = deque(maxlen=max(history - 1, 1))
        self._since_plan = 0
        self._done_latent = 0
        self._partial: list[Tensor] = []

    def reset(self, goal_obs: Any, env_action_dim: int | None = None, past_obs: list[Any] | None = None,
              past_actions: list[Any] | None = None) -> None:
        """Start an episode towards ``goal_obs``; ``env_action_dim`` sets the action chunking.

        ``goal_obs``: one observation, or a list of them one model step apart (oldest first): a
        goal clip, compared with the last embeddings of each imagined future (``planning/cost.py``).
        ``past_obs``: observations before the first one, one model step apart (oldest first), with
        ``past_actions`` the action block taken after each: the predictor's history from the start
        (a recorded episode has them), so a model that reads velocities off two frames knows them
        at the first plan instead of assuming the first frame stood still.
        """
        a_plan = self.planner.action_dim
        env_dim = a_plan if env_action_dim is None else int(env_action_dim)
        if env_dim < 1 or a_plan % env_dim:
            raise ShapeError(
                f"The planner plans {a_plan}-dim actions but the environment takes {env_dim}-dim actions; "
                "the planner's action_dim must equal the env's (or be a multiple: frameskip chunks)."
            )
        self.chunk = a_plan // env_dim
        if self.replan_every % self.chunk:
            raise ConfigError(
                f"replan_every={self.replan_every} must be a multiple of the action chunk {self.chunk} "
                "so that plans start on a model step."
            )
        if isinstance(goal_obs, (list, tuple)):
            if not goal_obs:
                raise ConfigError("goal_obs is an empty list: give one goal observation or a clip of them.")
            if len(goal_obs) > self.history:
                raise ConfigError(f"a goal clip of {len(goal_obs)} frames needs a controller history of at least as "
                                  f"many embeddings (history={self.history}).")
            self.goal = torch.stack([self._embed(o) for o in goal_obs]) if len(goal_obs) > 1 else self._embed(goal_obs[0])
        else:
            self.goal = self._embed(goal_obs)
        self.planner.reset()
        self.costs, self.plan_times, self.goal_distances = [], [], []
        self._queue.clear(), self._z.clear(), self._a.clear()
        self._since_plan, self._done_latent, self._partial = 0, 0, []
        past_obs, past_actions = list(past_obs or []), list(past_actions or [])
        if len(past_actions) != len(past_obs):
            raise ShapeError(f"past_obs has {len(past_obs)} observations but past_actions {len(past_actions)} "
                             "action blocks: give the block taken after each past observation.")
        for o, a in zip(past_obs, past_actions):
            self._z.append(self._embed(o))
            a = torch.as_tensor(a, dtype=torch.float32).reshape(-1)
            if a.numel() != a_plan:
                raise ShapeError(f"a past action block has {a.numel()} numbers; the planner plans {a_plan}.")
            if self.history > 1:
                self._a.append(a)

    def act(self, obs: Any) -> np.ndarray:
        """The next env action (numpy float32, ``(A_env,)``) for observation ``obs``."""
        if self.goal is None:
            raise ConfigError("Call controller.reset(goal_obs) before act(obs).")
        if not self._partial:  # at a model-step boundary: record the embedding
            z = self._embed(obs)
            self._z.append(z)
            self.goal_distances.append(self.distance(z, list(self._z)[:-1]))
            if not self._queue or self._since_plan >= self.replan_every:
                self._replan()
            latent = self._queue.popleft()
            if self.history > 1:
                self._a.append(latent)
            self._done_latent += 1
            self._partial = list(latent.reshape(self.chunk, -1).unbind(0))
        self._since_plan += 1
        return self._partial.pop(0).detach().cpu().numpy().astype(np.float32)

    def distance(self, z: Tensor, before: list[Tensor] | None = None) -> float:
        """The planner's cost kind between one embedding ``(D,)`` and the goal: what a plan's
        expected cost is compared with once the agent is really there. ``before``: the embeddings
        observed before ``z`` (oldest first), which a goal clip compares too."""
        ctx = torch.stack(before)[None] if before else None
        return float(latent_cost(z.reshape(1, 1, -1), self.goal[None], self.planner.cost_kind, reduce="last",
                                 context=ctx)[0])

    @property
    def observed(self) -> list[Tensor]:
        """The embeddings the controller keeps (its history), oldest first."""
        return list(self._z)

    def _replan(self) -> None:
        z_hist = torch.stack(list(self._z)).unsqueeze(0)  # (1, k, D)
        k = z_hist.shape[1]
        a_hist = torch.stack(list(self._a)[-(k - 1):]).unsqueeze(0) if k > 1 else None
        t0 = time.perf_counter()
        result = self.planner.solve(z_hist, self.goal[None], a_hist, shift=self._done_latent)
        cost = float(result.cost[0])  # reading the cost waits for a GPU's queue: the time is the whole plan's
        self.plan_times.append(time.perf_counter() - t0)
        self.costs.append(cost)
        self._queue = deque(result.actions[0, : self.execute].unbind(0))
        self._since_plan, self._done_latent = 0, 0

    def _embed(self, obs: Any) -> Tensor:
        z = self.encode_fn(obs)
        if not isinstance(z, Tensor):
            raise ShapeError(f"encode_fn must return a torch.Tensor (D,), got {type(z).__name__}.")
        if z.dim() == 2 and z.shape[0] == 1:
            z = z[0]
        if z.dim() != 1:
            raise ShapeError(f"encode_fn must return one embedding (D,) or (1, D), got {tuple(z.shape)}.")
        return z.detach().float()


def run_episode(env: Any, controller: MPCController, goal_obs: Any, budget: int = 50) -> dict[str, Any]:
    """Run one MPC episode for at most ``budget`` env steps; stop at success or ``done``.

    Returns ``dict(success: bool, steps: int, frames: list (C, H, W) arrays incl. the first,
    costs: list[float] planner cost per plan, plan_times: list[float] seconds per plan)``.
    """
    if budget < 1:
        raise ConfigError(f"budget must be >= 1 env steps, got {budget}.")
    obs = env.reset()
    controller.reset(goal_obs, env_action_dim=getattr(env, "action_dim", None))
    frames = [_pixels(obs)]
    success, steps = False, 0
    while steps < budget:
        obs, _reward, done, info = env.step(controller.act(obs))
        steps += 1
        frames.append(_pixels(obs))
        if env.success(info):
            success = True
            break
        if done:
            break
    return dict(
        success=success, steps=steps, frames=frames,
        costs=list(controller.costs), plan_times=list(controller.plan_times),
    )


def _pixels(obs: Any) -> Any:
    """The frame to keep for a video: ``obs["pixels"]`` when obs is a dict, else obs itself."""
    return obs.get("pixels") if isinstance(obs, dict) else obs
