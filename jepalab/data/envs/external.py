"""Adapters for environments nobody on this project wrote: Push-T, Two-Room, any gymnasium id.

Why adapters and not subclasses: the raw envs stay untouched (a user can bring their own), and
each adapter only says where the pixels, proprioception, state and success flag live.
- Push-T (Chi et al. 2023, "Diffusion Policy"; package ``gym-pusht``): action = the agent's target
  position in [0, 512]^2; proprio = agent position; state = agent (x, y) + T block (x, y, angle);
  success = ``info["is_success"]`` (coverage of the goal > 95%).
- Two-Room (Sobal et al. 2025, "Learning from Reward-Free Offline Data: A Case for Planning with
  Latent Dynamics Models"; package ``stable-worldmodel``): action = a velocity direction in
  [-1, 1]^2; state = agent (2) + target (2) + door centres (6); success = agent within 16 px of
  the target (the env's own termination radius).
- Any gymnasium id rendering ``rgb_array``: pixels from ``obs["pixels"]`` or ``render()``,
  state = the flattened vector observation, success = ``info["is_success"]``/``info["success"]``;
  its goal test is the generic normalized state distance (``base.distance_success``) and it
  cannot be restored to a recorded state (no ``reset_to``) unless an adapter says how
  (``Pendulum-v1`` and dm_control reacher have one: ``control.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import types
from typing import Any

import numpy as np

from jepalab.data.envs.base import Adapter, action_box
from jepalab.errors import ConfigError, MissingDependencyError

PUSHT_PIP = "pip install gym-pusht"
TWOROOM_PIP = ("pip install --no-deps stable-worldmodel==0.1.1 && pip install loguru einops gymnasium "
               "(its full install pulls CUDA torch and torchvision: avoid it on CPU)")
GYM_PIP = "pip install gymnasium"
#: Push-T goal test of DINO-WM / LeWM: agent+block xy within 20 px (L2), block angle within pi/9
PUSHT_POS_TOL, PUSHT_ANGLE_TOL = 20.0, math.pi / 9
#: Two-Room goal test: the agent within the env's own 16 px termination radius of the goal
TWOROOM_RADIUS = 16.0


def _import(module: str, pip: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs the '{module}' package, which could not be imported "
                                     f"({e}). Install it with: {pip}") from e


def _vector(x: Any) -> np.ndarray:
    if isinstance(x, dict):
        return np.zeros(0, dtype=np.float32)
    try:
        return np.asarray(x, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return np.zeros(0, dtype=np.float32)


def _render(env: Any, obs: Any) -> np.ndarray:
    if isinstance(obs, dict) and "pixels" in obs:
        return np.asarray(obs["pixels"])
    frame = env.render()
    if frame is None:
        raise ConfigError("the environment returned no frame from render(); create it with "
                          "render_mode='rgb_array' (jepalab does this for gymnasium ids).")
    return np.asarray(frame)


# ---------------------------------------------------------------- Push-T
def make_pusht(**kwargs: Any) -> tuple[Any, Adapter]:
    """gym-pusht's ``PushT-v0`` with 96 px pixels + agent position observations (headless)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    gym = _import("gymnasium", PUSHT_PIP, "Push-T")  # gym-pusht brings gymnasium
    _import("gym_pusht", PUSHT_PIP, "Push-T")
    opts = {"obs_type": "pixels_agent_pos", "render_mode": "rgb_array", **kwargs}
    raw = gym.make("gym_pusht/PushT-v0", **opts)
    low, high = action_box(raw.action_space, "pusht")

    def state(env: Any, obs: Any, info: dict) -> np.ndarray:
        u = env.unwrapped
        agent = np.asarray(info.get("pos_agent", u.agent.position), np.float32)
        block = np.asarray(info.get("block_pose", [*u.block.position, u.block.angle]), np.float32)
        return np.concatenate([agent, block])

    def proprio(env: Any, obs: Any, info: dict) -> np.ndarray:
        return np.asarray(obs["agent_pos"] if isinstance(obs, dict) and "agent_pos" in obs
                          else env.unwrapped.agent.position, np.float32)

    extra: dict[str, Any] = {}

    def goal(env: Any, info: dict) -> dict[str, np.ndarray]:
        # A second env renders the goal so the live simulation is untouched.
        pose = np.asarray(info.get("goal_pose", [256.0, 256.0, np.pi / 4]), np.float64)
        agent = np.asarray(info.get("pos_agent", env.unwrapped.agent.position), np.float64)
        if "goal_env" not in extra:
            extra["goal_env"] = gym.make("gym_pusht/PushT-v0", **opts)
        obs, ginfo = _pusht_reset_to(extra["goal_env"], agent, pose)
        return {"frame": _render(extra["goal_env"], obs), "proprio": agent,
                "state": np.concatenate([agent, np.asarray(ginfo["block_pose"], np.float64)])}

    def reset_to(env: Any, s: np.ndarray, goal_state: np.ndarray | None) -> tuple[Any, dict]:
        if s.size < 5:
            raise ConfigError(f"a Push-T state is agent (x, y) + block (x, y, angle): 5 numbers, got {s.size}.")
        return _pusht_reset_to(env, s[:2], s[2:5])  # the goal pose of gym-pusht is fixed

    adapter = Adapter(pixels=_render, proprio=proprio, state=state,
                      success=lambda info: bool(info.get("is_success", False)), low=low, high=high,
                      max_steps=int(getattr(raw.spec, "max_episode_steps", None) or 300), goal=goal,
                      reset_to=reset_to, goal_success=pusht_goal_success, extra=extra,
                      criterion="state criterion of DINO-WM/LeWM: agent+block xy within 20 px (L2) and block "
                                "angle within pi/9")
    return raw, adapter


