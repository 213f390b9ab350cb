"""The one environment wrapper every jepalab planner, collector and test talks to.

Why a wrapper: world models and planners want the same thing from every environment — pixels as a
float tensor ``(C, H, W)`` in [0, 1] at the model's ``img_size``, actions normalized to [-1, 1]
(so a planner's bounds and a model's action embedding are env-independent), the low-dimensional
``proprio`` and ``state`` vectors for probes, and a ``success(info)`` test. Each concrete env
supplies a small *adapter* (how to get raw pixels, proprio, state, success from it); this class
does the rest: action scaling to the env's Box, antialiased resizing, frameskip.

Frameskip (LeWorldModel uses 5) comes in two modes: ``"repeat"`` applies one action ``frameskip``
times; ``"block"`` takes an action of ``frameskip * A`` numbers and applies its ``A``-sized chunks
in turn (the "action block" of LeWM), so the model still sees every low-level action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepalab.errors import ConfigError, ShapeError

FRAMESKIP_MODES = ("repeat", "block")


def resize_frame(frame: np.ndarray | Tensor, img_size: int) -> Tensor:
    """uint8/float image ``(H, W, C)`` (or ``(H, W)``) -> float32 ``(C, img_size, img_size)`` in [0, 1].

    Bilinear with antialiasing, so downscaling Push-T's 96 px (or a 680 px render) to 64 px does
    not alias thin edges; the result is clamped to [0, 1] (bilinear overshoot is tiny but real).
    A non-square frame is centre-cropped to its shorter side first: squashing it would change
    the aspect ratio of every object (a circle would become an ellipse) and padding would spend
    pixels on borders; envs put their subject in the middle of the view. The frame is copied
    into contiguous memory first: renderers hand out read-only or flipped views (dm_control's
    OpenGL frames have a negative row stride), which torch cannot wrap.
    """
    x = frame if isinstance(frame, Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(frame)).copy())
    if x.dim() == 2:
        x = x[..., None]
    if x.dim() != 3 or x.shape[-1] not in (1, 3, 4):
        raise ShapeError(f"an env frame must be (H, W, C) with C in 1/3/4; got {tuple(x.shape)}.")
    x = x[..., :3] if x.shape[-1] == 4 else x
    h, w = int(x.shape[0]), int(x.shape[1])
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[top:top + side, left:left + side]
    is_bytes = x.dtype == torch.uint8
    x = x.permute(2, 0, 1).float()
    if is_bytes or x.max() > 1.0:
        x = x / 255.0
    if x.shape[-2:] != (img_size, img_size):
        x = F.interpolate(x[None], size=(img_size, img_size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return x.clamp_(0.0, 1.0).contiguous()


def distance_success(scale: np.ndarray | float | None = None, tol: float = 0.1
                     ) -> Callable[[np.ndarray, np.ndarray], tuple[bool, float]]:
    """The generic goal test: ``distance = sqrt(mean(((state - goal) / scale)^2))``, success when
    ``distance < tol``.

    Why this default: an env that brings no test of its own still needs one for goal-reaching
    evaluation. Dividing by ``scale`` (the width of each state entry's range; 1 where unknown)
    makes entries of different units comparable, and the root-mean-square keeps ``tol`` meaning
    "within this fraction of the range, on average" whatever the state size. Set ``scale`` and
    ``tol`` in the adapter, or better give it a ``goal_success`` that says what the task means.
    """
    if not tol > 0:
        raise ConfigError(f"distance_success tol={tol!r}: use a positive number.")

    def success(state: np.ndarray, goal_state: np.ndarray) -> tuple[bool, float]:
        s, g = np.asarray(state, np.float64).reshape(-1), np.asarray(goal_state, np.float64).reshape(-1)
        sc = np.ones_like(s) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), s.shape)
        d = float(np.sqrt(np.mean(((s - g) / sc) ** 2))) if s.size else 0.0
        return d < tol, d

    return success


@dataclass
class Adapter:
    """How to read one kind of environment (all callables take the raw env and its last obs/info).

    ``pixels(env, obs) -> (H, W, C)``, ``proprio(env, obs, info) -> (P,)``,
    ``state(env, obs, info) -> (S,)``, ``success(info) -> bool``. ``low``/``high`` are the
    native action bounds (the env's Box) that [-1, 1] maps onto. ``goal(env, info)`` (optional)
    returns the goal of the current episode as ``{"frame": (H, W, C), "proprio", "state"}``.

    Goal-reaching evaluation (``jepalab plan`` / ``evaluate-planning`` on recorded episodes)
    needs two more, which belong to the environment rather than to the planner because only the
    environment knows what its state vector means:

    - ``reset_to(env, state (S,), goal_state (S,) | None) -> (raw_obs, info)`` puts the raw env
      in a recorded ``state`` (a vector as ``state`` returns it) with the goal of ``goal_state``.
    - ``goal_success(state (S,), goal_state (S,)) -> (success, distance)`` says whether a state
      reaches the recorded goal state; ``criterion`` describes it in one line. Without one,
      :func:`distance_success` with ``state_scale`` / ``success_tol`` is used.
    """

    pixels: Callable[[Any, Any], np.ndarray]
    proprio: Callable[[Any, Any, dict], np.ndarray]
    state: Callable[[Any, Any, dict], np.ndarray]
    success: Callable[[dict], bool]
    low: np.ndarray
    high: np.ndarray
    max_steps: int = 300
    goal: Callable[[Any, dict], dict[str, np.ndarray]] | None = None
    reset_to: Callable[[Any, np.ndarray, np.ndarray | None], tuple[Any, dict]] | None = None
    goal_success: Callable[[np.ndarray, np.ndarray], tuple[bool, float]] | None = None
    criterion: str = ""
    state_scale: np.ndarray | float | None = None
    success_tol: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)


def action_box(space: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a bounded continuous action space: every adapter scales its env's
    actions from [-1, 1] to this box, so one the planner cannot span is refused here."""
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
        raise ConfigError(f"env '{name}' has action space {space}; jepalab needs a bounded continuous Box "
                          "(discrete or unbounded actions cannot be normalized to [-1, 1]).")
    return np.asarray(low, np.float64), np.asarray(high, np.float64)


def _vec(x: np.ndarray | Tensor) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, np.float64).reshape(-1)


class Env:
    """A gymnasium-style env seen through jepalab's conventions (docs/design.md, world models).

    ``reset(seed=None) -> obs``; ``step(action (A,) in [-1, 1]) -> (obs, reward, done, info)``;
    ``obs = {"pixels": (C, H, W) float [0, 1], "proprio": (P,) float32, "state": (S,) float32}``.
    ``info`` is the raw env's info dict (last sub-step under frameskip) plus ``"is_success"``;
    ``last_info`` keeps it (and the reset info) for scripted policies.
    """

    def __init__(self, raw: Any, adapter: Adapter, name: str, img_size: int = 64, frameskip: int = 1,
                 frameskip_mode: str = "repeat", seed: int | None = None) -> None:
        if not isinstance(img_size, int) or img_size < 8:
            raise ConfigError(f"img_size={img_size!r}: use an int >= 8 (e.g. 64).")
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ConfigError(f"frameskip={frameskip!r}: use an int >= 1 (1 = every env step).")
        if frameskip_mode not in FRAMESKIP_MODES:
            raise ConfigError(f"frameskip_mode={frameskip_mode!r}: choose one of {FRAMESKIP_MODES}.")
        self.raw, self.adapter, self.name = raw, adapter, name
        self.img_size, self.frameskip, self.frameskip_mode = img_size, frameskip, frameskip_mode
        self.low = np.asarray(adapter.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(adapter.high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or not np.all(self.high > self.low):
            raise ConfigError(f"env '{name}' has an unbounded or empty action box ({self.low}, {self.high}); "
                              "jepalab needs a finite Box action space to normalize actions to [-1, 1].")
        self.base_action_dim = int(self.low.size)
        self.seed = seed
        self._episode = 0
        self._raw_obs: Any = None
        self.last_info: dict[str, Any] = {}
        self.terminated = self.truncated = False

    @property
    def action_dim(self) -> int:
        """Size of the normalized action this wrapper's ``step`` takes."""
        return self.base_action_dim * (self.frameskip if self.frameskip_mode == "block" else 1)

    @property
    def max_steps(self) -> int:
        """Suggested episode length in wrapper steps (the env's own limit divided by frameskip)."""
        return max(1, self.adapter.max_steps // self.frameskip)

    def to_native(self, action: np.ndarray | Tensor) -> np.ndarray:
        """Map a normalized action (A,) in [-1, 1] (clipped) to the env's Box."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def to_normalized(self, native: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_native`: env-Box action -> [-1, 1] (clipped), float32."""
        a = (np.asarray(native, dtype=np.float64).reshape(-1) - self.low) / (self.high - self.low) * 2 - 1
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def frame(self) -> np.ndarray:
        """The current raw frame ``(H, W, C)`` uint8, before resizing."""
        return np.asarray(self.adapter.pixels(self.raw, self._raw_obs))

    def _obs(self) -> dict[str, Tensor]:
        info = self.last_info
        return {
            "pixels": resize_frame(self.frame(), self.img_size),
            "proprio": torch.as_tensor(np.asarray(self.adapter.proprio(self.raw, self._raw_obs, info),
                                                  dtype=np.float32).reshape(-1)),
            "state": torch.as_tensor(np.asarray(self.adapter.state(self.raw, self._raw_obs, info),
                                                dtype=np.float32).reshape(-1)),
        }

    def reset(self, seed: int | None = None) -> dict[str, Tensor]:
        """Start an episode. Without ``seed``, episode k of a wrapper built with ``seed=s`` uses
        ``s + k`` so a sequence of resets is reproducible."""
        if seed is None and self.seed is not None:
            seed = self.seed + self._episode
        self._episode += 1
        self._raw_obs, info = self.raw.reset(seed=seed)
        self._set_info(info)
        self.terminated = self.truncated = False
        return self._obs()

    def reset_to(self, state: np.ndarray | Tensor, goal_state: np.ndarray | Tensor | None = None,
                 seed: int | None = None) -> dict[str, Tensor]:
        """Start an episode in a recorded ``state`` (the ``obs["state"]`` vector of a recorded
        step) with the goal of ``goal_state`` (same layout; ``None`` keeps the env's own goal).

        Why: goal-reaching evaluation (LeWorldModel / DINO-WM protocol) replays the start of a
        held-out episode. Bouncing: positions and velocities; Push-T: agent + block pose (the
        env's goal pose is fixed); Two-Room: agent position, target = the goal's agent position.
        Returns the observation of the restored state; ``ConfigError`` if the env cannot be set.
        """
        if self.adapter.reset_to is None:
            raise ConfigError(f"env '{self.name}' cannot be put in a recorded state: its adapter has no reset_to. "
                              "Give the Adapter a reset_to(env, state, goal_state) (docs/environments.md).")
        state = _vec(state)
        goal_state = None if goal_state is None else _vec(goal_state)
        if not np.all(np.isfinite(state)) or (goal_state is not None and not np.all(np.isfinite(goal_state))):
            raise ShapeError(f"env '{self.name}': reset_to needs finite state vectors, got {state} / {goal_state}.")
        self.reset(seed)  # a fresh episode (seeded as reset()), then overwrite its state
        self._raw_obs, info = self.adapter.reset_to(self.raw, state, goal_state)
        self._set_info(info)
        self.terminated = self.truncated = False
        obs = self._obs()
        if obs["state"].numel() != state.size:
            raise ShapeError(f"env '{self.name}' was asked to restore a state of {state.size} numbers but its "
                             f"state has {obs['state'].numel()}: the recording comes from another env or adapter "
                             "version, or the adapter's reset_to and state disagree.")
        return obs

    def check_goal_reaching(self, state_dim: int | None = None) -> None:
        """Fail now, with a sentence, if this env cannot replay recorded goals: its adapter has no
        ``reset_to``, or its state has another size than the recording's ``state_dim``. Called by
        ``plan`` / ``evaluate-planning`` before a model is run."""
        if self.adapter.reset_to is None:
            raise ConfigError(f"env '{self.name}' cannot be put in a recorded state: its adapter has no reset_to, "
                              "which goal-reaching evaluation needs. Give the Adapter a "
                              "reset_to(env, state, goal_state) (docs/environments.md).")
        if state_dim is not None:
            self.reset()
            n = int(np.asarray(self.adapter.state(self.raw, self._raw_obs, self.last_info)).size)
            if n != int(state_dim):
                raise ShapeError(f"env '{self.name}' has a state of {n} numbers but the recording's states have "
                                 f"{state_dim}: it was recorded with another env or adapter version; record it "
                                 "again with this one.")

    def goal_success(self, state: np.ndarray | Tensor, goal_state: np.ndarray | Tensor) -> tuple[bool, float]:
        """``(success, distance)`` of ``state`` to a recorded ``goal_state`` by the adapter's test
        (:attr:`criterion`); the generic :func:`distance_success` when the adapter has none."""
        s, g = _vec(state), _vec(goal_state)
        if s.size != g.size:
            raise ShapeError(f"env '{self.name}': a state of {s.size} numbers cannot be compared with a goal "
                             f"state of {g.size}.")
        test = self.adapter.goal_success or distance_success(self.adapter.state_scale, self.adapter.success_tol)
        ok, dist = test(s, g)
        return bool(ok), float(dist)

    @property
    def criterion(self) -> str:
        """One line saying what :meth:`goal_success` tests."""
        if self.adapter.goal_success is not None:
            return self.adapter.criterion or "the adapter's goal_success"
        return (f"normalized state distance (RMS of (state - goal) / scale) below {self.adapter.success_tol:g}"
                + (f" ({self.adapter.criterion})" if self.adapter.criterion else ""))

    def _set_info(self, info: dict[str, Any]) -> None:
        self.last_info = dict(info)
        self.last_info["is_success"] = bool(self.adapter.success(self.last_info))

    def gym_step(self, action: np.ndarray | Tensor) -> tuple[dict[str, Tensor], float, bool, bool, dict[str, Any]]:
        """Apply a normalized action; gymnasium's ``(obs, summed reward, terminated, truncated, info)``.

        ``terminated`` (the task ended: reached, failed) and ``truncated`` (a time limit cut the
        episode) stay apart, as gymnasium defines them: a planner may stop at either, but value
        targets and dataset statistics must not treat a time limit as an end of the task.
        """
        a = np.asarray(action.detach().cpu() if isinstance(action, Tensor) else action, dtype=np.float64).reshape(-1)
        if a.size != self.action_dim:
            raise ShapeError(f"env '{self.name}' takes actions of size {self.action_dim}; got {a.size}.")
        if not np.all(np.isfinite(a)):
            raise ShapeError(f"env '{self.name}' got a non-finite action {a}; check the policy/planner.")
        chunks = (a.reshape(self.frameskip, self.base_action_dim) if self.frameskip_mode == "block"
                  else [a] * self.frameskip)
        total, terminated, truncated, info = 0.0, False, False, {}
        for chunk in chunks:
            self._raw_obs, reward, terminated, truncated, info = self.raw.step(self.to_native(chunk))
            total += float(reward)
            terminated, truncated = bool(terminated), bool(truncated)
            if terminated or truncated:
                break
        self._set_info(info)
        self.terminated, self.truncated = terminated, truncated
        self.last_info["terminated"], self.last_info["truncated"] = terminated, truncated
        return self._obs(), total, terminated, truncated, self.last_info

    def step(self, action: np.ndarray | Tensor) -> tuple[dict[str, Tensor], float, bool, dict[str, Any]]:
        """Apply a normalized action; returns ``(obs, summed reward, done, info)`` with
        ``done = terminated or truncated`` (both kept in ``info`` and on ``self``); see
        :meth:`gym_step` for gymnasium's five values."""
        obs, reward, terminated, truncated, info = self.gym_step(action)
        return obs, reward, terminated or truncated, info

    def goal_obs(self) -> dict[str, Tensor] | None:
        """The current episode's goal as an observation (pixels at ``img_size``, proprio, state),
        e.g. the goal image a planner's cost compares against; ``None`` if the env has no goal.
        Push-T: the T in its goal pose, agent where it is now; Two-Room: the agent at the target;
        bouncing: ball 0 at its goal, at rest. Call after ``reset``."""
        if self.adapter.goal is None:
            return None
        g = self.adapter.goal(self.raw, self.last_info)
        return {"pixels": resize_frame(g["frame"], self.img_size),
                "proprio": torch.as_tensor(np.asarray(g["proprio"], np.float32).reshape(-1)),
                "state": torch.as_tensor(np.asarray(g["state"], np.float32).reshape(-1))}

    def success(self, info: dict[str, Any] | None = None) -> bool:
        """Whether ``info`` (default: the last step's) reports task success."""
        return bool(self.adapter.success(self.last_info if info is None else info))

    def close(self) -> None:
        """Release the raw env (windows, physics spaces)."""
        for raw in (self.raw, self.adapter.extra.get("goal_env")):
            close = getattr(raw, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        return (f"Env({self.name!r}, img_size={self.img_size}, action_dim={self.action_dim}, "
                f"frameskip={self.frameskip}/{self.frameskip_mode})")
