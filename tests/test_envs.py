"""Environment wrapper, adapters and scripted policies (jepalab.data.envs, jepalab.data.policies).

The bouncing env needs nothing optional; Push-T, Two-Room and gymnasium tests skip cleanly when
their packages are absent (CI installs only ".[dev]")."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.data.envs import Adapter, Env, make_env, resize_frame
from jepalab.data.policies import GoalSeeker, RandomPolicy, make_policy
from jepalab.errors import ConfigError, MissingDependencyError, ShapeError

torch.set_num_threads(1)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


# ------------------------------------------------------------------ bouncing env through the wrapper
def test_bouncing_obs_match_world_render_and_dynamics() -> None:
    env = make_env("bouncing", img_size=32, seed=3)
    obs = env.reset()
    assert obs["pixels"].shape == (3, 32, 32) and obs["pixels"].dtype == torch.float32
    assert obs["state"].shape == (4,) and obs["proprio"].shape == (2,)
    world = BouncingBalls(BouncingConfig(variant="actions", channels=3, img_size=64))
    # the wrapper's 32 px frame is the world's 64 px rendering of the same state, downscaled
    ref = resize_frame(env.raw.render(), 32)
    assert torch.allclose(obs["pixels"], ref)
    assert torch.allclose(world.render(obs["state"][:2].view(1, 1, 2))[0],
                          torch.from_numpy(env.raw.render()).permute(2, 0, 1).float() / 255, atol=1 / 255 + 1e-6)
    state = obs["state"]
    actions = torch.tensor([[0.5, -1.0], [1.0, 1.0], [-0.3, 0.2]])
    expected = world.rollout(state[None], actions[None])[0]  # (4, 4) incl. start
    for t, a in enumerate(actions):
        obs, reward, done, info = env.step(a)
        assert torch.allclose(obs["state"], expected[t + 1], atol=1e-5)
        assert reward == pytest.approx(-info["distance"]) and not done
    assert env.success(info) == info["is_success"]
    assert 0.0 <= float(obs["pixels"].min()) and float(obs["pixels"].max()) <= 1.0


def test_bouncing_reset_is_seeded_and_episodes_differ() -> None:
    a, b = make_env("bouncing", seed=7), make_env("bouncing", seed=7)
    s1, s2 = a.reset()["state"], b.reset()["state"]
    assert torch.equal(s1, s2)
    assert not torch.equal(a.reset()["state"], s1)  # episode 2 uses seed 7 + 1
    assert torch.equal(a.reset(seed=7)["state"], s1)


def test_bouncing_episode_truncates_at_max_steps() -> None:
    env = make_env("bouncing", seed=0, max_steps=5)
    env.reset()
    dones = [env.step(np.zeros(2))[2] for _ in range(5)]
    assert dones == [False] * 4 + [True] and env.max_steps == 5


# ------------------------------------------------------------------ the wrapper on a user's own env
class _BoxEnv:
    """A user's env: 2-D actions in [0, 512] x [-2, 2], 10x12 RGB frames, logs every raw action."""

    def __init__(self) -> None:
        self.actions: list[np.ndarray] = []

    def reset(self, seed=None):
        self.actions.clear()
        return np.zeros(3, np.float32), {"is_success": False}

    def step(self, a):
        self.actions.append(np.asarray(a))
        done = len(self.actions) >= 6
        return np.full(3, len(self.actions), np.float32), 1.0, done, False, {"is_success": done}

    def render(self):
        return np.full((10, 12, 3), 255, np.uint8)


def _wrap(**kw) -> Env:
    raw = _BoxEnv()
    adapter = Adapter(pixels=lambda e, o: e.render(), proprio=lambda e, o, i: o[:1], state=lambda e, o, i: o,
                      success=lambda i: i["is_success"], low=np.array([0.0, -2.0]), high=np.array([512.0, 2.0]))
    return Env(raw, adapter, "box", img_size=8, **kw)


def test_actions_are_normalized_to_the_env_box() -> None:
    env = _wrap()
    env.reset()
    env.step(np.array([-1.0, 1.0]))
    env.step(np.array([0.0, 0.5]))
    env.step(np.array([5.0, -9.0]))  # clipped to the box
    got = np.stack(env.raw.actions)
    np.testing.assert_allclose(got, [[0, 2], [256, 1], [512, -2]], atol=1e-4)
    np.testing.assert_allclose(env.to_normalized(env.to_native(np.array([0.3, -0.7]))), [0.3, -0.7], atol=1e-6)
    assert env.reset()["pixels"].shape == (3, 8, 8)  # 10x12 frame resized to img_size


