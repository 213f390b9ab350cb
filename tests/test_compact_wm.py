"""The compact planning world model: keypoint encoder, MLP dynamics, its loss terms, the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.keypoint import KeypointEncoder
from jepalab.nn.mlp_dynamics import MLPDynamics
from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig

ROOT = Path(__file__).resolve().parents[1]


class _PeakTrunk(nn.Module):
    """Stands in for the conv trunk: one heatmap with a single hot cell at (row, col)."""

    def __init__(self, row: int, col: int, size: int = 16) -> None:
        super().__init__()
        self.row, self.col, self.size = row, col, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 1, self.size, self.size)
        out[:, 0, self.row, self.col] = 30.0
        return out


def test_soft_argmax_reads_the_hot_cell_as_a_linear_coordinate() -> None:
    enc = KeypointEncoder(img_size=64, in_chans=3, embed_dim=8, width=8, keypoints=1, map_size=16)
    x = torch.zeros(2, 3, 64, 64)
    coords = []
    for col in (2, 6, 10):  # equal steps in the map must give equal steps in the coordinate
        enc.trunk = _PeakTrunk(row=5, col=col)
        coords.append(enc.keypoints(x)[0, 0].detach())
    xs = [float(c[0]) for c in coords]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=1e-4)
    assert xs[0] == pytest.approx(-1 + 2 * 2 / 15, abs=1e-3)
    assert float(coords[0][1]) == pytest.approx(-1 + 2 * 5 / 15, abs=1e-3)


def test_keypoint_encoder_shapes_and_bad_sizes() -> None:
    enc = KeypointEncoder(img_size=32, in_chans=1, embed_dim=16, width=8, keypoints=4, map_size=16)
    assert enc(torch.rand(3, 1, 32, 32)).shape == (3, 16)
    with pytest.raises(ShapeError):
        enc(torch.rand(3, 3, 32, 32))
    with pytest.raises(ConfigError):
        KeypointEncoder(img_size=48, map_size=16)  # 3 is not a power of two


@pytest.mark.parametrize("history", [1, 2])
def test_mlp_rollout_matches_teacher_forcing_one_step_at_a_time(history: int) -> None:
    torch.manual_seed(0)
    dyn = MLPDynamics(embed_dim=6, action_dim=4, hidden=32, depth=2, history=history)
    for p in dyn.parameters():  # leave the zero-initialised residual start: random weights everywhere
        nn.init.normal_(p, std=0.3)
    z, a = torch.randn(3, 5, 6), torch.randn(3, 5, 4)
    tf = dyn(z, a)
    for t in range(history - 1, 5):
        step = dyn.rollout(z[:, t - history + 1: t + 1], a[:, t: t + 1])
        torch.testing.assert_close(step[:, 0], tf[:, t])
    # autoregressive: the second imagined step is the model applied to its own first prediction
    two = dyn.rollout(z[:, :1], a[:, :2])
    hist = torch.stack([z[:, 0], two[:, 0]], dim=1)[:, -history:]
    torch.testing.assert_close(two[:, 1], dyn.step(hist, a[:, 1]))


def test_mlp_dynamics_starts_as_copy_last() -> None:
    dyn = MLPDynamics(embed_dim=4, action_dim=2)
    z = torch.randn(2, 3, 4)
    torch.testing.assert_close(dyn.rollout(z, torch.randn(2, 4, 2)), z[:, -1:].expand(2, 4, 4))


def _compact(**kw: object) -> WorldModel:
    cfg = dict(encoder="keypoint", img_size=32, in_chans=1, embed_dim=8, enc_width=8, keypoints=4,
               predictor="mlp", pred_dim=32, pred_depth=2, history=1, action_dim=2, frameskip=1,
               sigreg_weight=0.0, var_weight=1.0, cov_weight=0.04, idm_weight=1.0, rollout_steps=2)
    cfg.update(kw)
    return WorldModel(WorldModelConfig(**cfg))


def test_compact_training_step_has_every_term_and_each_moves_the_loss() -> None:
    torch.manual_seed(0)
    batch = {"frames": torch.rand(8, 4, 1, 32, 32), "actions": torch.rand(8, 3, 2) * 2 - 1}
    out = _compact().training_step(batch, 0)
    for k in ("teacher_forcing", "rollout", "variance", "covariance", "inverse_dynamics"):
        assert k in out and torch.isfinite(out[k])
    torch.manual_seed(0)
    off = _compact(idm_weight=0.0, var_weight=0.0, cov_weight=0.0).training_step(batch, 0)
    expect = (out["teacher_forcing"] + out["rollout"] + out["variance"] + 0.04 * out["covariance"]
              + out["inverse_dynamics"])
    torch.testing.assert_close(out["loss"].detach(), expect)
    assert "inverse_dynamics" not in off and "variance" not in off


def test_inverse_dynamics_gradient_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    m = _compact(var_weight=0.0, cov_weight=0.0, rollout_steps=0)
    batch = {"frames": torch.rand(4, 3, 1, 32, 32), "actions": torch.rand(4, 2, 2)}
    z = m.encode_clip(batch["frames"])
    m.inverse_dynamics.loss(z, batch["actions"]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_bad_predictor_and_weights_are_named() -> None:
    with pytest.raises(ConfigError, match="model.predictor"):
        WorldModelConfig(predictor="gru").validate()
    with pytest.raises(ConfigError, match="idm_weight"):
        WorldModelConfig(idm_weight=-1.0).validate()


def test_shipped_compact_config_builds_the_compact_model() -> None:
    from jepalab.config import load_experiment

    exp = load_experiment(ROOT / "configs" / "wm_tworoom.yaml")
    model = WorldModel(exp.model) if isinstance(exp.model, WorldModelConfig) else None
    assert model is not None
    assert isinstance(model.encoder, KeypointEncoder) and isinstance(model.predictor, MLPDynamics)
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_ensemble_members_start_apart_share_the_main_init_and_train() -> None:
    torch.manual_seed(0)
    one = _compact()
    torch.manual_seed(0)
    three = _compact(ensemble=3)
    for (k, a), (_, b) in zip(one.state_dict().items(), three.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)  # the main model is the same with or without members
    assert len(three.members) == 2
    batch = {"frames": torch.rand(8, 4, 1, 32, 32), "actions": torch.rand(8, 3, 2) * 2 - 1}
    out = three.training_step(batch, 0)
    out["loss"].backward()
    assert "ensemble" in out
    assert all(p.grad is not None for p in three.members.parameters())
    z, a = torch.randn(5, 1, 8), torch.rand(5, 3, 2) * 2 - 1
    for p in three.members.parameters():  # members trained apart disagree
        torch.nn.init.normal_(p, std=0.2)
    assert three.rollout_members(z, a).shape == (3, 5, 3, 8)


def test_uncertainty_cost_steers_the_plan_away_from_disagreement() -> None:
    from jepalab.planning import CEM

    class Disagree:
        """Two members: identical for actions along +x, they split apart along +y."""

        action_dim = 2
        members = [None]

        def rollout_members(self, z, actions, a_hist=None):
            a = actions.cumsum(1)
            base = z[:, -1:] + torch.stack([a[..., 0], a[..., 1] * 0], -1)
            other = base + torch.stack([a[..., 0] * 0, a[..., 1].abs() * 3], -1)
            return torch.stack([base, other])

        def rollout(self, z, actions, a_hist=None):
            return self.rollout_members(z, actions, a_hist)[0]

    z, goal = torch.zeros(1, 1, 2), torch.tensor([[1.0, 0.0]])
    # member 0 sees no effect of y, so y is free under the plain cost; the penalty pins it to 0
    plain = CEM(Disagree(), horizon=2, samples=200, iterations=5, elites=20, seed=0).plan(z, goal)
    safe = CEM(Disagree(), horizon=2, samples=200, iterations=5, elites=20, seed=0, uncertainty=1.0).plan(z, goal)
    assert safe[..., 1].abs().mean() < 0.1 < plain[..., 1].abs().mean()
    with pytest.raises(ConfigError, match="ensemble"):
        CEM(_compact(), horizon=2, uncertainty=1.0)
