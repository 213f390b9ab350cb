"""Planners against known optima on linear latent dynamics, bounds, batching, and the MPC loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from jepalab.errors import ConfigError, ShapeError
from jepalab.planning import CEM, MPPI, GradientPlanner, MPCController, latent_cost, run_episode

torch.set_num_threads(1)


class LinearModel:
    """z_{t+1} = A z_t + B a_t (uses only the last history embedding); counts rollout calls."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self.action_dim = b.shape[1]
        self.calls: list[int] = []

    def rollout(self, z_hist, actions, a_hist=None):
        self.calls.append(actions.shape[0])
        z, out = z_hist[:, -1], []
        for t in range(actions.shape[1]):
            z = z @ self.a.T + actions[:, t] @ self.b.T
            out.append(z)
        return torch.stack(out, dim=1)


def make_system(seed: int = 0, d: int = 3, a_dim: int = 2):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))  # stable rotation-like A
    b, _ = torch.linalg.qr(torch.randn(d, a_dim, generator=g))  # well-conditioned B
    return LinearModel(0.8 * q, b)


def stacked(model: LinearModel, z0: torch.Tensor, horizon: int):
    """Z (H*D) = F z0 + G a (H*A): the rollout as one linear map, to solve the optimum exactly."""
    d, a_dim = model.b.shape
    f = torch.zeros(horizon * d, d, dtype=torch.float64)
    gm = torch.zeros(horizon * d, horizon * a_dim, dtype=torch.float64)
    a64, b64 = model.a.double(), model.b.double()
    for t in range(horizon):
        f[t * d:(t + 1) * d] = torch.linalg.matrix_power(a64, t + 1)
        for s in range(t + 1):
            gm[t * d:(t + 1) * d, s * a_dim:(s + 1) * a_dim] = torch.linalg.matrix_power(a64, t - s) @ b64
    return f @ z0.double(), gm


def optimum(model, z0, goal, horizon, low, high, every_step=True):
    """Exact box-constrained minimiser of the mse cost (all steps or the last one) via lsq_linear."""
    d = goal.shape[0]
    fz, gm = stacked(model, z0, horizon)
    r = goal.double().repeat(horizon) - fz
    if not every_step:
        gm, r = gm[-d:], r[-d:]
    res = lsq_linear(gm.numpy(), r.numpy(), bounds=(low, high), method="bvls", tol=1e-12)
    cost = float(np.sum((gm.numpy() @ res.x - r.numpy()) ** 2)) / r.shape[0]
    return torch.tensor(res.x, dtype=torch.float32).reshape(horizon, -1), cost


PLANNERS = {
    "cem": lambda m, **kw: CEM(m, samples=300, iterations=30, elites=30, **kw),
    "mppi": lambda m, **kw: MPPI(m, samples=300, iterations=30, temperature=0.3, **kw),
    "gradient": lambda m, **kw: GradientPlanner(m, candidates=4, iterations=300, lr=0.02, **kw),
}


