"""``Env.reset_to``: start an episode in a recorded state (goal-reaching evaluation, issue 4).

Each test records a few steps, restores an earlier state through the public API and replays the
recorded actions: the states must match the recording, so a planner evaluated from a restored
start sees the same world the dataset recorded. Push-T / Two-Room skip when absent."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from jepalab.data.envs import make_env
from jepalab.errors import ConfigError, MissingDependencyError, ShapeError

torch.set_num_threads(1)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _record(env, actions):
    states, frames = [env.reset(seed=3)["state"].numpy().copy()], []
    frames.append(env.frame().copy())
    for a in actions:
        obs, *_ = env.step(a)
        states.append(obs["state"].numpy().copy())
        frames.append(env.frame().copy())
    return states, frames


def _replay_matches(env, actions, states, start, atol, dims=None):
    goal = states[-1]
    obs = env.reset_to(states[start], goal)
    n = dims or len(states[start])
    np.testing.assert_allclose(obs["state"].numpy()[:n], states[start][:n], atol=atol)
    for a in actions[start:]:
        obs, *_ = env.step(a)
    return obs


def test_bouncing_reset_to_replays_and_sets_the_goal() -> None:
    env = make_env("bouncing", img_size=32, seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 2)).astype(np.float32)
    states, frames = _record(env, actions)
    obs = _replay_matches(env, actions, states, 4, 1e-5)
    np.testing.assert_allclose(obs["state"].numpy(), states[-1], atol=1e-4)
    np.testing.assert_allclose(env.last_info["goal"], states[-1][:2], atol=1e-5)  # goal = ball 0 there
    assert env.last_info["is_success"] and env.success()
    env.reset_to(states[0])  # no goal: the env keeps its own
    assert np.array_equal(env.frame(), frames[0])


def test_reset_to_rejects_bad_states_and_envs_without_it() -> None:
    env = make_env("bouncing", img_size=16, seed=0)
    with pytest.raises(ShapeError, match="4 x num_balls"):
        env.reset_to(np.zeros(3))
    with pytest.raises(ShapeError, match="finite"):
        env.reset_to(np.full(4, np.nan))
    env.adapter.reset_to = None
    with pytest.raises(ConfigError, match="recorded state"):
        env.reset_to(np.zeros(4))


def test_pusht_reset_to_restores_agent_and_block_pose() -> None:
    pytest.importorskip("gym_pusht")
    env = make_env("pusht", img_size=32, seed=0)
    rng = np.random.default_rng(1)
    actions = np.clip(rng.normal(0, 0.3, (15, 2)), -1, 1).astype(np.float32)
    states, frames = _record(env, actions)
    obs = env.reset_to(states[5], states[-1])
    np.testing.assert_allclose(obs["state"].numpy(), states[5], atol=1e-3)  # angle included
    assert np.abs(env.frame().astype(int) - frames[5].astype(int)).mean() < 1.0
    env.close()


def test_tworoom_reset_to_puts_the_target_at_the_goal() -> None:
    pytest.importorskip("gymnasium")
    try:
        env = make_env("tworoom", img_size=32, seed=0)
    except MissingDependencyError as e:
        pytest.skip(f"stable-worldmodel unavailable: {e}")
    actions = np.tile(np.array([[0.5, 0.3]], np.float32), (10, 1))
    states, frames = _record(env, actions)
    obs = _replay_matches(env, actions, states, 2, 1e-4, dims=2)  # target moved to the goal
    np.testing.assert_allclose(obs["state"].numpy()[:2], states[-1][:2], atol=1e-3)
    np.testing.assert_allclose(env.last_info["goal_state"], states[-1][:2], atol=1e-4)  # target = goal agent pos
    assert env.success()  # at the goal: the env's own criterion fires
    env.reset_to(states[0])  # no goal: the target recorded in the state
    np.testing.assert_allclose(env.last_info["goal_state"], states[0][2:4], atol=1e-4)
    assert np.array_equal(env.frame(), frames[0])
