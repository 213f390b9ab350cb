"""A small residual MLP world-model predictor: ``z_{t+1} = z_t + f(z_{t-k+1..t}, a_t)``.

Why beside the transformer (``ActionConditionedPredictor``): with one compact embedding per frame
the dynamics of a navigation or pushing task are a smooth map of a few numbers, and an MLP of
~0.1 M parameters learns them as well as a 6-layer transformer at a fraction of the cost (the
community Two Rooms model plans at 97% with a 0.13 M-parameter residual MLP; EB-JEPA uses a
2-layer GRU). Planning cost is dominated by ``samples x horizon`` predictor calls, so a cheap step
is what makes CPU planning fast. The residual form with a zero-initialised last layer starts as
the copy-last baseline.

Same interface as :class:`jepalab.nn.ac_predictor.ActionConditionedPredictor`:
``forward(z (B, T, D), actions (B, T, A)) -> (B, T, D)`` teacher-forced, and
``rollout(z_hist (B, k, D), actions (B, H, A), a_hist (B, k-1, A) | None) -> (B, H, D)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepalab.errors import ShapeError


class MLPDynamics(nn.Module):
    """Residual MLP over the last ``history`` embeddings and the current action block."""

    def __init__(self, embed_dim: int, action_dim: int, hidden: int = 256, depth: int = 2, history: int = 1) -> None:
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("action_dim", action_dim), ("hidden", hidden), ("depth", depth),
                        ("history", history)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ShapeError(f"MLPDynamics: {name} must be an int >= 1, got {v!r}.")
        self.embed_dim, self.action_dim, self.history = embed_dim, action_dim, history
        width = history * embed_dim + action_dim
        layers: list[nn.Module] = [nn.Linear(width, hidden), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        out = nn.Linear(hidden, embed_dim)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def _check(self, z: Tensor, actions: Tensor, what: str) -> None:
        if z.dim() != 3 or z.shape[-1] != self.embed_dim:
            raise ShapeError(f"{what}: embeddings must be (B, T, D={self.embed_dim}), got {tuple(z.shape)}.")
        if actions.dim() != 3 or actions.shape[-1] != self.action_dim or actions.shape[0] != z.shape[0]:
            raise ShapeError(f"{what}: actions must be (B={z.shape[0]}, T, A={self.action_dim}), got "
                             f"{tuple(actions.shape)} (action blocks of frameskip x env action dim).")

    def step(self, window: Tensor, action: Tensor) -> Tensor:
        """One step: ``window (B, history, D)`` (oldest first), ``action (B, A)`` -> ``(B, D)``."""
        return window[:, -1] + self.net(torch.cat([window.flatten(1), action], dim=-1))

    def _windows(self, z: Tensor) -> Tensor:
        """``(B, T, D) -> (B, T, history, D)``: frame t's window, the first frame repeated before t=0."""
        k = self.history
        if k == 1:
            return z.unsqueeze(2)
        padded = torch.cat([z[:, :1].expand(-1, k - 1, -1), z], dim=1)
        return padded.unfold(1, k, 1).permute(0, 1, 3, 2)

    def forward(self, z: Tensor, actions: Tensor) -> Tensor:
        """Teacher-forced next-embedding predictions ``(B, T, D), (B, T, A) -> (B, T, D)``."""
        self._check(z, actions, "MLPDynamics")
        if actions.shape[1] != z.shape[1]:
            raise ShapeError(f"MLPDynamics: actions {tuple(actions.shape)} need the (B, T) of embeddings "
                             f"{tuple(z.shape)}: action t moves frame t to t+1.")
        b, t, d = z.shape
        win = self._windows(z).reshape(b * t, self.history, d)
        return self.step(win, actions.reshape(b * t, -1)).view(b, t, d)

    def rollout(self, z_hist: Tensor, actions: Tensor, a_hist: Tensor | None = None) -> Tensor:
        """Imagine ``H`` steps: ``(B, k, D), (B, H, A), (B, k-1, A) | None -> (B, H, D)``.

        Only the last ``history`` embeddings are used (``a_hist`` is accepted for the shared
        protocol; the MLP conditions on the current action block only).
        """
        if z_hist.dim() != 3 or z_hist.shape[1] < 1:
            raise ShapeError(f"rollout: z_hist must be (B, k>=1, D), got {tuple(z_hist.shape)}.")
        self._check(z_hist, actions, "rollout")
        k = self.history
        win = z_hist[:, -k:]
        if win.shape[1] < k:
            win = torch.cat([win[:, :1].expand(-1, k - win.shape[1], -1), win], dim=1)
        outs = []
        for h in range(actions.shape[1]):
            nxt = self.step(win, actions[:, h].to(win.dtype))
            outs.append(nxt)
            win = torch.cat([win[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(outs, dim=1)


__all__ = ["MLPDynamics"]
