"""A jepalab :class:`~jepalab.data.envs.base.Env` as a real ``gymnasium.Env``.

Why: gymnasium's tooling — ``gymnasium.vector`` to step several copies in worker processes,
``gymnasium.utils.env_checker``, wrappers a user already has — expects its own API: numpy
observations inside an ``observation_space``, ``step`` returning ``(obs, reward, terminated,
truncated, info)`` and ``reset(seed, options)``. This view gives exactly that on top of the
wrapper every planner uses, so the numbers are the same either way (the recorder relies on it:
``collect --workers N`` gives the episodes of a serial run).

Observations: ``{"pixels": (C, S, S) float32 in [0, 1], "proprio": (P,), "state": (S,)}``.
Actions: ``(A,)`` in [-1, 1] (the wrapper's normalized actions; out-of-range values are clipped).
``reset(options={"state": s, "goal_state": g})`` restores a recorded state (``Env.reset_to``).
An action containing NaN is a no-op (the last observation again, reward 0): the recorder sends
it to worker copies that have no episode left while others finish theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jepalab.errors import MissingDependencyError

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError as e:  # pragma: no cover - exercised only without gymnasium
    raise MissingDependencyError(f"the gymnasium view of jepalab envs needs gymnasium ({e}); "
                                 "pip install gymnasium") from e


def _np(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float32) for k, v in obs.items()}


class GymEnv(gym.Env):
    """``GymEnv(make)`` where ``make() -> Env`` (called here, so it can run in a worker process).

    Building it resets the env once (seed 0) to learn the observation sizes; every later
    ``reset(seed=...)`` reseeds the env fully, so that first reset leaves no trace.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        self.env = make()
        obs = _np(self.env.reset(seed=0))
        self.observation_space = spaces.Dict({
            "pixels": spaces.Box(0.0, 1.0, obs["pixels"].shape, np.float32),
            "proprio": spaces.Box(-np.inf, np.inf, obs["proprio"].shape, np.float32),
            "state": spaces.Box(-np.inf, np.inf, obs["state"].shape, np.float32),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (int(self.env.action_dim),), np.float32)
        self.render_mode = "rgb_array"
        self._last = obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "state" in options:
            obs = self.env.reset_to(options["state"], options.get("goal_state"), seed=seed)
        else:
            obs = self.env.reset(seed=seed)
        self._last = _np(obs)
        return self._last, dict(self.env.last_info)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, np.float64).reshape(-1)
        if np.isnan(a).any():  # an idle worker copy: stay where it is
            return self._last, 0.0, False, False, dict(self.env.last_info)
        obs, reward, terminated, truncated, info = self.env.gym_step(a)
        self._last = _np(obs)
        return self._last, float(reward), terminated, truncated, dict(info)

    def render(self) -> np.ndarray:
        """The current raw frame ``(H, W, C)`` uint8, before resizing."""
        return self.env.frame()

    def close(self) -> None:
        self.env.close()
        super().close()


__all__ = ["GymEnv"]
