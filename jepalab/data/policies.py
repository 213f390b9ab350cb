"""Policies that drive environments while trajectories are recorded: random and scripted.

Why several: a world model only learns the dynamics it sees. Uniform random actions cover the
action space but, in Push-T, rarely touch the block; a scripted, noisy "expert-like" controller
pushes the T toward its goal and so shows contact dynamics; mixing both (as the LeWorldModel and
DINO-WM datasets do with their random/expert splits) gives diverse and meaningful trajectories.

A policy is any object with ``reset(env, seed)`` and ``act(obs, info) -> (A,) float32 in [-1, 1]``
(``obs`` and ``info`` as returned by :class:`jepalab.data.envs.Env`; ``info`` of the reset is
``env.last_info``). Every policy draws its noise from a numpy generator seeded in ``reset``, so an
episode is a pure function of (env seed, policy seed). The generator is :func:`policy_rng`, a
stream of its own: recording passes the same number to ``env.reset`` and ``policy.reset``, and a
plain ``default_rng(seed)`` would repeat the env's draws (on Pendulum the first random torque was
the initial angle divided by pi).
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol

import numpy as np

from jepalab.errors import ConfigError


#: spawn key that separates policy noise from an env seeded with the same number
_POLICY_STREAM = 0x9E3779B9


def policy_rng(seed: int) -> np.random.Generator:
    """A generator for policy noise, independent of ``np.random.default_rng(seed)`` (which is how
    gymnasium and the built-in envs seed their resets)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_POLICY_STREAM,)))


class Policy(Protocol):
    def reset(self, env: Any, seed: int) -> None: ...
    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray: ...


class RandomPolicy:
    """Uniform actions in [-1, 1], each held for ``repeat`` steps (held actions move further than
    i.i.d. jitter, so random episodes still visit the whole arena)."""

    def __init__(self, repeat: int = 1) -> None:
        if repeat < 1:
            raise ConfigError(f"RandomPolicy repeat={repeat}: use an int >= 1.")
        self.repeat = repeat
        self.rng = np.random.default_rng(0)
        self.dim, self._t, self._a = 1, 0, np.zeros(1, np.float32)

    def reset(self, env: Any, seed: int) -> None:
        self.rng, self.dim, self._t = policy_rng(seed), int(env.action_dim), 0

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        if self._t % self.repeat == 0:
            self._a = self.rng.uniform(-1.0, 1.0, self.dim).astype(np.float32)
        self._t += 1
        return self._a.copy()


def _toward(pos: np.ndarray, target: np.ndarray, max_step: float) -> np.ndarray:
    """A point at most ``max_step`` from ``pos`` on the segment to ``target``."""
    d = target - pos
    n = float(np.linalg.norm(d))
    return target if n <= max_step else pos + d * (max_step / n)


class PushTExpert:
    """Noisy heuristic pusher for Push-T (actions are the agent's target position, 0..512 px).

    Works on the T's centre of mass ``c`` (45 px along the T's stem from its body origin, from
    gym-pusht's geometry: a 120x30 bar over a 30x90 stem). Each step, ``u`` is the unit vector from
    ``c`` to where ``c`` sits in the goal pose; the contact lane is offset sideways by
    ``-gain * angle_error`` so the push also turns the T (a force along ``u`` applied ``l`` to the
    left of ``c`` has torque ``-l``). Behind the block and in the lane: push along ``u``; behind
    but off the lane: slide into it; beside or in front: go around it. Once the position is
    reached, push along the bar off-centre to fix the angle. Targets move at most ``max_step`` px
    per step; Gaussian noise (``noise`` px) and a per-episode random lane offset diversify episodes.
    Under frameskip "block" the same target is repeated over the block.
    """

    GOAL = np.array([256.0, 256.0, np.pi / 4])
    COM = 45.0  # px from the body origin along the stem (local +y)

    def __init__(self, noise: float = 6.0, max_step: float = 30.0, behind: float = 90.0, gain: float = 20.0) -> None:
        self.noise, self.max_step, self.behind, self.gain = noise, max_step, behind, gain
        self.rng = np.random.default_rng(0)
        self.env: Any = None
        self._offset = 0.0

    def reset(self, env: Any, seed: int) -> None:
        self.env, self.rng = env, policy_rng(seed)
        self._offset = float(self.rng.uniform(-8.0, 8.0))

    def _com(self, pose: np.ndarray) -> np.ndarray:
        return pose[:2] + self.COM * np.array([-np.sin(pose[2]), np.cos(pose[2])])

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        state = np.asarray(obs["state"], dtype=np.float64)
        agent, pose = state[:2], state[2:5]
        goal = np.asarray(info.get("goal_pose", self.GOAL), dtype=np.float64)
        com = self._com(pose)
        to_goal = self._com(goal) - com
        dist = float(np.linalg.norm(to_goal))
        ang_err = float((goal[2] - pose[2] + np.pi) % (2 * np.pi) - np.pi)
        step = self.max_step
        if dist > 20.0 or (dist > 5.0 and abs(ang_err) < 0.15):
            u = to_goal / dist
            lateral = float(np.clip(-self.gain * ang_err, -30.0, 30.0)) + self._offset
            step = self.max_step if dist > 20.0 else 6.0
        else:  # nearly in place: turn it with slow off-centre pushes along the bar
            u = np.array([np.cos(pose[2]), np.sin(pose[2])]) * (1.0 if ang_err < 0 else -1.0)
            lateral, step = 45.0, 8.0
            if abs(ang_err) < 0.15:  # done: back off
                away = agent - com
                return self._action(agent + 20.0 * away / max(float(np.linalg.norm(away)), 1e-6))
        side = np.array([-u[1], u[0]])
        rel = agent - com
        along, perp = float(rel @ u), float(rel @ side) - lateral
        if along < -10.0 and abs(perp) < 20.0:
            target = agent + step * u - 0.5 * perp * side  # push, staying in the lane
        elif along < -10.0:
            target = com - self.behind * u + lateral * side  # slide into the lane
        else:  # beside or in front of the block: go around it, not through it
            s = 1.0 if float(rel @ side) >= 0 else -1.0
            target = com + s * 1.3 * self.behind * side - self.behind * u
        return self._action(_toward(agent, target, self.max_step))

    def _action(self, target: np.ndarray) -> np.ndarray:
        target = np.clip(target + self.rng.normal(0.0, self.noise, 2), 0.0, 512.0)
        a = self.env.to_normalized(target) if self.env is not None else target / 256 - 1
        return np.resize(a.astype(np.float32), int(self.env.action_dim) if self.env is not None else 2)


