"""The min-over-horizon cost, and the per-goal failure diagnosis (search / model / cost / replanning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepalab.errors import ConfigError
from jepalab.planning import CEM
from jepalab.planning.cost import latent_cost
from jepalab.planning.failures import classify_failure, recorded_blocks


def test_min_reduction_prefers_the_path_that_reaches_the_goal() -> None:
    goal = torch.zeros(1, 2)
    through = torch.tensor([[[2.0, 0], [0.0, 0], [2.0, 0]]])    # reaches the goal at step 2, then leaves
    nearer_end = torch.tensor([[[3.0, 0], [2.0, 0], [1.0, 0]]])  # never reaches, ends closer
    paths = torch.cat([through, nearer_end])
    assert latent_cost(paths, goal, reduce="min").argmin() == 0
    assert latent_cost(paths, goal, reduce="last").argmin() == 1
    early = torch.tensor([[[0.0, 0], [0.0, 0], [0.0, 0]]])
    late = torch.tensor([[[2.0, 0], [1.0, 0], [0.0, 0]]])
    both = latent_cost(torch.cat([early, late]), goal, reduce="min")
    assert both[0] < both[1]  # both reach it: the tie-break favours arriving sooner
    with pytest.raises(ConfigError):
        latent_cost(paths, goal, reduce="max")


# ------------------------------------------------------------------ a tiny world for the diagnosis
class PointEnv:
    """A point in the plane; an action moves it by 0.1 x action. Success: within 0.05 of the goal."""

    def __init__(self) -> None:
        self.pos = np.zeros(2)

    def reset_to(self, state, goal_state):
        self.pos = np.asarray(state, np.float64).copy()
        return self._obs()

    def _obs(self):
        return {"state": torch.tensor(self.pos, dtype=torch.float32)}

    def step(self, a):
        self.pos = self.pos + 0.1 * np.asarray(a, np.float64)
        return self._obs(), 0.0, False, {}

    def goal_success(self, state, goal):
        d = float(np.linalg.norm(np.asarray(state)[:2] - np.asarray(goal)[:2]))
        return d < 0.05, d


class PointModel:
    """Imagines the point moving by ``gain x 0.1 x`` each env action (gain 1: a perfect model)."""

    def __init__(self, gain: float = 1.0, frameskip: int = 2) -> None:
        self.gain, self.action_dim = gain, 2 * frameskip

        class _Cfg:
            pass

        self.config = _Cfg()
        self.config.frameskip = frameskip

    def rollout(self, z_hist, actions, a_hist=None):
        z, outs = z_hist[:, -1], []
        for h in range(actions.shape[1]):
            z = z + self.gain * 0.1 * actions[:, h].view(actions.shape[0], -1, 2).sum(1)
            outs.append(z)
        return torch.stack(outs, dim=1)


def _case(model, encode, planner_kw):
    env = PointEnv()
    task = {"state": np.zeros(2), "goal_state": np.array([0.4, 0.0]), "start": 0}
    actions = np.array([[1.0, 0.0]] * 4 + [[0.0, 0.0]] * 2, np.float32)  # 4 env steps of +0.1: reaches x = 0.4
    planner = CEM(model, horizon=3, seed=0, reduce="min", **planner_kw)
    goal_z = encode({"state": torch.tensor([0.4, 0.0])})
    return classify_failure(model, planner, env, task, actions, encode, goal_z)


def _xy(obs):
    return obs["state"].float()


def test_recorded_blocks_pad_past_the_end() -> None:
    blocks = recorded_blocks(np.ones((3, 2), np.float32), 1, horizon=2, frameskip=2)
    assert blocks.shape == (2, 4) and blocks.sum() == 4.0


def test_a_weak_search_is_blamed_on_the_search() -> None:
    # one iteration of 2 samples around "no action": the recorded plan is far cheaper under the model
    r = _case(PointModel(), _xy, dict(samples=2, iterations=1, elites=1, init_std=0.01))
    assert r["cause"] == "search" and r["c_recorded"] < r["c_found"]


def test_a_good_first_plan_lost_later_is_a_replanning_failure() -> None:
    r = _case(PointModel(), _xy, dict(samples=200, iterations=5, elites=20))
    assert r["cause"] == "replanning"


def test_a_model_that_reverses_motion_is_blamed_on_the_model() -> None:
    # the model imagines every move reversed: the plan it finds cheap walks away from the goal
    r = _case(PointModel(gain=-1.0), _xy, dict(samples=200, iterations=5, elites=20))
    assert r["cause"] == "model" and r["c_real"] > r["c_found"]


def test_an_embedding_blind_to_the_goal_axis_is_blamed_on_the_cost() -> None:
    # the embedding sees only y; the goal differs in x: every plan is "at the goal" and none reaches it
    def y_only(obs):
        return obs["state"].float() * torch.tensor([0.0, 1.0])

    r = _case(PointModel(), y_only, dict(samples=50, iterations=2, elites=5))
    assert r["cause"] == "cost"
