"""Physics, determinism and variants of the bouncing-ball world (jepalab.data.bouncing)."""

from __future__ import annotations

import pytest
import torch

from jepalab.data.bouncing import BouncingBalls, BouncingConfig, step_dynamics
from jepalab.errors import ConfigError, DataError, ShapeError

torch.set_num_threads(1)


def world(**kw) -> BouncingBalls:
    return BouncingBalls(BouncingConfig(**kw))


def test_shapes_dtypes_and_range():
    w = world(channels=3, num_balls=2, frames=5)
    b = w.batch(0, 6)
    assert b["frames"].shape == (6, 5, 3, 64, 64) and b["frames"].dtype == torch.float32
    assert b["state"].shape == (6, 5, 8) and b["actions"].shape == (6, 4, 2)
    assert 0.0 <= b["frames"].min() and b["frames"].max() <= 1.0
    assert torch.all(b["actions"] == 0)
    assert w.state_names == ["x0", "y0", "x1", "y1", "vx0", "vy0", "vx1", "vy1"]


def test_balls_stay_inside_and_speed_conserved():
    w = world(frames=40, speed=(5.0, 9.0))
    s = w.batch(3, 64)["state"]
    pos, vel = s[..., :2], s[..., 2:]
    assert pos.min() >= w.low - 1e-4 and pos.max() <= w.high + 1e-4
    speed = vel.norm(dim=-1)
    torch.testing.assert_close(speed, speed[:, :1].expand_as(speed))
    # many bounces happened (otherwise the test says nothing about wall handling)
    flips = (vel[:, 1:] * vel[:, :-1] < 0).sum()
    assert flips > 50
    # positions advance by the (pre-bounce) velocity: unfold reflections and compare
    moved = (pos[:, 1:] - pos[:, :-1]).abs()
    assert torch.all(moved <= vel[:, :-1].abs() + 1e-4)


def test_step_dynamics_reflects_at_wall():
    pos = torch.tensor([[[58.0, 30.0]]])
    vel = torch.tensor([[[5.0, -1.0]]])
    new, v = step_dynamics(pos, vel, 4.0, 60.0)
    torch.testing.assert_close(new, torch.tensor([[[57.0, 29.0]]]))  # 63 mirrored about 60
    torch.testing.assert_close(v, torch.tensor([[[-5.0, -1.0]]]))


def test_frames_show_the_ball_at_the_state_position():
    w = world()
    b = w.batch(1, 16)
    img = b["frames"][:, :, 0]  # (B, T, H, W)
    ys = torch.arange(64).float() + 0.5
    mass = img.sum(dim=(-1, -2))
    cx = (img.sum(-2) * ys).sum(-1) / mass
    cy = (img.sum(-1) * ys).sum(-1) / mass
    torch.testing.assert_close(cx, b["state"][..., 0], atol=0.05, rtol=0)
    torch.testing.assert_close(cy, b["state"][..., 1], atol=0.05, rtol=0)


def test_subpixel_moves_change_the_image():
    w = world()
    a = w.render(torch.tensor([[[30.0, 30.0]]]))
    b = w.render(torch.tensor([[[30.3, 30.0]]]))
    assert (a - b).abs().sum() > 0.3


def test_deterministic_in_seed_and_step_and_seeds_differ():
    a, b = world(seed=1).batch(5, 8), world(seed=1).batch(5, 8)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["state"], b["state"])
    assert not torch.equal(a["state"], world(seed=2).batch(5, 8)["state"])
    assert not torch.equal(a["state"], world(seed=1).batch(6, 8)["state"])


def test_train_and_test_splits_differ():
    tr = world(split="train").batch(0, 32)["state"]
    te = world(split="test").batch(0, 32)["state"]
    assert torch.cdist(tr[:, 0], te[:, 0]).min() > 1e-3


@pytest.mark.parametrize("variant", ["deterministic", "stochastic", "distractors", "actions"])
def test_rank_slices_equal_global_batch(variant):
    w = world(variant=variant)
    full = w.batch(7, 12)
    parts = [w.batch(7, 12, rank=r, world_size=3) for r in range(3)]
    for key in full:
        torch.testing.assert_close(torch.cat([p[key] for p in parts]), full[key], atol=0, rtol=0)


