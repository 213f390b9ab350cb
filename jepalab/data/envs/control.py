"""Adapters for two control tasks from outside the project: gymnasium's ``Pendulum-v1`` and
DeepMind Control's reacher-easy (through ``shimmy``), both ready for goal-reaching evaluation.

Why these two: they are the first environments a user tries beyond the built-in ones, and they
exercise what a bring-your-own adapter must get right — a state vector that fully determines the
frame (so a recorded start can be restored) and a goal test that means "the task is reached".

- Pendulum-v1: state = ``[theta, theta_dot]`` (``env.unwrapped.state``; theta unwrapped, as the
  env keeps it), restored by writing that attribute. The frame is drawn without the torque arrow
  gymnasium adds after a step: the arrow shows the *action*, so a frame with it is not a function
  of the state and would hand the world model the answer. Goal test: the angle (wrapped) within
  0.1 rad of the goal's and the angular velocity within 0.3 rad/s (one step of full torque) of the
  goal's. Looser windows are passed by chance: a random-torque pendulum swings through 0.3 rad /
  1.0 rad/s of a recorded goal 25 steps ahead in about three of four 50-step episodes.
- dm_control reacher-easy: state = joint angles (2), joint velocities (2), target (x, y),
  fingertip (x, y) — 8 numbers. The target lives in the model, not in MuJoCo's state, so it is
  part of the vector; the fingertip is derived (forward kinematics) and kept so the goal test
  needs no simulator. Restored with ``physics.set_state`` plus the target's geom position. Goal
  test: the fingertip within the target's radius (0.05, the env's own tolerance for "easy") of
  the goal state's fingertip. Rendering is OpenGL: set ``MUJOCO_GL=egl`` on a headless machine.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from jepalab.data.envs.base import Adapter, action_box
from jepalab.errors import ConfigError, MissingDependencyError

PENDULUM_ANGLE_TOL, PENDULUM_SPEED_TOL = 0.1, 0.3
DMC_PIP = "pip install 'jepalab[dmc]'  (shimmy, dm-control, mujoco, imageio)"
REACHER_ID = "dm_control/reacher-easy-v0"


def _wrap_angle(x: float) -> float:
    return (x + math.pi) % (2 * math.pi) - math.pi


# ---------------------------------------------------------------- Pendulum-v1
def pendulum_goal_success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
    """Angle within 0.1 rad (wrapped) and angular velocity within 0.3 rad/s of the goal's;
    the distance is the angle error in radians."""
    s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    ang = abs(_wrap_angle(float(s[0] - g[0])))
    return ang < PENDULUM_ANGLE_TOL and abs(float(s[1] - g[1])) < PENDULUM_SPEED_TOL, ang


def pendulum_adapter(raw: Any, name: str = "Pendulum-v1") -> Adapter:
    """The adapter of a ``Pendulum-v1`` instance made with ``render_mode="rgb_array"``."""
    low, high = action_box(raw.action_space, name)

    def pixels(env: Any, obs: Any) -> np.ndarray:
        u = env.unwrapped
        last_u, u.last_u = u.last_u, None  # no torque arrow: the frame shows the state only
        try:
            return np.asarray(env.render())
        finally:
            u.last_u = last_u

    def state(env: Any, obs: Any, info: dict) -> np.ndarray:
        return np.asarray(env.unwrapped.state, np.float32).reshape(2)

    def reset_to(env: Any, s: np.ndarray, goal_state: np.ndarray | None) -> tuple[Any, dict]:
        if s.size != 2:
            raise ConfigError(f"a Pendulum-v1 state is [theta, theta_dot]: 2 numbers, got {s.size}.")
        u = env.unwrapped
        u.state = np.asarray(s, np.float64).copy()
        u.last_u = None
        th, thdot = u.state
        return np.array([math.cos(th), math.sin(th), thdot], np.float32), {}

    spec = getattr(raw, "spec", None)
    return Adapter(pixels=pixels, proprio=lambda env, obs, info: np.zeros(0, np.float32), state=state,
                   success=lambda info: False, low=low, high=high,
                   max_steps=int(getattr(spec, "max_episode_steps", None) or 200), reset_to=reset_to,
                   goal_success=pendulum_goal_success,
                   criterion=f"angle within {PENDULUM_ANGLE_TOL} rad and angular velocity within "
                             f"{PENDULUM_SPEED_TOL} rad/s of the goal's")


# ---------------------------------------------------------------- dm_control reacher
def import_shimmy() -> Any:
    """Import shimmy (registering the ``dm_control/...`` gymnasium ids); EGL rendering by default."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import gymnasium as gym
        import shimmy
    except ImportError as e:
        raise MissingDependencyError(f"dm_control envs need shimmy and dm-control ({e}). Install: {DMC_PIP}") from e
    gym.register_envs(shimmy)
    return shimmy


def _physics(env: Any) -> Any:
    return env.unwrapped.physics


def reacher_state(physics: Any) -> np.ndarray:
    """``[qpos (2), qvel (2), target xy, fingertip xy]`` of a reacher physics."""
    target = physics.named.model.geom_pos["target", ["x", "y"]]
    finger = physics.named.data.geom_xpos["finger", ["x", "y"]]
    return np.concatenate([physics.data.qpos[:2], physics.data.qvel[:2], target, finger]).astype(np.float32)


def reacher_adapter(raw: Any, name: str = REACHER_ID) -> Adapter:
    """The adapter of a shimmy ``dm_control/reacher-*`` instance (``render_mode="rgb_array"``)."""
    low, high = action_box(raw.action_space, name)
    radius = float(_physics(raw).named.model.geom_size["target", 0])

    def goal_success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
        s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
        d = float(np.linalg.norm(s[6:8] - g[6:8]))
        return d < radius, d

    def reset_to(env: Any, s: np.ndarray, goal_state: np.ndarray | None) -> tuple[Any, dict]:
        if s.size != 8:
            raise ConfigError(f"a reacher state is qpos (2), qvel (2), target (2), fingertip (2): 8 numbers, "
                              f"got {s.size}.")
        physics = _physics(env)
        with physics.reset_context():  # writes the state and recomputes positions (fingertip)
            physics.data.qpos[:2], physics.data.qvel[:2] = s[:2], s[2:4]
            physics.named.model.geom_pos["target", ["x", "y"]] = s[4:6]
        return None, {}

    def pixels(env: Any, obs: Any) -> np.ndarray:
        return np.asarray(env.render())

    spec = getattr(raw, "spec", None)
    return Adapter(pixels=pixels, proprio=lambda env, obs, info: np.asarray(_physics(env).data.qpos[:2], np.float32),
                   state=lambda env, obs, info: reacher_state(_physics(env)),
                   success=lambda info: False, low=low, high=high,
                   max_steps=int(getattr(spec, "max_episode_steps", None) or 1000), reset_to=reset_to,
                   goal_success=goal_success,
                   criterion=f"fingertip within the target radius ({radius:g}) of the goal's fingertip")


#: gymnasium ids that come with a goal-reaching adapter: id -> adapter(raw, name)
ADAPTERS = {"Pendulum-v1": pendulum_adapter, REACHER_ID: reacher_adapter,
            "dm_control/reacher-hard-v0": reacher_adapter}

__all__ = ["ADAPTERS", "pendulum_adapter", "pendulum_goal_success", "reacher_adapter", "reacher_state",
           "import_shimmy"]
