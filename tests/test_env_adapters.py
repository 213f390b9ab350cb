"""Environment adapters own restore-to-state and the goal test; frames, policy noise, gymnasium API.

Round trips: ``reset_to(recorded state)`` reproduces the recorded frame (bouncing always; Pendulum
with gymnasium + pygame; dm_control reacher with the ``dmc`` extra, skipped when absent). Goal
tests on hand-made states. Flipped (negative-stride) and non-square frames. Policy noise apart from
the reset's draws. ``terminated`` / ``truncated`` apart, a real ``gymnasium.Env`` view, and parallel
recording that writes the serial run's arrays.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from jepalab.data.envs import Adapter, Env, make_env, resize_frame
from jepalab.data.envs.base import distance_success
from jepalab.data.envs.external import pusht_goal_success, tworoom_goal_success
from jepalab.data.policies import RandomPolicy, policy_rng
from jepalab.errors import ConfigError

torch.set_num_threads(1)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")


def _round_trip(env: Env, steps: int = 8, start: int = 5) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Record ``steps`` random steps, restore the state of step ``start``; (recorded, restored) frames
    and the recorded states."""
    obs = env.reset(seed=3)
    rng = np.random.default_rng(0)
    states, frames = [obs["state"].numpy().copy()], [env.frame().copy()]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(-1, 1, env.action_dim))
        states.append(obs["state"].numpy().copy())
        frames.append(env.frame().copy())
    obs = env.reset_to(states[start], states[-1])
    np.testing.assert_allclose(obs["state"].numpy(), states[start], atol=1e-5)
    return frames[start], env.frame(), states


def test_bouncing_round_trip_reproduces_the_frame() -> None:
    recorded, restored, _ = _round_trip(make_env("bouncing", img_size=32, seed=0))
    assert np.array_equal(recorded, restored)


def test_pendulum_round_trip_reproduces_the_frame() -> None:
    pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    env = make_env("Pendulum-v1", img_size=32, seed=0)
    recorded, restored, _ = _round_trip(env)
    assert np.array_equal(recorded, restored)  # no torque arrow: the frame is a function of the state
    env.close()


def test_reacher_round_trip_reproduces_the_frame() -> None:
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    env = make_env("dm_control/reacher-easy-v0", img_size=32, seed=0)
    recorded, restored, states = _round_trip(env)
    assert recorded.shape == (240, 320, 3)
    # states are stored as float32: a restored arm can sit ~1e-8 rad off, one grey level at an edge
    assert np.abs(recorded.astype(int) - restored.astype(int)).max() <= 2
    far = states[0].copy()
    far[6:8] = states[0][6:8] + np.array([0.03, 0.04])  # fingertip 0.05 away: on the radius, not inside
    assert env.goal_success(states[0], states[0]) == (True, 0.0)
    assert env.goal_success(far, states[0]) == (False, pytest.approx(0.05))
    env.close()


# ------------------------------------------------------------------ goal tests on hand-made states
def test_bouncing_goal_test_is_two_radii_of_ball_0() -> None:
    env = make_env("bouncing", img_size=16, seed=0, radius=3.0)
    goal = np.array([20.0, 20.0, 0.0, 0.0])
    assert env.goal_success(np.array([25.9, 20.0, 5.0, 5.0]), goal) == (True, pytest.approx(5.9))
    assert not env.goal_success(np.array([26.1, 20.0, 0.0, 0.0]), goal)[0]  # 2 radii = 6 px
    assert "2 radii" in env.criterion


def test_pusht_goal_test_needs_position_and_angle() -> None:
    goal = np.array([100.0, 100.0, 200.0, 200.0, 0.1])
    assert pusht_goal_success(np.array([110.0, 100.0, 210.0, 200.0, 0.1 + math.pi / 10]), goal)[0]
    assert not pusht_goal_success(np.array([115.0, 100.0, 215.0, 200.0, 0.1]), goal)[0]  # 21.2 px
    assert not pusht_goal_success(np.array([100.0, 100.0, 200.0, 200.0, 0.1 + math.pi / 8]), goal)[0]
    assert pusht_goal_success(np.array([100.0, 100.0, 200.0, 200.0, 0.1 + 2 * math.pi - 0.2]), goal)[0]  # wraps


