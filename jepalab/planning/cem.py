"""Cross-entropy method (CEM) planning over action sequences in latent space.

Why CEM: it needs only forward rollouts (no gradients through the world model), parallelises
perfectly over candidates, and is what the JEPA world-model papers plan with. LeWorldModel
(Maes et al., 2026): 300 samples, 30 iterations, 30 elites, horizon 5, receding horizon.
V-JEPA 2-AC (Assran et al., 2025): 800 samples, 10 iterations, L1 cost, actions in a small ball.
Method after Rubinstein (1999): sample around a Gaussian, refit it to the lowest-cost elites.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jepalab.errors import ConfigError
from jepalab.planning.base import LatentModel, Planner, PlanResult


class CEM(Planner):
    """Cross-entropy planner, batched over ``E`` environments x ``samples`` candidates.

    Each iteration draws ``samples`` sequences ``(E, N, H, A)`` around the current mean (slot 0
    is the mean itself, so the returned plan never gets worse from one iteration to the next),
    projects them into the bounds, scores them with one ``model.rollout`` call and refits mean
    and std to the ``elites`` cheapest. ``init_std`` defaults to half the box width;
    ``min_std`` keeps the search from freezing too early. Returns the cheapest sequence seen.
    See :class:`Planner` for the shared arguments.
    """

    def __init__(
        self,
        model: LatentModel,
        horizon: int = 5,
        samples: int = 300,
        iterations: int = 30,
        elites: int = 30,
        init_std: float | None = None,
        min_std: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(model, horizon, **kwargs)
        if samples < 2 or iterations < 1:
            raise ConfigError(f"CEM needs samples >= 2 and iterations >= 1, got {samples} and {iterations}.")
        if not 1 <= elites <= samples:
            raise ConfigError(f"elites must be in [1, samples={samples}], got {elites}.")
        if min_std < 0 or (init_std is not None and init_std <= 0):
            raise ConfigError("init_std must be > 0 and min_std >= 0.")
        self.samples, self.iterations, self.elites = samples, iterations, elites
        self.init_std, self.min_std = init_std, min_std

    def _optimize(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None, init: Tensor) -> PlanResult:
        e, dev = init.shape[0], init.device
        mean, std = init, self.initial_std(init, self.init_std)
        best_a, best_c = mean.clone(), torch.full((e,), float("inf"), device=dev)
        for _ in range(self.iterations):
            cand = self.sample_around(mean, std, self.samples)  # (E, N, H, A)
            cost = self.evaluate(z_hist, goal, a_hist, cand)  # (E, N)
            elite_c, elite_i = torch.topk(cost, self.elites, dim=1, largest=False, sorted=True)
            elites = torch.gather(cand, 1, elite_i[:, :, None, None].expand(-1, -1, self.horizon, self.action_dim))
            better = elite_c[:, 0] < best_c
            best_c = torch.where(better, elite_c[:, 0], best_c)
            best_a = torch.where(better[:, None, None], elites[:, 0], best_a)
            mean = elites.mean(dim=1)
            std = elites.std(dim=1, unbiased=False).clamp_min(self.min_std)
        return PlanResult(best_a, best_c)