def test_stochastic_next_position_is_bimodal():
    w = world(variant="stochastic", frames=2, kick_prob=0.5)
    b = w.batch(0, 2000)
    modes = w.next_modes(b["state"][:, 0])  # (B, 2, 2)
    nxt = b["state"][:, 1, :2]
    d = (nxt[:, None] - modes).norm(dim=-1)  # (B, 2)
    assert torch.all(d.min(dim=1).values < 1e-4)  # always exactly on one of the modes
    sep = (modes[:, 0] - modes[:, 1]).norm(dim=-1)
    away = sep >= 2 * w.config.speed[0] - 1e-4  # >= 2*speed_min > 2 radii: a gap between ghosts
    assert away.float().mean() > 0.8  # most clips; only wall bounces bring the modes closer
    assert sep.min() > 0
    frac_b = (d[:, 1] < d[:, 0]).float().mean().item()
    assert 0.45 < frac_b < 0.55
    # no "in-between" next positions: the midpoint is never realised
    mid = modes.mean(dim=1)
    assert ((nxt - mid).norm(dim=-1)[away] >= w.config.radius - 1e-4).all()


def test_deterministic_variant_has_one_future():
    w = world(frames=2)
    b = w.batch(0, 200)
    modes = w.next_modes(b["state"][:, 0])
    torch.testing.assert_close(b["state"][:, 1, :2], modes[:, 0])


def test_distractors_present_and_uninformative():
    plain = world(variant="deterministic").batch(0, 8)["frames"]
    noisy = world(variant="distractors", num_distractors=6).batch(0, 8)["frames"]
    extra = (noisy - plain).clamp_min(0)
    assert (extra > 0.5).sum(dim=(-1, -2, -3)).float().mean() >= 6 * 4 * 0.8  # ~6 dots of 4 px
    # same balls underneath: distractors don't change the state
    s1 = world(variant="deterministic").batch(0, 8)["state"]
    s2 = world(variant="distractors").batch(0, 8)["state"]
    torch.testing.assert_close(s1, s2)
    # dots move independently between frames
    assert not torch.equal(extra[:, 0], extra[:, 1])


def test_actions_change_the_trajectory_and_rollout_matches():
    w = world(variant="actions", frames=6, action_scale=2.0)
    b = w.batch(0, 64)
    a = b["actions"]
    assert a.abs().max() <= 1 and a.abs().mean() > 0.2
    replay = w.rollout(b["state"][:, 0], a)
    torch.testing.assert_close(replay, b["state"])
    still = w.rollout(b["state"][:, 0], torch.zeros_like(a))
    assert (still[:, -1, :2] - b["state"][:, -1, :2]).norm(dim=-1).mean() > 1.0
    assert b["state"][..., 2:].norm(dim=-1).max() <= w.config.speed[1] + 1e-4


def test_config_and_argument_errors():
    with pytest.raises(ConfigError, match="variant"):
        world(variant="chaotic")
    with pytest.raises(ConfigError, match="channels"):
        world(channels=2)
    with pytest.raises(ConfigError, match="stochastic"):
        world(variant="stochastic", radius=4.0, speed=(1.0, 5.0))
    with pytest.raises(ConfigError, match="split"):
        world(split="val")
    w = world()
    with pytest.raises(DataError, match="divisible"):
        w.batch(0, 10, rank=0, world_size=3)
    with pytest.raises(DataError, match="rank"):
        w.batch(0, 8, rank=2, world_size=2)
    with pytest.raises(DataError):
        w.batch(-1, 8)
    with pytest.raises(ShapeError):
        w.render(torch.zeros(3, 3))
    with pytest.raises(ShapeError):
        w.next_modes(torch.zeros(2, 5))


def test_registered_source_builds_from_a_dict():
    from jepalab.data import build_source

    src = build_source("bouncing", {"variant": "stochastic", "img_size": 32, "radius": 3.0, "speed": [3.0, 5.0]})
    assert isinstance(src, BouncingBalls) and src.config.speed == (3.0, 5.0)
    assert src.batch(0, 4)["frames"].shape == (4, 4, 1, 32, 32)
    with pytest.raises(ConfigError):
        build_source("bouncing", {"variant": "stochastic", "img_size": 32, "speed": [1.0, 5.0]})