def test_tworoom_goal_test_is_16_px() -> None:
    goal = np.array([50.0, 50.0, 0, 0, 1, 1, 2, 2, 3, 3])
    assert tworoom_goal_success(np.array([60.0, 62.0, *goal[2:]]), goal) == (True, pytest.approx(math.hypot(10, 12)))
    assert not tworoom_goal_success(np.array([66.5, 50.0, *goal[2:]]), goal)[0]


def test_pendulum_goal_test_wraps_the_angle() -> None:
    from jepalab.data.envs.control import pendulum_goal_success

    assert pendulum_goal_success(np.array([math.pi - 0.04, 0.2]), np.array([-math.pi + 0.04, 0.0]))[0]
    assert pendulum_goal_success(np.array([4 * math.pi + 0.05, 0.0]), np.array([0.0, 0.0]))[0]  # 2 turns on
    assert not pendulum_goal_success(np.array([0.12, 0.0]), np.array([0.0, 0.0]))[0]
    assert not pendulum_goal_success(np.array([0.0, 0.35]), np.array([0.0, 0.0]))[0]


def test_generic_goal_test_is_a_normalized_distance() -> None:
    test = distance_success(scale=np.array([10.0, 1.0]), tol=0.1)
    assert test(np.array([0.9, 0.09]), np.zeros(2)) == (True, pytest.approx(0.09))  # RMS of (0.09, 0.09)
    assert not test(np.array([2.0, 0.0]), np.zeros(2))[0]  # RMS of (0.2, 0) = 0.141
    with pytest.raises(ConfigError):
        distance_success(tol=0.0)


def test_gym_id_without_adapter_gets_the_generic_test_from_its_bounds() -> None:
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    env = make_env("MountainCarContinuous-v0", img_size=16)
    assert gym.make("MountainCarContinuous-v0").observation_space.shape == (2,)
    # bounds: position [-1.2, 0.6], velocity [-0.07, 0.07] -> scale (1.8, 0.14)
    ok, d = env.goal_success(np.array([0.18, 0.0]), np.array([0.0, 0.0]))
    assert d == pytest.approx(math.sqrt(0.1**2 / 2)) and ok
    assert "normalized state distance" in env.criterion
    with pytest.raises(ConfigError, match="no reset_to"):
        env.check_goal_reaching()


