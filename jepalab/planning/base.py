"""What every latent planner shares: the model protocol, bounds, batching and warm start.

Why one base: CEM, MPPI and gradient planning differ only in how they propose the next action
sequences. Everything else -- checking shapes, expanding ``E`` environments into ``E x N``
candidate rollouts for *one* batched ``model.rollout`` call, keeping actions inside the box and
the optional L2 ball, shifting the previous solution for a warm start, remembering the best
sequence seen and its cost -- lives here once.

Randomness: candidate noise is drawn once per iteration with shape ``(N, H, A)`` from the
planner's own seeded ``torch.Generator`` and shared by all ``E`` environments (common random
numbers). Each environment's result therefore depends only on its own inputs and the seed, not
on which other environments share the batch: planning ``E`` environments at once gives the same
plans as planning them one at a time.

The noise is white by default (LeWorldModel's CEM) or, with ``noise_beta > 0``, coloured in time
(power spectrum ~ 1/f^beta; iCEM, Pinneri et al. 2020, "Sample-efficient Cross-Entropy Method for
Real-time Planning") over the ``H x chunks`` environment steps a plan covers. Why: with frameskip
action blocks, white noise averages out over the ``chunks`` sub-actions of a block and the
candidates barely move the agent, while correlated noise explores whole trajectories (measured on
Two-Room with ``jepalab.planning.diagnose``; regression in tests/test_planning_noise.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from jepalab.errors import ConfigError, DataError, ShapeError
from jepalab.planning.cost import check_cost_kind, check_reduce, latent_cost


@runtime_checkable
class LatentModel(Protocol):
    """Anything a planner can imagine with (``WorldModel`` in ``jepalab.recipes.worldmodel``).

    ``rollout(z_hist (B, k, D), actions (B, H, A), a_hist (B, k-1, A) | None) -> (B, H, D)``:
    autoregressive prediction of the ``H`` embeddings that follow the history when ``actions``
    are applied. ``action_dim`` is ``A``.
    """

    action_dim: int

    def rollout(self, z_hist: Tensor, actions: Tensor, a_hist: Tensor | None = None) -> Tensor: ...


@dataclass
class PlanResult:
    """Best action sequences ``actions (E, H, A)`` and their costs ``cost (E,)`` (lower is better)."""

    actions: Tensor
    cost: Tensor


def _bound(value: float | Tensor | list[float], action_dim: int, name: str) -> Tensor:
    """Turn a scalar or per-dimension bound into a float tensor ``(A,)``."""
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(action_dim).clone()
    if t.numel() != action_dim:
        raise ConfigError(f"{name} has {t.numel()} entries but actions have {action_dim} dims; give one per dim.")
    return t


class Planner:
    """Base class: batched, bounded, seeded, warm-started planning in latent space.

    ``model``: a :class:`LatentModel`. ``horizon`` ``H`` planned steps. ``action_dim`` ``A``
    (defaults to ``model.action_dim``). ``low``/``high``: box bounds, scalars or ``(A,)``.
    ``radius``: optional L2 bound on each step's action (V-JEPA 2-AC keeps actions in a small
    ball); the box must then contain the origin so that projecting onto the ball first and then
    clamping lands in both sets. ``cost``: ``"l2" | "l1" | "mse"``; ``reduce``: how the per-step
    distances over the horizon become one cost, ``"last" | "mean" | "min"`` (``planning/cost.py``;
    ``every_step=True`` is the older spelling of ``"mean"``). ``uncertainty``: weight of the
    ensemble's disagreement (mean over the horizon of the members' embedding std) added to the
    cost, so plans stay where the model was trained (needs ``model.rollout_members``). ``seed``: the planner's generator seed.
    ``chunks``: env actions per planned action (a model trained with frameskip ``f`` on action
    blocks plans ``f x`` the env's action dim; then ``chunks = f``), used to lay the sampling noise
    out in env time. ``noise_beta``: colour of the sampling noise in env time (0 white, 1 pink,
    2 brown/red; iCEM uses 2-2.5). Subclasses implement :meth:`_optimize`.
    """

    #: run ``_optimize`` under ``torch.inference_mode`` (sampling planners); gradient planners need
    #: autograd and set this False (they run under ``no_grad`` and enable gradients themselves).
    inference: bool = True

    def __init__(
        self,
        model: LatentModel,
        horizon: int,
        action_dim: int | None = None,
        low: float | Tensor | list[float] = -1.0,
        high: float | Tensor | list[float] = 1.0,
        radius: float | None = None,
        cost: str = "l2",
        every_step: bool = False,
        seed: int = 0,
        warm_start: bool = True,
        chunks: int = 1,
        noise_beta: float = 0.0,
        reduce: str | None = None,
        uncertainty: float = 0.0,
    ) -> None:
        if not hasattr(model, "rollout"):
            raise ConfigError("The planner's model needs a rollout(z_hist, actions, a_hist) method (LatentModel).")
        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {horizon}.")
        if action_dim is None:
            action_dim = getattr(model, "action_dim", None)
            if action_dim is None:
                raise ConfigError("Pass action_dim: the model has no action_dim attribute.")
        model_dim = getattr(model, "action_dim", None)
        if model_dim is not None and int(model_dim) != int(action_dim):
            raise ShapeError(f"action_dim {action_dim} does not match the model's action_dim {model_dim}.")
        check_cost_kind(cost)
        self.model = model
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)
        self.low = _bound(low, self.action_dim, "low")
        self.high = _bound(high, self.action_dim, "high")
        if bool((self.low > self.high).any()):
            raise ConfigError(f"Action bounds are empty: low {self.low.tolist()} > high {self.high.tolist()}.")
        if radius is not None:
            if radius <= 0:
                raise ConfigError(f"radius must be > 0, got {radius}.")
            if bool((self.low > 0).any() or (self.high < 0).any()):
                raise ConfigError("With an L2 radius the action box must contain 0 (low <= 0 <= high).")
        self.radius = radius
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1 or self.action_dim % chunks:
            raise ConfigError(f"chunks={chunks!r} must be an int >= 1 dividing action_dim={self.action_dim} "
                              "(env actions per planned action: the model's frameskip).")
        if not (isinstance(noise_beta, (int, float)) and 0.0 <= float(noise_beta) <= 4.0):
            raise ConfigError(f"noise_beta={noise_beta!r}: use a number in [0, 4] (0 white, 2 iCEM's coloured noise).")
        self.chunks, self.noise_beta = chunks, float(noise_beta)
        self.cost_kind = cost
        if not (isinstance(uncertainty, (int, float)) and uncertainty >= 0):
            raise ConfigError(f"uncertainty={uncertainty!r}: use a weight >= 0 (0 = off).")
        if uncertainty > 0 and (not callable(getattr(model, "rollout_members", None))
                                or len(getattr(model, "members", ())) < 1):
            raise ConfigError("uncertainty > 0 needs a model with an ensemble of predictors (model.ensemble >= 2, "
                              "rollout_members); train one or set uncertainty=0.")
        self.uncertainty = float(uncertainty)
        self.reduce = reduce if reduce is not None else ("mean" if every_step else "last")
        check_reduce(self.reduce)
        self.every_step = self.reduce == "mean"
        self.seed = seed
        self.warm_start = warm_start
        self.generator = torch.Generator().manual_seed(seed)
        self._prev: Tensor | None = None
        self.last: PlanResult | None = None

    # ----------------------------------------------------------------- public API
    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start (new episode) and reseed the generator (``seed`` or the original)."""
        self._prev = None
        self.last = None
        self.generator.manual_seed(self.seed if seed is None else seed)

    def plan(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None = None, shift: int = 1) -> Tensor:
        """Best action sequences ``(E, H, A)`` for history ``z_hist (E, k, D)`` and ``goal (E, D)``
        (or a goal clip ``(E, G, D)``, compared with the last ``G`` embeddings: ``planning/cost.py``).

        ``a_hist (E, k-1, A)``: actions between the history frames. ``shift``: how many steps of
        the previous plan were executed since it was made (the warm start drops them). The cost
        of the returned plans is in ``self.last.cost``.
        """
        return self.solve(z_hist, goal, a_hist, shift).actions

    def solve(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None = None, shift: int = 1) -> PlanResult:
        """Like :meth:`plan` but returns :class:`PlanResult` (actions and cost)."""
        z_hist, goal, a_hist = self._check(z_hist, goal, a_hist)
        init = self._initial_mean(z_hist.shape[0], shift, z_hist.device)
        with torch.inference_mode() if self.inference else torch.no_grad():
            result = self._optimize(z_hist, goal, a_hist, init)
        # clone outside inference mode: callers get ordinary tensors they may use with autograd
        result = PlanResult(result.actions.clone(), result.cost.clone())
        self._prev = result.actions.clone()
        self.last = result
        return result

    # ------------------------------------------------------- helpers for subclasses
    def project(self, actions: Tensor) -> Tensor:
        """Project ``(..., A)`` actions into the L2 ball (if any) and then the box."""
        low, high = self.low.to(actions.device), self.high.to(actions.device)
        if self.radius is not None:
            norm = torch.linalg.vector_norm(actions, dim=-1, keepdim=True)
            actions = actions * (self.radius / norm.clamp_min(self.radius))
        return torch.maximum(torch.minimum(actions, high), low)

    def evaluate(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None, actions: Tensor) -> Tensor:
        """Costs ``(E, N)`` of candidates ``actions (E, N, H, A)`` in ONE batched rollout."""
        e, n = actions.shape[:2]
        args = (_repeat(z_hist, n), actions.reshape(e * n, self.horizon, self.action_dim), _repeat(a_hist, n))
        spread = None
        if self.uncertainty > 0:  # members disagree where the data never went: penalise going there
            members = self.model.rollout_members(*args)                      # (K, E*N, H, D)
            pred, spread = members[0], members.std(dim=0).norm(dim=-1).mean(dim=1)
        else:
            pred = self.model.rollout(*args)
        expected = (e * n, self.horizon, z_hist.shape[-1])
        if tuple(pred.shape) != expected:
            raise ShapeError(f"model.rollout returned {tuple(pred.shape)}; expected (B, H, D) = {expected}.")
        context = _repeat(z_hist, n) if goal.dim() == 3 else None  # a goal clip looks back into the history
        cost = latent_cost(pred, goal.repeat_interleave(n, dim=0), self.cost_kind, reduce=self.reduce, context=context)
        if spread is not None:
            cost = cost + self.uncertainty * spread
        return cost.reshape(e, n)

    def noise(self, n: int, device: torch.device) -> Tensor:
        """Unit-variance Gaussian noise ``(N, H, A)`` from the planner's generator, shared by all
        envs: white, or coloured along env time when ``noise_beta > 0`` (module docstring)."""
        if self.noise_beta == 0.0:
            eps = torch.randn(n, self.horizon, self.action_dim, generator=self.generator)
        else:
            a_env = self.action_dim // self.chunks
            x = colored_noise(n * a_env, self.horizon * self.chunks, self.noise_beta, self.generator)
            # (N, a_env, H*chunks) -> (N, H, chunks*a_env): a block lists its sub-actions in env order
            eps = x.view(n, a_env, self.horizon * self.chunks).transpose(1, 2).reshape(n, self.horizon, self.action_dim)
        return eps.to(device)

    def uniform(self, n: int, device: torch.device) -> Tensor:
        """Uniform samples ``(N, H, A)`` in the box, shared by all envs."""
        u = torch.rand(n, self.horizon, self.action_dim, generator=self.generator)
        return (self.low + u * (self.high - self.low)).to(device)

    @property
    def center(self) -> Tensor:
        """The box centre ``(A,)`` projected into the ball: the neutral action."""
        return self.project((self.low + self.high) / 2)

    @property
    def half_width(self) -> Tensor:
        """Half the box width ``(A,)``, capped by the radius: a natural initial sampling spread."""
        w = (self.high - self.low) / 2
        return w.clamp(max=self.radius) if self.radius is not None else w

    def initial_std(self, mean: Tensor, init_std: float | None) -> Tensor:
        """Per-entry sampling spread ``(E, H, A)``: ``init_std`` or half the box width."""
        spread = self.half_width if init_std is None else torch.full((self.action_dim,), init_std)
        return spread.to(mean.device).expand_as(mean).clone()

    def sample_around(self, mean: Tensor, std: Tensor, n: int) -> Tensor:
        """``n`` candidates ``(E, N, H, A)`` drawn around ``mean`` (slot 0 is ``mean`` itself, so
        an iteration never loses the current solution), projected into the bounds."""
        eps = self.noise(n, mean.device)
        cand = mean.unsqueeze(1) + std.unsqueeze(1) * eps.unsqueeze(0)
        cand[:, 0] = mean
        return self.project(cand)

    # ---------------------------------------------------------------- internals
    def _optimize(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None, init: Tensor) -> PlanResult:
        raise NotImplementedError

    def _initial_mean(self, e: int, shift: int, device: torch.device) -> Tensor:
        """Warm start: the previous plan shifted by ``shift`` steps, padded with the neutral action."""
        mean = self.center.to(device).expand(e, self.horizon, self.action_dim).clone()
        if shift < 0:
            raise ConfigError(f"shift must be >= 0, got {shift}.")
        prev = self._prev
        if self.warm_start and prev is not None and prev.shape[0] == e and shift < self.horizon:
            mean[:, : self.horizon - shift] = prev[:, shift:].to(device)
        return mean

    def _check(self, z_hist: Tensor, goal: Tensor, a_hist: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        if z_hist.dim() == 2:
            z_hist = z_hist.unsqueeze(1)
        if z_hist.dim() != 3:
            raise ShapeError(f"z_hist must be (E, k, D) embeddings, got {tuple(z_hist.shape)}.")
        e, k, d = z_hist.shape
        if goal.dim() == 1:
            goal = goal.unsqueeze(0).expand(e, -1)
        if goal.dim() == 3 and goal.shape[1] == 1:
            goal = goal[:, 0]
        is_clip = goal.dim() == 3 and (goal.shape[0], goal.shape[2]) == (e, d)  # (E, G, D): planning/cost.py
        if not is_clip and goal.shape != (e, d):
            raise ShapeError(f"goal must be (E, D) = ({e}, {d}) or a clip (E, G, {d}) to match z_hist, got "
                             f"{tuple(goal.shape)}.")
        if a_hist is not None:
            if a_hist.dim() != 3 or a_hist.shape[0] != e or a_hist.shape[1] != k - 1:
                raise ShapeError(f"a_hist must be (E, k-1, A) = ({e}, {k - 1}, A), got {tuple(a_hist.shape)}.")
            if a_hist.shape[2] != self.action_dim:
                raise ShapeError(
                    f"a_hist has action dimension {a_hist.shape[2]} but the planner plans "
                    f"{self.action_dim}-dim actions; pass the actions the model was trained with."
                )
        # NaN/Inf anywhere would silently turn every candidate's cost, and so the plan, into NaN.
        for name, t in (("z_hist", z_hist), ("goal", goal), ("a_hist", a_hist)):
            if t is not None and not bool(torch.isfinite(t).all()):
                raise DataError(f"{name} contains NaN or Inf: check the observations/actions given to the "
                                "planner (e.g. a diverged encoder or an env that returned NaN).")
        return z_hist, goal.to(z_hist.dtype), a_hist


def colored_noise(rows: int, length: int, beta: float, generator: torch.Generator | None = None) -> Tensor:
    """``rows`` independent Gaussian sequences ``(rows, length)`` with power spectrum ~ ``1/f^beta``
    and unit variance per entry (beta 0: white; 2: Brownian-like, smooth over the sequence).

    Drawn in the frequency domain: each rfft bin ``k >= 1`` gets amplitude ``f_k^(-beta/2)`` (the DC
    bin takes the lowest frequency's, so the mean of a sequence also varies), real and imaginary
    parts N(0, amp^2), DC and (even length) Nyquist bins real. The inverse FFT is divided by its
    exact per-entry standard deviation, ``sqrt(a_0^2 + 2 sum_mid a_k^2 (re + im) + a_N^2) / length``.
    """
    if rows < 1 or length < 1:
        raise ShapeError(f"colored_noise needs rows >= 1 and length >= 1, got {rows} and {length}.")
    if length == 1 or beta == 0.0:
        return torch.randn(rows, length, generator=generator)
    freqs = torch.fft.rfftfreq(length, dtype=torch.float64)
    freqs[0] = freqs[1]
    amp = freqs.pow(-beta / 2.0)
    re = torch.randn(rows, freqs.numel(), generator=generator, dtype=torch.float64) * amp
    im = torch.randn(rows, freqs.numel(), generator=generator, dtype=torch.float64) * amp
    im[:, 0] = 0.0
    power = amp[0] ** 2                                   # DC: real part only
    if length % 2 == 0:
        im[:, -1] = 0.0                                   # Nyquist: real part only
        power = power + amp[-1] ** 2 + 4.0 * amp[1:-1].pow(2).sum()
    else:
        power = power + 4.0 * amp[1:].pow(2).sum()
    x = torch.fft.irfft(torch.complex(re, im), n=length) / (power.sqrt() / length)
    return x.float()


def _repeat(x: Tensor | None, n: int) -> Tensor | None:
    """``(E, ...) -> (E*N, ...)``, each env's row repeated ``N`` times consecutively."""
    return None if x is None else x.repeat_interleave(n, dim=0)
