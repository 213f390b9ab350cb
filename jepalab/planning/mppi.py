"""Model predictive path integral (MPPI) planning in latent space.

Why MPPI beside CEM: instead of keeping a hard top-k, every candidate contributes to the new mean
with weight ``exp(-cost / temperature)``, which uses all rollouts and gives smoother plans.
Williams et al., "Information theoretic MPC for model-based reinforcement learning" (2017);
the variance update follows the CEM-style adaptation used by TD-MPC (Hansen et al., 2022).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jepalab.errors import ConfigError
from jepalab.planning.base import LatentModel, Planner, PlanResult


class MPPI(Planner):
    """MPPI planner, batched over ``E`` environments x ``samples`` candidates.

    Costs are standardised per environment (``(c - min) / std``) before the softmax, so
    ``temperature`` is unit-free: small values approach CEM with one elite, large ones average
    all samples. With ``adapt_std`` the sampling std is refit to the weighted spread (never
    below ``min_std``); otherwise it stays at ``init_std`` (default: half the box width).
    Slot 0 of every batch is the current mean; the final mean is scored too, and the cheapest
    sequence seen is returned. See :class:`Planner` for the shared arguments.
    """

    def __init__(
        self,
        model: LatentModel,
        horizon: int = 5,
        samples: int = 300,
        iterations: int = 10,
        temperature: float = 0.3,
        init_std: float | None = None,
        min_std: float = 0.0,
        adapt_std: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if samples < 2 or iterations < 1:
            raise ConfigError(f"MPPI needs samples >= 2 and iterations >= 1, got {samples} and {iterations}.")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}.")
        if min_std < 0 or (init_std is not None and init_std <= 0):
            raise ConfigError("init_std must be > 0 and min_std >= 0.")
        self.samples, self.iterations, self.temperature = samples, iterations, temperature
        self.init_std, self.min_std, self.adapt_std = init_std, min_std, adapt_std

    def _optimize(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None, init: Tensor) -> PlanResult:
        e, dev = init.shape[0], init.device
        mean, std = init, self.initial_std(init, self.init_std)
        best_a, best_c = mean.clone(), torch.full((e,), float("inf"), device=dev)
        for _ in range(self.iterations):
            cand = self.sample_around(mean, std, self.samples)  # (E, N, H, A)
            cost = self.evaluate(z_hist, goal, a_hist, cand)  # (E, N)
            best_c, best_a = keep_best(cost, cand, best_c, best_a)
            scaled = (cost - cost.min(dim=1, keepdim=True).values) / cost.std(dim=1, keepdim=True).clamp_min(1e-12)
            w = torch.softmax(-scaled / self.temperature, dim=1)[:, :, None, None]  # (E, N, 1, 1)
            mean = (w * cand).sum(dim=1)
            if self.adapt_std:
                var = (w * (cand - mean.unsqueeze(1)).square()).sum(dim=1)
                std = var.sqrt().clamp_min(self.min_std)
        final = self.project(mean).unsqueeze(1)
        best_c, best_a = keep_best(self.evaluate(z_hist, goal, a_hist, final), final, best_c, best_a)
        return PlanResult(best_a, best_c)


def keep_best(cost: Tensor, cand: Tensor, best_c: Tensor, best_a: Tensor) -> tuple[Tensor, Tensor]:
    """Update the running best ``(E,)`` cost and ``(E, H, A)`` plan with candidates ``(E, N, H, A)``."""
    c, i = cost.min(dim=1)
    a = cand[torch.arange(cand.shape[0], device=cand.device), i]
    better = c < best_c
    return torch.where(better, c, best_c), torch.where(better[:, None, None], a, best_a)