def pusht_goal_success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
    """DINO-WM's / LeWM's Push-T test on ``(agent xy, block xy, block angle)``: the L2 distance of
    the first four numbers below 20 px and the block's angle within pi/9 of the goal's. Not
    gym-pusht's coverage flag, which refers to the env's fixed target pose, not a recorded goal."""
    s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    d = float(np.linalg.norm(s[:4] - g[:4]))
    ang = abs(float(s[4] - g[4])) % (2 * math.pi)
    ang = min(ang, 2 * math.pi - ang)
    return d < PUSHT_POS_TOL and ang < PUSHT_ANGLE_TOL, d


def _pusht_reset_to(env: Any, agent: np.ndarray, pose: np.ndarray) -> tuple[Any, dict]:
    """Reset gym-pusht to agent ``(x, y)`` and block ``pose (x, y, angle)``. Its ``reset_to_state``
    sets the block position and then the angle, which turns the T about its centre of mass (45 px
    along the stem): pass the position that ends at ``pose`` after that turn."""
    x, y, th = (float(v) for v in pose[:3])
    com = np.array([x, y]) + 45.0 * np.array([-np.sin(th), np.cos(th)])
    start = com - np.array([0.0, 45.0])
    return env.reset(options={"reset_to_state": [float(agent[0]), float(agent[1]), start[0], start[1], th]})


# ---------------------------------------------------------------- Two-Room
def _load_tworoom_class() -> type:
    """``TwoRoomEnv`` from stable-worldmodel. Its top-level ``__init__`` imports torchvision and
    lancedb (policies, datasets); when those are absent or broken (torchvision does not import
    beside torch 2.13 CPU) the env module is loaded alone, with the package's light ``spaces`` and
    ``utils`` modules, which are all it needs."""
    _import("gymnasium", GYM_PIP, "Two-Room")
    try:
        return importlib.import_module("stable_worldmodel.envs.two_room.env").TwoRoomEnv
    except ImportError as e:
        first_error = e
    spec = importlib.util.find_spec("stable_worldmodel") if "stable_worldmodel" not in sys.modules else None
    pkg = sys.modules.get("stable_worldmodel")
    if pkg is None:
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(f"env 'tworoom' needs stable-worldmodel, which is not installed. "
                                         f"Install it with: {TWOROOM_PIP}")
        pkg = types.ModuleType("stable_worldmodel")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["stable_worldmodel"] = pkg
    try:
        for sub in ("utils", "spaces"):
            setattr(pkg, sub, importlib.import_module(f"stable_worldmodel.{sub}"))
        path = os.path.join(pkg.__path__[0], "envs", "two_room", "env.py")
        mspec = importlib.util.spec_from_file_location("jepalab_swm_two_room_env", path)
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
        return module.TwoRoomEnv
    except (ImportError, FileNotFoundError, AttributeError) as e:
        raise MissingDependencyError(f"env 'tworoom': stable-worldmodel is installed but its Two-Room env "
                                     f"could not be loaded ({first_error}; then {e}). Install its light "
                                     f"dependencies: {TWOROOM_PIP}") from e


def make_tworoom(**kwargs: Any) -> tuple[Any, Adapter]:
    """stable-worldmodel's Two-Room navigation env (224 px frames, rendered by torch on CPU)."""
    raw = _load_tworoom_class()(**kwargs)
    low, high = action_box(raw.action_space, "tworoom")
    def goal(env: Any, info: dict) -> dict[str, np.ndarray]:
        target = np.asarray(info.get("goal_state"), np.float32)
        u = env.unwrapped
        state = _vector(u._get_obs()).copy()
        state[:2] = target
        return {"frame": np.asarray(u._render_frame(agent_pos=u.target_position)).transpose(1, 2, 0),
                "proprio": target, "state": state}

    adapter = Adapter(
        pixels=_render,
        proprio=lambda env, obs, info: np.asarray(info.get("proprio", _vector(obs)[:2]), np.float32),
        state=lambda env, obs, info: _vector(obs),
        success=lambda info: float(info.get("distance_to_target", np.inf)) < TWOROOM_RADIUS,
        low=low, high=high, max_steps=100, goal=goal, reset_to=_tworoom_reset_to,
        goal_success=tworoom_goal_success, criterion="agent within 16 px of the goal position")
    return raw, adapter


