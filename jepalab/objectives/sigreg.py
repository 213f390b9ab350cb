"""SIGReg: Sketched Isotropic Gaussian Regularization.

Balestriero & LeCun, 2025, "LeJEPA: Provable and Scalable Self-Supervised Learning Without the
Heuristics". Embeddings should be isotropic Gaussian; this is tested along random 1-D unit
projections with the Epps-Pulley statistic, which compares the empirical characteristic function
(ECF) of each projected sample with the standard normal one ``exp(-t^2/2)``:

    EP = N * integral over t of |phi_N(t) - exp(-t^2/2)|^2 * w(t) dt,   w(t) = exp(-t^2/2)

The integrand is even in ``t`` (``phi_N(-t)`` is the conjugate of ``phi_N(t)``), so it is
integrated on ``[0, t_max]`` with the trapezoid rule and doubled. For Gaussian input its
expectation is ``integral (1 - exp(-t^2)) exp(-t^2/2) dt = sqrt(2 pi) - sqrt(2 pi / 3) ~ 1.06``;
for a fully collapsed batch it grows like ``0.41 * N`` (hundreds for N = 256).
Implemented from the paper's equations only.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.objectives.cross_rank import all_reduce_sum, distributed


class SIGReg(nn.Module):
    """Epps-Pulley test of ``num_proj`` random unit projections of ``z (N, D)`` against N(0, 1).

    Projections are redrawn on every call, identically on all ranks:
    ``generator`` if given; else, if ``step`` is given, a CPU generator seeded from
    ``(seed, step)`` (what recipes pass, since the global RNG is rank-dependent under DDP);
    else the global CPU RNG, broadcast from rank 0 under ``torch.distributed``.
    Under an initialised process group (and ``distributed=True``) the ECF sums and the sample
    count are all-reduced before the statistic, so 2 ranks x B equals 1 rank x 2B, value and
    (DDP-averaged) gradient. Returns the mean statistic over projections (a scalar).
    """

    def __init__(self, num_proj: int = 256, num_points: int = 17, t_max: float = 3.0, seed: int = 0, distributed: bool = True) -> None:
        super().__init__()
        if num_proj < 1 or num_points < 2 or not t_max > 0:
            raise ConfigError(
                f"SIGReg needs num_proj >= 1, num_points >= 2 and t_max > 0, got {num_proj}, {num_points}, {t_max}."
            )
        self.num_proj, self.num_points, self.t_max = int(num_proj), int(num_points), float(t_max)
        self.seed, self.distributed = int(seed), bool(distributed)
        t = torch.linspace(0.0, self.t_max, self.num_points, dtype=torch.float64)
        trap = torch.full_like(t, self.t_max / (self.num_points - 1))
        trap[0] = trap[-1] = trap[0] / 2
        # Symmetric integrand: integral over [-t_max, t_max] = 2 x integral over [0, t_max].
        self.register_buffer("t", t.float(), persistent=False)
        self.register_buffer("phi0", torch.exp(-0.5 * t * t).float(), persistent=False)
        self.register_buffer("quad", (2.0 * trap * torch.exp(-0.5 * t * t)).float(), persistent=False)

    def projections(self, dim: int, generator: torch.Generator | None = None, step: int | None = None, device: torch.device | str = "cpu") -> Tensor:
        """Random unit directions ``(D, num_proj)`` (columns of unit norm), see class doc."""
        if generator is None and step is not None:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + int(step)) % (2**63 - 1))
        a = torch.randn(dim, self.num_proj, generator=generator)
        a = a / a.norm(dim=0, keepdim=True)
        a = a.to(device)
        if generator is None and self.distributed and distributed():
            dist.broadcast(a, src=0)
        return a

    def forward(self, z: Tensor, generator: torch.Generator | None = None, step: int | None = None) -> Tensor:
        if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
            raise ShapeError(f"SIGReg expects embeddings (N, D), got {tuple(z.shape)}; flatten tokens to (B*N, D).")
        if not torch.is_floating_point(z):
            raise ShapeError(f"SIGReg expects floating-point embeddings, got {z.dtype}.")
        # The statistic is computed in fp32 even under autocast: cos/sin of t*x in bf16 lose the
        # small ECF differences that the test measures.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._statistic(z.float() if z.dtype != torch.float64 else z, generator, step)

    def _statistic(self, z: Tensor, generator: torch.Generator | None, step: int | None) -> Tensor:
        a = self.projections(z.shape[1], generator, step, z.device).to(z.dtype)
        x = z @ a  # (N, P)
        xt = x.unsqueeze(-1) * self.t.to(z.dtype)  # (N, P, K)
        ecf = torch.stack([torch.cos(xt).sum(0), torch.sin(xt).sum(0)])  # (2, P, K) sums over N
        n = torch.tensor(float(z.shape[0]), device=z.device, dtype=z.dtype)
        if self.distributed and distributed():
            # every rank computes the same global loss from the reduced ECF; the backward also sums
            # over ranks, so DDP's average gives the single-process gradient (objectives/cross_rank.py)
            ecf = all_reduce_sum(ecf)
            dist.all_reduce(n, op=dist.ReduceOp.SUM)
        ecf = ecf / n
        err = (ecf[0] - self.phi0.to(z.dtype)) ** 2 + ecf[1] ** 2  # (P, K)
        stat = n * (err * self.quad.to(z.dtype)).sum(-1)  # (P,)
        return stat.mean()


def expected_gaussian_value(t_max: float = math.inf) -> float:
    """Large-N expectation of the statistic for Gaussian input (``~1.06`` for ``t_max = inf``).

    ``integral_{-t_max}^{t_max} (exp(-t^2/2) - exp(-3 t^2/2)) dt``, used to sanity-check values.
    """
    def gauss_mass(scale: float) -> float:  # integral of exp(-scale t^2 / 2) on [-t_max, t_max]
        return math.sqrt(2 * math.pi / scale) * math.erf(t_max * math.sqrt(scale / 2))

    return gauss_mass(1.0) - gauss_mass(3.0)
