"""The bouncing-ball world as a steppable environment (the offline, dependency-free test bed).

Why: every env path (wrapper, collection, trajectory loading, MPC) must be testable without
optional packages. This is the ``"actions"`` variant of :class:`jepalab.data.bouncing.BouncingBalls`
with the same dynamics (:func:`step_dynamics`: a push added to the velocity, speed clipped, elastic
walls) and the same renderer, behind the gymnasium ``reset``/``step``/``render`` API, plus a goal:
ball 0 should reach a random goal position (reward = minus the distance in pixels; success within
two radii), so planners have something to aim at. Setting: Srivastava et al. 2015 (bouncing balls);
the action variant follows the action-conditioned worlds of LeCun 2022 (sec. 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig, step_dynamics


class BouncingEnv:
    """Gymnasium-style env: action (2,) in [-1, 1] = push of ``action_scale`` px/frame on all balls.

    ``reset(seed) -> (state (4K,), info)``; ``render() -> (H, W, C)`` uint8; ``info`` has
    ``goal`` (2,), ``distance`` (px) and ``is_success``.
    """

    def __init__(self, config: BouncingConfig | None = None, max_steps: int = 100) -> None:
        cfg = config if config is not None else BouncingConfig(variant="actions", channels=3)
        self.world = BouncingBalls(cfg)
        self.config = cfg
        self.max_steps = max_steps
        self.low, self.high = self.world.low, self.world.high
        self._rng = np.random.default_rng(0)
        self._t = 0
        self.pos = torch.zeros(1, cfg.num_balls, 2)
        self.vel = torch.zeros(1, cfg.num_balls, 2)
        self.goal = np.zeros(2, dtype=np.float32)

    def _state(self) -> np.ndarray:
        return torch.cat([self.pos.flatten(1), self.vel.flatten(1)], dim=1)[0].numpy().astype(np.float32)

    def _info(self) -> dict[str, Any]:
        dist = float(np.linalg.norm(self.pos[0, 0].numpy() - self.goal))
        return {"goal": self.goal.copy(), "distance": dist, "is_success": dist <= 2 * self.config.radius}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        c, k = self.config, self.config.num_balls
        span = self.high - self.low
        self.pos = torch.as_tensor(self.low + span * self._rng.random((1, k, 2)), dtype=torch.float32)
        speed = c.speed[0] + (c.speed[1] - c.speed[0]) * self._rng.random((1, k))
        ang = 2 * np.pi * self._rng.random((1, k))
        self.vel = torch.as_tensor(np.stack([speed * np.cos(ang), speed * np.sin(ang)], -1), dtype=torch.float32)
        self.goal = (self.low + span * self._rng.random(2)).astype(np.float32)
        self._t = 0
        return self._state(), self._info()

    def set_state(self, state: np.ndarray, goal_state: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """Put the world in ``state`` (4K,) = positions then velocities (the ``_state`` layout);
        ball 0's goal becomes ``goal_state[:2]`` if given. Returns ``(state, info)`` like ``reset``."""
        from jepalab.errors import ShapeError

        k = self.config.num_balls
        state = np.asarray(state, np.float64).reshape(-1)
        if state.size != 4 * k or (goal_state is not None and np.asarray(goal_state).size < 2):
            raise ShapeError(f"bouncing state must have 4 x num_balls = {4 * k} entries (positions, velocities) "
                             f"and a goal at least 2; got {state.size} and "
                             f"{None if goal_state is None else np.asarray(goal_state).size}.")
        self.pos = torch.as_tensor(state[: 2 * k], dtype=torch.float32).view(1, k, 2)
        self.vel = torch.as_tensor(state[2 * k:], dtype=torch.float32).view(1, k, 2)
        if goal_state is not None:
            self.goal = np.asarray(goal_state, np.float32).reshape(-1)[:2].copy()
        self._t = 0
        return self._state(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        push = torch.as_tensor(np.clip(np.asarray(action, dtype=np.float32), -1, 1)).view(1, 2)
        self.pos, self.vel = step_dynamics(self.pos, self.vel, self.low, self.high,
                                           push=push * self.config.action_scale, max_speed=self.config.speed[1])
        self._t += 1
        info = self._info()
        return self._state(), -info["distance"], False, self._t >= self.max_steps, info

    def render(self) -> np.ndarray:
        img = self.world.render(self.pos[0])  # (C, H, W) in [0, 1]
        return (img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def goal_view(self) -> dict[str, np.ndarray]:
        """The goal as an observation: ball 0 at the goal and every ball at rest."""
        pos = self.pos.clone()
        pos[0, 0] = torch.as_tensor(self.goal)
        img = self.world.render(pos[0])
        state = torch.cat([pos.flatten(1), torch.zeros_like(self.vel).flatten(1)], dim=1)[0].numpy()
        k = self.config.num_balls
        return {"frame": (img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
                "proprio": state[: 2 * k], "state": state}

    def close(self) -> None:
        pass


def make_bouncing(**kwargs: Any) -> tuple[BouncingEnv, Any]:
    """The ``"bouncing"`` env and its adapter. Goal test: ball 0 within two radii of where it is in
    the goal state (the env's own success radius)."""
    from jepalab.data.envs.base import Adapter
    from jepalab.errors import ConfigError

    max_steps = int(kwargs.pop("max_steps", 100))
    cfg = BouncingConfig(**{"variant": "actions", "channels": 3, **kwargs})
    if cfg.variant != "actions":
        raise ConfigError("the 'bouncing' env is the actions variant; drop the 'variant' option.")
    raw = BouncingEnv(cfg, max_steps=max_steps)
    k, radius = cfg.num_balls, float(cfg.radius)

    def goal_success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
        d = float(np.linalg.norm(np.asarray(state, np.float64)[:2] - np.asarray(goal_state, np.float64)[:2]))
        return d <= 2 * radius, d

    adapter = Adapter(pixels=lambda env, obs: env.render(),
                      proprio=lambda env, obs, info: np.asarray(obs[: 2 * k], np.float32),
                      state=lambda env, obs, info: np.asarray(obs, np.float32),
                      success=lambda info: bool(info.get("is_success", False)),
                      low=-np.ones(2), high=np.ones(2), max_steps=max_steps, goal=lambda env, info: env.goal_view(),
                      reset_to=lambda env, state, goal: env.set_state(state, goal), goal_success=goal_success,
                      criterion="ball 0 within 2 radii of its goal position")
    return raw, adapter
