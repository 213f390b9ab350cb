"""Inverse dynamics: recover the action from two consecutive embeddings.

Sobal et al. 2025 ("Learning from Reward-Free Offline Data: A Case for Planning with Latent
Dynamics Models", PLDM) and Meta's EB-JEPA world model add this term to the prediction loss: a
small head must read ``a_t`` off ``(z_t, z_{t+1})``. Why it helps planning: the prediction and
variance-covariance terms are satisfied by any embedding that is predictable and spread out,
including one that spends its dimensions on things the agent does not control; inverse dynamics
makes the embedding keep what the actions change, which is exactly what a planner searches over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepalab.errors import ShapeError


class InverseDynamicsHead(nn.Module):
    """MLP ``(z_t, z_{t+1}) -> a_t``; ``loss(z (B, T, D), actions (B, T-1, A))`` is the MSE."""

    def __init__(self, embed_dim: int, action_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.GELU(), nn.Linear(hidden, action_dim))

    def forward(self, z_now: Tensor, z_next: Tensor) -> Tensor:
        return self.net(torch.cat([z_now, z_next], dim=-1))

    def loss(self, z: Tensor, actions: Tensor) -> Tensor:
        if z.dim() != 3 or actions.shape != (*z.shape[:1], z.shape[1] - 1, self.action_dim):
            raise ShapeError(f"InverseDynamicsHead.loss needs z (B, T, D) and actions (B, T-1, {self.action_dim}), "
                             f"got {tuple(z.shape)} and {tuple(actions.shape)}.")
        return F.mse_loss(self(z[:, :-1], z[:, 1:]), actions)


__all__ = ["InverseDynamicsHead"]