@pytest.mark.parametrize("name", list(PLANNERS))
@pytest.mark.parametrize("box", [1.0, 0.15])
@pytest.mark.parametrize("seed", [0, 1])
def test_planner_finds_constrained_optimum(name, box, seed):
    """Every-step mse on linear dynamics is a (box-)constrained least-squares problem: unique optimum."""
    model, horizon = make_system(seed), 4
    g = torch.Generator().manual_seed(1)
    z0, goal = torch.randn(3, generator=g), torch.randn(3, generator=g)
    a_star, c_star = optimum(model, z0, goal, horizon, -box, box)
    planner = PLANNERS[name](model, horizon=horizon, low=-box, high=box, cost="mse", every_step=True, seed=0)
    res = planner.solve(z0[None, None], goal[None])
    assert res.actions.shape == (1, horizon, 2)
    assert float(res.actions.abs().max()) <= box + 1e-6
    if box < 1.0:  # the tight box must actually bind, or the test would not test the bounds
        assert float(a_star.abs().max()) == pytest.approx(box, abs=1e-6)
    assert float(res.cost[0]) >= c_star - 1e-5
    assert float(res.cost[0]) - c_star < 1e-3 * max(c_star, 1.0)
    assert torch.allclose(res.actions[0], a_star, atol=0.06), (res.actions[0], a_star)
    # the reported cost is the true cost of the returned plan
    true = latent_cost(model.rollout(z0[None, None], res.actions), goal[None], "mse", every_step=True)
    assert float(true[0]) == pytest.approx(float(res.cost[0]), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_last_step_cost_reaches_reachable_goal(name):
    model, horizon = make_system(seed=2), 5
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(3, generator=g)
    a_true = (torch.rand(horizon, 2, generator=g) - 0.5) * 0.8
    goal = model.rollout(z0[None, None], a_true[None])[0, -1]
    _, c_star = optimum(model, z0, goal, horizon, -1.0, 1.0, every_step=False)
    assert c_star < 1e-10
    res = PLANNERS[name](model, horizon=horizon, cost="l2", seed=0).solve(z0[None, None], goal[None])
    assert float(res.cost[0]) < 0.03 * float(torch.linalg.vector_norm(goal - z0))


def test_random_actions_are_far_from_optimal():
    """Guard against a vacuous optimum test: one CEM iteration with few samples is clearly worse."""
    model, horizon = make_system(), 4
    g = torch.Generator().manual_seed(1)
    z0, goal = torch.randn(3, generator=g), torch.randn(3, generator=g)
    _, c_star = optimum(model, z0, goal, horizon, -1.0, 1.0)
    weak = CEM(model, horizon=horizon, samples=4, iterations=1, elites=1, cost="mse", every_step=True)
    assert float(weak.solve(z0[None, None], goal[None]).cost[0]) - c_star > 2e-3 * max(c_star, 1.0)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_ball_and_per_dim_box_are_respected(name):
    model = make_system()
    goal = torch.full((3,), 5.0)  # far away: the optimum presses against the constraints
    low, high = torch.tensor([-0.5, -0.2]), torch.tensor([0.5, 0.1])
    planner = PLANNERS[name](model, horizon=3, low=low, high=high, radius=0.3, seed=0)
    a = planner.plan(torch.zeros(2, 1, 3), goal.expand(2, 3))
    assert a.shape == (2, 3, 2)
    assert (a >= low - 1e-6).all() and (a <= high + 1e-6).all()
    assert float(torch.linalg.vector_norm(a, dim=-1).max()) <= 0.3 + 1e-6
    assert float(torch.linalg.vector_norm(a, dim=-1).max()) > 0.25  # constraints are active


@pytest.mark.parametrize("name", list(PLANNERS))
def test_batched_envs_equal_one_at_a_time(name):
    model, horizon, e = make_system(), 3, 3
    g = torch.Generator().manual_seed(5)
    z_hist, goal = torch.randn(e, 2, 3, generator=g), torch.randn(e, 3, generator=g)
    kw = dict(horizon=horizon, seed=7, cost="mse")  # smooth cost: no kink for Adam to chatter on
    batched = PLANNERS[name](model, **kw).solve(z_hist, goal)
    for i in range(e):
        single = PLANNERS[name](model, **kw).solve(z_hist[i:i + 1], goal[i:i + 1])
        # equal up to float rounding of differently shaped batches (MPPI's soft updates carry it on)
        assert torch.allclose(batched.actions[i], single.actions[0], atol=2e-3)
        assert torch.allclose(batched.cost[i], single.cost[0], rtol=1e-4, atol=1e-6)
    # and envs differ from each other (the batch is not one env copied)
    assert not torch.allclose(batched.actions[0], batched.actions[1], atol=1e-2)


def test_cem_uses_one_batched_rollout_per_iteration():
    model = make_system()
    CEM(model, horizon=5, samples=300, iterations=30, elites=30).plan(torch.zeros(4, 1, 3), torch.ones(4, 3))
    assert model.calls == [4 * 300] * 30


def test_same_seed_same_plan_other_seed_differs():
    model = make_system()
    z, goal = torch.zeros(1, 1, 3), torch.ones(1, 3)
    a1 = CEM(model, horizon=3, samples=20, iterations=2, elites=5, seed=0).plan(z, goal)
    a2 = CEM(model, horizon=3, samples=20, iterations=2, elites=5, seed=0).plan(z, goal)
    a3 = CEM(model, horizon=3, samples=20, iterations=2, elites=5, seed=1).plan(z, goal)
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


def test_warm_start_shifts_previous_plan():
    model = make_system()
    planner = CEM(model, horizon=4, samples=50, iterations=3, elites=5, low=-1.0, high=1.0)
    first = planner.plan(torch.zeros(2, 1, 3), torch.ones(2, 3))
    init = planner._initial_mean(2, shift=1, device=torch.device("cpu"))
    assert torch.equal(init[:, :3], first[:, 1:]) and torch.equal(init[:, 3], torch.zeros(2, 2))
    # the warm start is slot 0 of the first iteration, so a 1-iteration replan can only improve on it
    start_cost = planner.evaluate(torch.zeros(2, 1, 3), torch.ones(2, 3), None, init.unsqueeze(1))[:, 0]
    again = planner.solve(torch.zeros(2, 1, 3), torch.ones(2, 3), shift=1)
    assert (again.cost <= start_cost + 1e-6).all()
    planner.reset()
    assert torch.equal(planner._initial_mean(2, 1, torch.device("cpu")), torch.zeros(2, 4, 2))


def test_gradient_planner_leaves_model_parameters_alone():
    class NetModel(torch.nn.Module):
        action_dim = 2

        def __init__(self):
            super().__init__()
            self.f = torch.nn.Linear(5, 3)

        def rollout(self, z_hist, actions, a_hist=None):
            z, out = z_hist[:, -1], []
            for t in range(actions.shape[1]):
                z = z + self.f(torch.cat([z, actions[:, t]], -1))
                out.append(z)
            return torch.stack(out, 1)

    net = NetModel()
    res = GradientPlanner(net, horizon=3, candidates=2, iterations=5).solve(torch.zeros(1, 1, 3), torch.ones(1, 3))
    assert all(p.grad is None for p in net.parameters())
    assert not res.actions.requires_grad and torch.isfinite(res.cost).all()


def test_wrong_shapes_raise_actionable_errors():
    model = make_system()
    with pytest.raises(ShapeError, match="action_dim 3 does not match"):
        CEM(model, horizon=3, action_dim=3)
    planner = CEM(model, horizon=3, samples=10, iterations=1, elites=2)
    with pytest.raises(ShapeError, match="a_hist has action dimension 5"):
        planner.plan(torch.zeros(1, 2, 3), torch.ones(1, 3), a_hist=torch.zeros(1, 1, 5))
    with pytest.raises(ShapeError, match="goal must be"):
        planner.plan(torch.zeros(2, 1, 3), torch.ones(2, 4))
    with pytest.raises(ConfigError, match="elites"):
        CEM(model, horizon=3, samples=10, elites=11)
    with pytest.raises(ConfigError, match="contain 0"):
        CEM(model, horizon=3, low=0.1, high=1.0, radius=0.5)
    with pytest.raises(ConfigError, match="Unknown planning cost"):
        CEM(model, horizon=3, cost="cosine")


# ------------------------------------------------------------------------------ MPC loop
class PointMass:
    """Tiny deterministic env following the Env contract: pos += 0.1 * action, success near goal."""

    def __init__(self, action_dim: int = 2, start=(0.0, 0.0), goal=(0.6, -0.4)) -> None:
        self.action_dim, self.start, self.goal = action_dim, np.array(start), np.array(goal)
        self.actions: list[np.ndarray] = []

    def _obs(self):
        pix = np.zeros((1, 8, 8), np.float32)
        i, j = np.clip(((self.pos + 1) * 4).astype(int), 0, 7)
        pix[0, i, j] = 1.0
        return dict(pixels=pix, proprio=self.pos.copy(), state=self.pos.copy())

    def reset(self):
        self.pos = self.start.astype(np.float64).copy()
        return self._obs()

    def step(self, action):
        assert isinstance(action, np.ndarray) and action.shape == (self.action_dim,)
        assert np.all(np.abs(action) <= 1 + 1e-6)
        self.actions.append(action)
        self.pos = self.pos + 0.1 * action
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, False, dict(dist=dist)

    def success(self, info) -> bool:
        return info["dist"] < 0.05

    def goal_obs(self):
        return dict(pixels=None, proprio=self.goal, state=self.goal)


def encode(obs) -> torch.Tensor:
    return torch.as_tensor(obs["state"], dtype=torch.float32)


def test_mpc_reaches_goal_in_point_mass():
    env = PointMass()
    model = LinearModel(torch.eye(2), 0.1 * torch.eye(2))
    ctl = MPCController(CEM(model, horizon=5, samples=100, iterations=5, elites=10), encode)
    out = run_episode(env, ctl, env.goal_obs(), budget=50)
    assert out["success"] and out["steps"] <= 12  # 6 steps is the minimum (0.1 per axis per step)
    assert len(out["frames"]) == out["steps"] + 1 and out["frames"][0].shape == (1, 8, 8)
    assert len(out["plan_times"]) == len(out["costs"]) == out["steps"]  # replans every step
    assert out["costs"][-1] < out["costs"][0]


def test_mpc_does_not_reach_without_budget_and_stops_at_budget():
    env = PointMass()
    model = LinearModel(torch.eye(2), 0.1 * torch.eye(2))
    out = run_episode(env, MPCController(CEM(model, horizon=5, samples=50, iterations=3, elites=5), encode),
                      env.goal_obs(), budget=3)
    assert not out["success"] and out["steps"] == 3


def test_mpc_chunked_actions_history_and_execute():
    """A model on 2-env-step chunks (frameskip 2): plan every 2 model steps = 4 env steps."""
    env = PointMass()
    model = LinearModel(torch.eye(2), 0.1 * torch.cat([torch.eye(2), torch.eye(2)], 1))
    seen: list[tuple] = []
    orig = model.rollout

    def spy(z_hist, actions, a_hist=None):
        seen.append((z_hist.shape[1], None if a_hist is None else tuple(a_hist.shape[1:])))
        return orig(z_hist, actions, a_hist)

    model.rollout = spy
    ctl = MPCController(CEM(model, horizon=4, samples=100, iterations=5, elites=10), encode,
                        replan_every=4, execute=2, history=3)
    out = run_episode(env, ctl, env.goal_obs(), budget=50)
    assert out["success"] and out["steps"] <= 16
    assert len(out["costs"]) == -(-out["steps"] // 4)
    # plans at model steps 0, 2, 4, ...: one frame first, then a full 3-frame history + 2 actions
    plans = seen[::5]  # 5 CEM iterations = 5 rollout calls per plan
    assert plans[0] == (1, None) and all(p == (3, (2, 4)) for p in plans[1:]) and len(plans) > 1
    assert all(a.shape == (2,) for a in env.actions)


def test_mpc_rejects_mismatched_env_action_dim():
    model = LinearModel(torch.eye(2), 0.1 * torch.eye(2))
    ctl = MPCController(CEM(model, horizon=3, samples=10, iterations=1, elites=2), encode)
    with pytest.raises(ShapeError, match="environment takes 3-dim"):
        run_episode(PointMass(action_dim=3), ctl, PointMass().goal_obs())
    with pytest.raises(ConfigError, match="execute"):
        MPCController(CEM(model, horizon=3), encode, execute=4)


@pytest.mark.parametrize("planner_cls", [CEM, MPPI, GradientPlanner])
def test_planners_drive_the_real_action_conditioned_predictor(planner_cls):
    """Contract check against jepalab.nn.ac_predictor: history + a_hist shapes, costs consistent."""
    from jepalab.nn.ac_predictor import ActionConditionedPredictor

    torch.manual_seed(0)
    net = ActionConditionedPredictor(embed_dim=8, action_dim=4, dim=16, depth=1, heads=2, history=2)
    for name, p in net.named_parameters():
        if "modulation" in name or "out_proj" in name:
            torch.nn.init.normal_(p, std=0.1)  # non-trivial dynamics (the class zero-inits these)
    net.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    z_hist, goal = torch.randn(2, 2, 8, generator=g), torch.randn(2, 8, generator=g)
    a_hist = torch.rand(2, 1, 4, generator=g) * 2 - 1
    kw = dict(iterations=3) if planner_cls is not GradientPlanner else dict(iterations=5, candidates=2)
    res = planner_cls(net, horizon=3, seed=0, **kw).solve(z_hist, goal, a_hist)
    assert res.actions.shape == (2, 3, 4) and (res.actions.abs() <= 1 + 1e-6).all()
    true = latent_cost(net.rollout(z_hist, res.actions, a_hist), goal)
    assert torch.allclose(true, res.cost, rtol=1e-4, atol=1e-5)
    zero = latent_cost(net.rollout(z_hist, torch.zeros(2, 3, 4), a_hist), goal)
    assert (res.cost <= zero + 1e-6).all()  # never worse than the neutral plan it started from