class TwoRoomExpert:
    """Heuristic navigator for Two-Room: head for the target, through the door if the target is in
    the other room (door centres are in the state vector), with Gaussian action noise."""

    def __init__(self, noise: float = 0.2, wall: float = 112.0, reach: float = 10.0) -> None:
        self.noise, self.wall, self.reach = noise, wall, reach
        self.rng = np.random.default_rng(0)
        self.dim = 2
        self._via_door = False

    def reset(self, env: Any, seed: int) -> None:
        self.rng, self.dim, self._via_door = policy_rng(seed), int(env.action_dim), False

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        s = np.asarray(obs["state"], dtype=np.float64)
        agent, target, doors = s[:2], s[2:4], s[4:].reshape(-1, 2)
        doors = doors[np.any(doors != 0, axis=1)]
        target_pt = target
        if len(doors):
            axis = 0 if np.allclose(doors[:, 0], self.wall) else 1  # coordinate that crosses the wall
            if (agent[axis] > self.wall) != (target[axis] > self.wall):
                door = doors[np.argmin(np.linalg.norm(doors - agent, axis=1))]
                off = np.zeros(2)
                off[axis] = self.reach if target[axis] > self.wall else -self.reach
                # line up with the door first, then cross it
                lined = abs(agent[1 - axis] - door[1 - axis]) < 4.0
                target_pt = door + off if lined else door - off
        d = target_pt - agent
        a = d / max(float(np.abs(d).max()), 1e-6)
        a = a + self.rng.normal(0.0, self.noise, 2)
        return np.resize(np.clip(a, -1.0, 1.0).astype(np.float32), self.dim)


class GoalSeeker:
    """Bouncing world: push ball 0 toward the goal from ``info`` (pushes = velocity changes), with
    noise; a meaningful counterpart to random pushes."""

    def __init__(self, noise: float = 0.3, gain: float = 0.15) -> None:
        self.noise, self.gain = noise, gain
        self.rng = np.random.default_rng(0)
        self.dim = 2

    def reset(self, env: Any, seed: int) -> None:
        self.rng, self.dim = policy_rng(seed), int(env.action_dim)

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        s = np.asarray(obs["state"], dtype=np.float64)
        k = len(s) // 4
        pos, vel = s[:2], s[2 * k: 2 * k + 2]
        goal = np.asarray(info.get("goal", pos), dtype=np.float64)
        a = self.gain * (goal - pos) - 0.5 * vel  # PD toward the goal
        a = np.clip(a + self.rng.normal(0.0, self.noise, 2), -1.0, 1.0).astype(np.float32)
        return np.resize(a, self.dim)  # repeated over a frameskip action block


#: (env name or "*", policy name) -> factory
_SCRIPTED = {"pusht": PushTExpert, "tworoom": TwoRoomExpert, "bouncing": GoalSeeker}
POLICIES = ("random", "expert")


def make_policy(name: str, env_name: str, **kwargs: Any) -> Policy:
    """``"random"`` (any env; ``repeat=`` holds actions) or ``"expert"`` (the scripted controller
    of pusht, tworoom or bouncing)."""
    if name == "random":
        return RandomPolicy(**kwargs)
    if name == "expert":
        if env_name not in _SCRIPTED:
            raise ConfigError(f"No scripted 'expert' policy for env '{env_name}'; use --policy random, or one "
                              f"of the envs with an expert: {', '.join(_SCRIPTED)}.")
        return _SCRIPTED[env_name](**kwargs)
    close = difflib.get_close_matches(str(name), POLICIES, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"Unknown policy '{name}'. Choose one of {', '.join(POLICIES)}.{hint}")


__all__ = ["policy_rng", "Policy", "RandomPolicy", "PushTExpert", "TwoRoomExpert", "GoalSeeker", "POLICIES", "make_policy"]