def tworoom_goal_success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
    """The agent (``state[:2]``) within 16 px of the goal's agent position."""
    d = float(np.linalg.norm(np.asarray(state, np.float64)[:2] - np.asarray(goal_state, np.float64)[:2]))
    return d < TWOROOM_RADIUS, d


def _tworoom_reset_to(env: Any, state: np.ndarray, goal_state: np.ndarray | None) -> tuple[Any, dict]:
    """Agent at ``state[:2]``; the target at ``goal_state[:2]`` (the goal's agent position), else at
    the target recorded in ``state[2:4]``, so the env's own distance_to_target is the criterion."""
    target = goal_state[:2] if goal_state is not None else state[2:4]
    if state.size < 2 or target.size < 2:
        raise ConfigError(f"a Two-Room state starts with the agent (x, y) (and target); got {state.size} numbers.")
    return env.reset(options={"state": state[:2].astype(np.float32), "target_state": target.astype(np.float32)})


# ---------------------------------------------------------------- any gymnasium id
def make_gym(env_id: str, **kwargs: Any) -> tuple[Any, Adapter]:
    """Any registered gymnasium id with a bounded Box action space and ``rgb_array`` rendering."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    gym = _import("gymnasium", GYM_PIP, f"env '{env_id}'")
    ns = env_id.split("/", 1)[0] if "/" in env_id else None
    if ns == "dm_control":
        from jepalab.data.envs.control import import_shimmy

        import_shimmy()  # shimmy registers the dm_control/... ids
    elif ns and importlib.util.find_spec(ns) is not None:
        importlib.import_module(ns)  # e.g. "gym_pusht/..." registers on import
    try:
        raw = gym.make(env_id, render_mode=kwargs.pop("render_mode", "rgb_array"), **kwargs)
    except gym.error.Error as e:
        raise ConfigError(f"Unknown environment '{env_id}': jepalab knows 'pusht', 'tworoom', 'bouncing', "
                          f"and gymnasium ids; gymnasium says: {e}. If it comes from a package, install "
                          "and import it first (e.g. `pip install gym-pusht`).") from e
    from jepalab.data.envs.control import ADAPTERS

    return raw, ADAPTERS.get(env_id, gym_adapter)(raw, env_id)


def gym_adapter(raw: Any, name: str = "custom") -> Adapter:
    """The generic adapter for a gymnasium env instance (``render_mode="rgb_array"``, Box actions)."""
    low, high = action_box(raw.action_space, name)

    def proprio(env: Any, obs: Any, info: dict) -> np.ndarray:
        if isinstance(obs, dict):
            for key in ("agent_pos", "proprio", "observation.state"):
                if key in obs:
                    return _vector(obs[key])
        return np.zeros(0, np.float32)

    def state(env: Any, obs: Any, info: dict) -> np.ndarray:
        if isinstance(obs, dict):
            parts = [_vector(v) for k, v in sorted(obs.items()) if k != "pixels"]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return _vector(obs)

    spec = getattr(raw, "spec", None)
    return Adapter(pixels=_render, proprio=proprio, state=state,
                   success=lambda info: bool(info.get("is_success", info.get("success", False))),
                   low=low, high=high, max_steps=int(getattr(spec, "max_episode_steps", None) or 200),
                   state_scale=_state_scale(getattr(raw, "observation_space", None)),
                   criterion="scale = the width of each observation entry's bounds, 1 where unbounded")


def _state_scale(space: Any) -> np.ndarray | None:
    """Per-entry width of an observation space in the layout ``gym_adapter``'s ``state`` uses (a
    Dict's non-pixel entries in sorted key order); 1 where a bound is infinite or unknown."""
    spaces = ([v for k, v in sorted(space.spaces.items()) if k != "pixels"] if hasattr(space, "spaces")
              else [space])
    widths = []
    for sp in spaces:
        low, high = getattr(sp, "low", None), getattr(sp, "high", None)
        if low is None or high is None:
            return None
        w = (np.asarray(high, np.float64) - np.asarray(low, np.float64)).reshape(-1)
        widths.append(np.where(np.isfinite(w) & (w > 0), w, 1.0))
    return np.concatenate(widths) if widths else None