# ------------------------------------------------------------------ frames
class _FrameEnv:
    """A one-pixel-wide env whose renderer hands out a view chosen by the test."""

    def __init__(self, frame_fn) -> None:
        self.frame_fn = frame_fn

    def reset(self, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


def _frame_env(frame_fn) -> Env:
    ad = Adapter(pixels=lambda env, obs: env.frame_fn(), proprio=lambda e, o, i: np.zeros(0),
                 state=lambda e, o, i: o, success=lambda i: False, low=-np.ones(1), high=np.ones(1))
    return Env(_FrameEnv(frame_fn), ad, "frames", img_size=8)


def test_a_flipped_view_frame_source_works() -> None:
    base = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    flipped = base[::-1]  # what dm_control's OpenGL readback hands out: a negative row stride
    flipped.setflags(write=False)
    assert flipped.strides[0] < 0
    env = _frame_env(lambda: flipped)
    obs = env.reset()
    assert torch.equal(obs["pixels"], resize_frame(np.ascontiguousarray(flipped), 8))
    assert torch.equal(resize_frame(base[:, ::-1], 8), resize_frame(base[:, ::-1].copy(), 8))


def test_non_square_frames_are_centre_cropped_not_squashed() -> None:
    frame = np.zeros((10, 30, 3), np.uint8)
    frame[:, 10:20] = 255  # white centre square, black bands left and right
    out = resize_frame(frame, 5)
    assert out.shape == (3, 5, 5) and torch.equal(out, torch.ones(3, 5, 5))  # squashing would mix in black
    tall = np.zeros((30, 10), np.uint8)
    tall[10:20] = 200
    assert torch.allclose(resize_frame(tall, 10), torch.full((1, 10, 10), 200 / 255))


# ------------------------------------------------------------------ policy randomness
def test_random_policy_noise_is_not_the_resets_draws() -> None:
    env = make_env("bouncing", img_size=16)
    p = RandomPolicy()
    p.reset(env, 11)
    first = p.act({}, {})
    shared = np.random.default_rng(11).uniform(-1.0, 1.0, 2).astype(np.float32)  # the old, shared stream
    assert not np.allclose(first, shared)
    p.reset(env, 11)
    assert np.array_equal(p.act({}, {}), first)  # still a pure function of the seed
    assert not np.allclose(policy_rng(11).random(4), np.random.default_rng(11).random(4))


def test_pendulum_first_action_is_not_the_initial_angle() -> None:
    pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    env = make_env("Pendulum-v1", img_size=16)
    for seed in range(5):
        theta = float(env.reset(seed=seed)["state"][0])  # reset draws theta = pi * (2u - 1)
        p = RandomPolicy()
        p.reset(env, seed)
        assert abs(float(p.act({}, {})[0]) - theta / math.pi) > 1e-4, seed
    env.close()


# ------------------------------------------------------------------ gymnasium API
class _Ends:
    """Terminates at step 3 when ``terminate``, else is truncated at step 3."""

    def __init__(self, terminate: bool) -> None:
        self.terminate, self.t = terminate, 0

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t >= 3
        return np.full(1, self.t, np.float32), 1.0, end and self.terminate, end and not self.terminate, {}


def _ends_env(terminate: bool) -> Env:
    ad = Adapter(pixels=lambda env, obs: np.zeros((4, 4, 3), np.uint8), proprio=lambda e, o, i: np.zeros(0),
                 state=lambda e, o, i: o, success=lambda i: False, low=-np.ones(1), high=np.ones(1))
    return Env(_Ends(terminate), ad, "ends", img_size=8)


@pytest.mark.parametrize("terminate", [True, False])
def test_terminated_and_truncated_stay_apart(terminate: bool) -> None:
    env = _ends_env(terminate)
    env.reset()
    env.step(np.zeros(1))
    _, _, term, trunc, _ = env.gym_step(np.zeros(1))
    assert (term, trunc) == (False, False)
    _, _, term, trunc, info = env.gym_step(np.zeros(1))
    assert (term, trunc) == (terminate, not terminate)
    assert (info["terminated"], info["truncated"]) == (terminate, not terminate)
    env.reset()
    env.step(np.zeros(1))
    env.step(np.zeros(1))
    _, _, done, info = env.step(np.zeros(1))
    assert done and (info["terminated"], info["truncated"]) == (terminate, not terminate)  # 4-tuple: merged


def test_gym_view_passes_gymnasiums_env_checker() -> None:
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from jepalab.data.envs.gym_view import GymEnv

    view = GymEnv(lambda: make_env("bouncing", img_size=16, seed=0))
    check_env(view, skip_render_check=True)
    obs, info = view.reset(seed=4)
    assert view.observation_space.contains(obs)
    obs2, _ = view.reset(seed=4, options={"state": obs["state"] + 1.0})
    np.testing.assert_allclose(obs2["state"], obs["state"] + 1.0, atol=1e-6)
    _, r, term, trunc, _ = view.step(np.zeros(2, np.float32))
    assert isinstance(term, bool) and isinstance(trunc, bool)


def test_parallel_recording_writes_the_serial_arrays(tmp_path) -> None:
    pytest.importorskip("gymnasium")
    from jepalab.data.recording import collect
    from jepalab.data.trajectories import KEYS, load_episode, read_meta

    kw = dict(episodes=5, max_steps=17, img_size=16, policy_kwargs={"repeat": 3}, progress=False,
              env_kwargs={"max_steps": 12})  # episodes end (truncated) before max_steps: slots refill early
    collect("bouncing", tmp_path / "serial", **kw)
    collect("bouncing", tmp_path / "parallel", workers=2, **kw)
    for i in range(5):
        a, b = load_episode(tmp_path / "serial", i), load_episode(tmp_path / "parallel", i)
        for k in KEYS:
            assert np.array_equal(a[k], b[k]), (i, k)
    assert a["actions"].shape[0] == 12
    assert read_meta(tmp_path / "parallel")["episodes"] == 5


def test_resuming_a_dataset_of_the_shared_seed_era_is_refused(tmp_path) -> None:
    import json

    from jepalab.data.recording import collect

    d = tmp_path / "old"
    collect("bouncing", d, episodes=1, max_steps=3, img_size=16, progress=False)
    meta = json.loads((d / "meta.json").read_text())
    del meta["policy_rng"]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="older jepalab"):
        collect("bouncing", d, episodes=2, max_steps=3, img_size=16, progress=False)
