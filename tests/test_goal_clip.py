"""Goal clips: a goal given as its last G frames, so the planner can match velocities too; and the
controller's history seeded with the recorded frames before the start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepalab.errors import ConfigError, ShapeError
from jepalab.planning import CEM
from jepalab.planning.cost import latent_cost
from jepalab.planning.evaluate import start_context
from jepalab.planning.mpc import MPCController
from jepalab.recipes.worldmodel import WorldModelConfig


def test_a_goal_clip_tells_arriving_fast_from_arriving_at_the_right_speed() -> None:
    # 1-d positions; the goal: at 2.0, coming from 1.0 (moving +1 per model step)
    right_speed = torch.tensor([[[0.0], [1.0], [2.0]]])
    wrong_speed = torch.tensor([[[4.0], [3.0], [2.0]]])   # same place at the end, moving the other way
    paths = torch.cat([right_speed, wrong_speed])
    one_frame = latent_cost(paths, torch.tensor([[2.0]]), reduce="last")
    assert torch.allclose(one_frame[0], one_frame[1])      # a single goal frame cannot tell them apart
    clip = latent_cost(paths, torch.tensor([[[1.0], [2.0]]]), reduce="last")
    assert clip[0] == pytest.approx(0.0) and clip[1] == pytest.approx(2.0)  # |3 - 1|


def test_the_first_step_of_a_clip_reaches_into_the_history() -> None:
    goal = torch.tensor([[[1.0], [2.0]]])
    pred = torch.tensor([[[2.0], [9.0]]])                  # at the goal at the first step, then gone
    came_right = latent_cost(pred, goal, reduce="min", context=torch.tensor([[[0.0], [1.0]]]))
    came_wrong = latent_cost(pred, goal, reduce="min", context=torch.tensor([[[5.0], [3.0]]]))
    assert came_right < came_wrong
    # without a history the first prediction stands in for the frame before it
    alone = latent_cost(pred, goal, reduce="min")
    assert alone == pytest.approx(latent_cost(pred, goal, reduce="min", context=pred[:, :1]))
    with pytest.raises(ShapeError):
        latent_cost(pred, goal, context=torch.zeros(2, 1, 1))


class Drift:
    """A 1-d model: each action block adds its mean to the position (enough for the planner)."""

    action_dim = 1

    def rollout(self, z_hist, actions, a_hist=None):
        return z_hist[:, -1:] + actions.cumsum(dim=1)


def test_the_planner_matches_the_goal_clip_velocity() -> None:
    # from 0, reach 0.5 moving forward (+0.5 per step) rather than stopping there
    pl = CEM(Drift(), horizon=3, samples=400, iterations=8, elites=40, seed=0, reduce="last")
    goal = torch.tensor([[[0.0], [0.5]]])
    acts = pl.plan(torch.zeros(1, 1, 1), goal)
    assert acts[0, -1, 0].item() == pytest.approx(0.5, abs=0.1)   # the last step still moves +0.5
    still = pl.plan(torch.zeros(1, 1, 1), torch.tensor([[[0.5], [0.5]]]))
    assert abs(still[0, -1, 0].item()) < 0.1                          # a still goal: arrive and stop
    with pytest.raises(ShapeError):
        pl.plan(torch.zeros(1, 1, 1), torch.zeros(1, 2, 3))


def test_controller_history_is_seeded_from_the_past_and_checked() -> None:
    seen = []

    class Recorder(Drift):
        def rollout(self, z_hist, actions, a_hist=None):
            seen.append((z_hist.shape[1], None if a_hist is None else a_hist.shape[1]))
            return super().rollout(z_hist, actions, a_hist)

    pl = CEM(Recorder(), horizon=2, samples=8, iterations=1, elites=2, seed=0)
    ctrl = MPCController(pl, lambda o: torch.tensor([float(o)]), history=2)
    ctrl.reset([1.0, 2.0], past_obs=[-1.0], past_actions=[np.array([0.5], np.float32)])
    assert ctrl.goal.shape == (2, 1)
    ctrl.act(0.0)
    assert seen[0] == (2, 1)               # the first plan already sees two frames and the action between
    with pytest.raises(ShapeError):
        ctrl.reset(1.0, past_obs=[0.0], past_actions=[])
    with pytest.raises(ConfigError):
        MPCController(pl, lambda o: torch.tensor([float(o)]), history=1).reset([1.0, 2.0])


def test_goal_frames_must_fit_the_history() -> None:
    WorldModelConfig(history=2, goal_frames=2).validate()
    with pytest.raises(ConfigError, match="goal_frames"):
        WorldModelConfig(history=1, goal_frames=2).validate()


def test_start_context_takes_recorded_frames_a_model_step_apart() -> None:
    class M:
        config = WorldModelConfig(img_size=4, in_chans=1, frameskip=3, history=3, goal_frames=2)

    frames = np.stack([np.full((4, 4, 1), i, np.uint8) for i in range(30)])     # frame i has value i
    episode = {"frames": frames, "actions": np.arange(29, dtype=np.float32)[:, None]}
    ctx = start_context(M(), episode, {"start": 7, "goal_step": 20})
    value = lambda x: round(float(x.mean()) * 255)  # noqa: E731
    assert [value(x) for x in ctx["goal_obs"]] == [17, 20]
    assert [value(x) for x in ctx["past_obs"]] == [1, 4]
    assert [a.tolist() for a in ctx["past_actions"]] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    early = start_context(M(), episode, {"start": 2, "goal_step": 15})
    assert early["past_obs"] == []          # nothing recorded a model step before step 2