def test_frameskip_repeat_and_block() -> None:
    env = _wrap(frameskip=3)
    env.reset()
    obs, reward, done, info = env.step(np.array([1.0, 0.0]))
    assert len(env.raw.actions) == 3 and reward == 3.0 and env.action_dim == 2
    assert obs["state"][0] == 3
    env = _wrap(frameskip=3, frameskip_mode="block")
    assert env.action_dim == 6
    env.reset()
    env.step(np.array([-1.0, 0, 0.0, 0, 1.0, 0]))
    np.testing.assert_allclose([a[0] for a in env.raw.actions], [0, 256, 512], atol=1e-4)
    # an episode ending inside a block stops there and reports done
    obs, _, done, info = env.step(np.zeros(6))
    assert done and len(env.raw.actions) == 6 and env.success(info)


def test_wrapper_rejects_bad_actions_and_settings() -> None:
    env = _wrap()
    env.reset()
    with pytest.raises(ShapeError, match="actions of size 2"):
        env.step(np.zeros(3))
    with pytest.raises(ShapeError, match="non-finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ConfigError, match="frameskip"):
        _wrap(frameskip=0)
    with pytest.raises(ConfigError, match="frameskip_mode"):
        _wrap(frameskip_mode="skip")


def test_resize_frame() -> None:
    frame = np.zeros((96, 96, 3), np.uint8)
    frame[:, ::2] = 255  # 1-px stripes: antialiasing averages them instead of aliasing
    out = resize_frame(frame, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert 0.4 < float(out.mean()) < 0.6 and float(out.std()) < 0.1
    assert torch.equal(resize_frame(np.full((4, 4), 255, np.uint8), 4), torch.ones(1, 4, 4))
    with pytest.raises(ShapeError):
        resize_frame(np.zeros((4, 4, 5), np.uint8), 4)


# ------------------------------------------------------------------ names and missing packages
def test_unknown_env_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'pusht'"):
        make_env("push")
    with pytest.raises(ConfigError, match="Unknown environment"):
        make_env("carpole")


def test_missing_pusht_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # makes `import gym_pusht` fail
    with pytest.raises(MissingDependencyError, match="pip install gym-pusht"):
        make_env("pusht")


def test_missing_tworoom_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gymnasium")
    for name in [m for m in sys.modules if m == "stable_worldmodel" or m.startswith("stable_worldmodel.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stable_worldmodel", None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps stable-worldmodel"):
        make_env("tworoom")


# ------------------------------------------------------------------ policies
def test_policies_by_name() -> None:
    assert isinstance(make_policy("random", "pusht"), RandomPolicy)
    with pytest.raises(ConfigError, match="Did you mean 'random'"):
        make_policy("randm", "bouncing")
    with pytest.raises(ConfigError, match="No scripted 'expert'"):
        make_policy("expert", "Pendulum-v1")


def test_random_policy_is_seeded_bounded_and_holds_actions() -> None:
    env = make_env("bouncing")
    p = RandomPolicy(repeat=3)
    p.reset(env, 5)
    a = np.stack([p.act({}, {}) for _ in range(6)])
    p.reset(env, 5)
    b = np.stack([p.act({}, {}) for _ in range(6)])
    assert np.array_equal(a, b) and np.all(np.abs(a) <= 1)
    assert np.array_equal(a[0], a[2]) and not np.array_equal(a[2], a[3])


def _success_rate(env: Env, policy, episodes: int, steps: int) -> float:
    wins = 0
    for ep in range(episodes):
        obs = env.reset(seed=100 + ep)
        policy.reset(env, ep)
        info = env.last_info
        for _ in range(steps):
            obs, _, done, info = env.step(policy.act(obs, info))
            if env.success(info) or done:
                break
        wins += env.success(info)
    return wins / episodes


def test_bouncing_goal_seeker_beats_random() -> None:
    env = make_env("bouncing", img_size=16)
    seeker = _success_rate(env, GoalSeeker(), 10, 40)
    rand = _success_rate(env, RandomPolicy(), 10, 40)
    assert seeker >= 0.8 and seeker > rand + 0.3, (seeker, rand)


# ------------------------------------------------------------------ real third-party envs
def test_pusht_steps_and_renders_headless() -> None:
    pytest.importorskip("gym_pusht")
    env = make_env("pusht", img_size=64, seed=0)
    obs = env.reset()
    assert obs["pixels"].shape == (3, 64, 64) and obs["proprio"].shape == (2,) and obs["state"].shape == (5,)
    assert env.action_dim == 2 and 0.0 <= float(obs["pixels"].min()) < float(obs["pixels"].max()) <= 1.0
    assert torch.allclose(obs["proprio"], obs["state"][:2])
    # action (0.5, -0.5) = target (384, 128): the agent (PD-controlled) moves toward it
    start = obs["proprio"].clone()
    for _ in range(10):
        obs, reward, done, info = env.step(np.array([0.5, -0.5]))
    target = torch.tensor([384.0, 128.0])
    assert (obs["proprio"] - target).norm() < (start - target).norm() - 20
    assert "coverage" in info and env.success(info) is False and not done
    frames_differ = (obs["pixels"] - env.reset(seed=0)["pixels"]).abs().max()
    assert frames_differ > 0.1  # the rendered agent moved


def test_pusht_expert_pushes_the_block_toward_the_goal() -> None:
    pytest.importorskip("gym_pusht")
    env = make_env("pusht", img_size=16)
    expert = make_policy("expert", "pusht")
    gains, coverage = [], []
    for ep in (0, 1):
        obs = env.reset(seed=1000 + ep)
        expert.reset(env, ep)
        info = env.last_info
        c0 = expert._com(obs["state"][2:5].numpy().astype(float))
        goal = expert._com(expert.GOAL)
        best = 0.0
        for _ in range(100):
            obs, _, _, info = env.step(expert.act(obs, info))
            best = max(best, info["coverage"])
        c1 = expert._com(obs["state"][2:5].numpy().astype(float))
        gains.append(np.linalg.norm(c0 - goal) - np.linalg.norm(c1 - goal))
        coverage.append(best)
    assert min(gains) > 30 and max(coverage) > 0.4, (gains, coverage)


def test_tworoom_steps_renders_and_expert_reaches_target() -> None:
    pytest.importorskip("gymnasium")
    try:
        env = make_env("tworoom", img_size=32, seed=0)
    except MissingDependencyError as e:
        pytest.skip(f"stable-worldmodel unavailable: {e}")
    obs = env.reset()
    assert obs["pixels"].shape == (3, 32, 32) and obs["state"].shape == (10,) and obs["proprio"].shape == (2,)
    rate = _success_rate(env, make_policy("expert", "tworoom"), 4, 80)
    rand = _success_rate(env, RandomPolicy(), 3, 60)
    assert rate >= 0.5 and rate > rand, (rate, rand)


def test_any_gymnasium_id_through_the_wrapper() -> None:
    pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    env = make_env("Pendulum-v1", img_size=24, seed=1)
    obs = env.reset()
    assert env.action_dim == 1 and obs["pixels"].shape == (3, 24, 24) and obs["state"].shape == (2,)  # theta, theta_dot
    np.testing.assert_allclose(env.to_native(np.array([1.0])), [2.0])
    obs2, reward, done, info = env.step(np.array([1.0]))
    assert np.isfinite(reward) and not torch.equal(obs["state"], obs2["state"])


def test_wrap_your_own_gymnasium_env() -> None:
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    from jepalab.data.envs import wrap_env

    env = wrap_env(gym.make("MountainCarContinuous-v0", render_mode="rgb_array"), img_size=20, seed=0)
    obs = env.reset()
    assert obs["pixels"].shape == (3, 20, 20) and env.action_dim == 1 and obs["state"].shape == (2,)
    obs, *_ = env.step(np.array([1.0]))
    assert torch.isfinite(obs["state"]).all()
    with pytest.raises(ConfigError, match="reset/step/action_space"):
        wrap_env(object())


def test_goal_obs_bouncing() -> None:
    env = make_env("bouncing", img_size=64, seed=2)
    obs = env.reset()
    goal = env.goal_obs()
    g = env.last_info["goal"]
    assert torch.allclose(goal["proprio"], torch.as_tensor(g)) and torch.equal(goal["state"][2:], torch.zeros(2))
    world = BouncingBalls(BouncingConfig(variant="actions", channels=3))
    assert torch.allclose(goal["pixels"], world.render(torch.as_tensor(g).view(1, 2)), atol=1 / 255 + 1e-6)
    assert not torch.equal(goal["pixels"], obs["pixels"])
    assert _wrap().goal_obs() is None  # an env without a goal


def test_goal_obs_pusht_leaves_the_live_env_alone() -> None:
    pytest.importorskip("gym_pusht")
    a, b = make_env("pusht", img_size=32, seed=4), make_env("pusht", img_size=32, seed=4)
    oa, ob = a.reset(), b.reset()
    goal = a.goal_obs()
    np.testing.assert_allclose(goal["state"][2:].numpy(), a.last_info["goal_pose"], atol=1e-4)
    assert torch.equal(goal["proprio"], oa["proprio"])  # the agent stays where it is
    for _ in range(3):
        oa, *_ = a.step(np.array([0.2, 0.1]))
        ob, *_ = b.step(np.array([0.2, 0.1]))
    assert torch.equal(oa["state"], ob["state"]) and torch.equal(oa["pixels"], ob["pixels"])
    a.close()


def test_goal_obs_tworoom() -> None:
    pytest.importorskip("gymnasium")
    try:
        env = make_env("tworoom", img_size=32, seed=1)
    except MissingDependencyError as e:
        pytest.skip(f"stable-worldmodel unavailable: {e}")
    obs = env.reset()
    goal = env.goal_obs()
    target = torch.as_tensor(env.last_info["goal_state"])
    assert torch.allclose(goal["proprio"], target) and torch.allclose(goal["state"][2:], obs["state"][2:])
    assert goal["pixels"].shape == (3, 32, 32) and not torch.equal(goal["pixels"], obs["pixels"])
