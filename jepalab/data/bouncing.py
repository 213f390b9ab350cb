"""A bouncing-ball world generated on the fly: the test bed for "pixels blur, embeddings don't".

Why a synthetic world: the claim that pixel prediction of an uncertain future averages the modes
(a blurry "ghost" of two balls) while embedding prediction keeps what matters needs a world whose
future has *known* modes. Here the true state (positions, velocities) and, in the stochastic
variant, the two possible next positions are exact, so probes and blur metrics can be scored
against ground truth. Setting: Srivastava et al. 2015 ("Unsupervised Learning of Video
Representations using LSTMs") popularised bouncing balls for video prediction; the bimodal kick
follows the argument of LeCun 2022 ("A Path Towards Autonomous Machine Intelligence", sec. 4)
that regression in pixel space averages over the possible futures.

Everything is vectorized torch, no dataset on disk. A batch is a pure function of
``(seed, split, step)``: the trainer can resume bit-exactly and DDP rank ``r`` gets rows
``[r*B/W, (r+1)*B/W)`` of the very batch a single process would get (all random numbers are drawn
for the global batch, which is cheap; only the rank's rows are simulated and rendered).

Coordinates are continuous pixels: ``x`` runs along the width (columns), ``y`` along the height
(rows), pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``. A ball's centre stays in
``[radius, img_size - radius]`` so it is always fully visible. State layout per time step:
``[x_0, y_0, ..., x_{K-1}, y_{K-1}, vx_0, vy_0, ..., vx_{K-1}, vy_{K-1}]`` (positions first), so
``state[..., :2K]`` is directly comparable with :meth:`BouncingBalls.next_modes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from jepalab.data.source import mix_seed, rank_rows
from jepalab.errors import ConfigError, ShapeError

VARIANTS = ("deterministic", "stochastic", "distractors", "actions")
SPLITS = ("train", "test")

# Distinct, bright colours for balls when channels == 3 (ball k uses _PALETTE[k % len]).
_PALETTE = (
    (1.0, 0.25, 0.25),
    (0.25, 1.0, 0.25),
    (0.3, 0.5, 1.0),
    (1.0, 1.0, 0.25),
    (1.0, 0.25, 1.0),
    (0.25, 1.0, 1.0),
)
_DISTRACTOR_LEVEL = 0.6


@dataclass
class BouncingConfig:
    """Hyper-parameters of the bouncing-ball world (all plain types, YAML-friendly).

    ``speed`` is the (min, max) speed in pixels per frame. In the ``stochastic`` variant the
    horizontal speed is kept ``>= speed[0] >= radius`` so, away from walls, the two possible next
    positions are ``>= 2*speed[0]`` apart (defaults: >= 8 px for balls of radius 3, a visible gap
    between the two ghosts); near a wall the reflection can bring them closer (see
    :meth:`BouncingBalls.next_modes`). In the ``actions`` variant ``action_scale`` is the push
    (pixels/frame) of an action of 1 and the velocity norm is clipped to ``speed[1]``.
    """

    img_size: int = 64
    channels: int = 1
    num_balls: int = 1
    radius: float = 3.0
    speed: tuple[float, float] = (4.0, 6.0)
    frames: int = 4
    variant: str = "deterministic"
    kick_prob: float = 0.5
    num_distractors: int = 8
    action_scale: float = 2.0
    seed: int = 0
    split: str = "train"

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix-it sentence for any inconsistent field."""
        if self.variant not in VARIANTS:
            raise ConfigError(f"BouncingConfig.variant={self.variant!r}: choose one of {VARIANTS}.")
        if self.split not in SPLITS:
            raise ConfigError(f"BouncingConfig.split={self.split!r}: choose 'train' or 'test'.")
        if not isinstance(self.img_size, int) or self.img_size < 8:
            raise ConfigError(f"BouncingConfig.img_size={self.img_size!r}: use an int >= 8.")
        if self.channels not in (1, 3):
            raise ConfigError(f"BouncingConfig.channels={self.channels!r}: use 1 (grey) or 3 (RGB).")
        if not isinstance(self.num_balls, int) or self.num_balls < 1:
            raise ConfigError(f"BouncingConfig.num_balls={self.num_balls!r}: use an int >= 1.")
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ConfigError(f"BouncingConfig.frames={self.frames!r}: a clip needs >= 2 frames.")
        if not 0.5 <= self.radius < self.img_size / 4:
            raise ConfigError(
                f"BouncingConfig.radius={self.radius}: use 0.5 <= radius < img_size/4 "
                f"({self.img_size / 4}) so the ball has room to move."
            )
        if len(self.speed) != 2 or not 0 <= self.speed[0] <= self.speed[1]:
            raise ConfigError(f"BouncingConfig.speed={self.speed!r}: give (min, max) with 0 <= min <= max.")
        room = self.img_size - 2 * self.radius
        if self.speed[1] >= room:
            raise ConfigError(
                f"BouncingConfig.speed max {self.speed[1]} must be below the free width {room:.1f} "
                "(img_size - 2*radius), or a ball could cross the box in one frame."
            )
        if self.variant == "stochastic" and self.speed[0] < self.radius:
            raise ConfigError(
                f"BouncingConfig: the stochastic variant needs speed min ({self.speed[0]}) >= radius "
                f"({self.radius}) so the two futures are >= 2 radii apart; raise speed or lower radius."
            )
        if not 0.0 <= self.kick_prob <= 1.0:
            raise ConfigError(f"BouncingConfig.kick_prob={self.kick_prob}: use a probability in [0, 1].")
        if not isinstance(self.num_distractors, int) or self.num_distractors < 0:
            raise ConfigError(f"BouncingConfig.num_distractors={self.num_distractors!r}: use an int >= 0.")
        if self.action_scale < 0:
            raise ConfigError(f"BouncingConfig.action_scale={self.action_scale}: use a value >= 0.")


def step_dynamics(
    pos: Tensor,
    vel: Tensor,
    low: float,
    high: float,
    flip: Tensor | None = None,
    push: Tensor | None = None,
    max_speed: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Advance balls one frame with elastic wall bounces.

    Order within a step: ``push`` (B, 2) is added to every ball's velocity and the norm clipped to
    ``max_speed``; where ``flip`` (B,) is true the horizontal velocity is reversed (the stochastic
    kick); then ``pos += vel`` and any coordinate outside ``[low, high]`` is mirrored back with
    that velocity component negated (speed is conserved). Balls do not collide with each other.

    Args: ``pos``, ``vel`` (B, K, 2) in pixels and pixels/frame. Returns new ``(pos, vel)``.
    Requires ``|vel| < high - low`` so one reflection suffices.
    """
    if pos.dim() != 3 or pos.shape[-1] != 2 or vel.shape != pos.shape:
        raise ShapeError(f"step_dynamics wants pos and vel of shape (B, K, 2); got {tuple(pos.shape)} and {tuple(vel.shape)}.")
    vel = vel.clone()
    if push is not None:
        if push.shape != (pos.shape[0], 2):
            raise ShapeError(f"step_dynamics push must be (B, 2) = ({pos.shape[0]}, 2); got {tuple(push.shape)}.")
        vel = vel + push[:, None, :].to(vel)
        if max_speed is not None:
            norm = vel.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            vel = vel * (max_speed / norm).clamp(max=1.0)
    if flip is not None:
        if flip.shape != (pos.shape[0],):
            raise ShapeError(f"step_dynamics flip must be (B,) = ({pos.shape[0]},); got {tuple(flip.shape)}.")
        sign = torch.where(flip, -1.0, 1.0).to(vel)
        vel[..., 0] = vel[..., 0] * sign[:, None]
    new = pos + vel
    below, above = new < low, new > high
    new = torch.where(below, 2 * low - new, new)
    new = torch.where(above, 2 * high - new, new)
    vel = torch.where(below | above, -vel, vel)
    return new, vel


class BouncingBalls:
    """Seeded source of bouncing-ball clips, following the ``Source`` protocol of docs/design.md.

    ``batch(step, B)`` returns ``frames`` (B, T, C, H, W) float32 in [0, 1], ``state``
    (B, T, 4K) (positions then velocities, pixels) and ``actions`` (B, T-1, 2) (the normalized
    pushes in [-1, 1] for variant "actions", zeros otherwise).
    Build it directly or by name: ``jepalab.data.build_source("bouncing", {"variant": ...})``.
    """

    config_class = BouncingConfig

    def __init__(self, config: BouncingConfig | None = None) -> None:
        self.config = config if config is not None else BouncingConfig()
        self.config.validate()
        c = self.config
        self.low = float(c.radius)
        self.high = float(c.img_size - c.radius)
        centres = torch.arange(c.img_size, dtype=torch.float32) + 0.5
        self._xs = centres.view(1, 1, 1, -1)  # (1, 1, 1, W)
        self._ys = centres.view(1, 1, -1, 1)  # (1, 1, H, 1)

    @property
    def state_names(self) -> list[str]:
        """Names of the ``state`` columns, e.g. ``['x0', 'y0', 'vx0', 'vy0']`` for one ball."""
        k = self.config.num_balls
        return [f"{a}{i}" for i in range(k) for a in ("x", "y")] + [f"{a}{i}" for i in range(k) for a in ("vx", "vy")]

    # ------------------------------------------------------------------ rendering
    def render(self, positions: Tensor, radius: float | None = None) -> Tensor:
        """Draw anti-aliased balls at arbitrary sub-pixel centres.

        ``positions`` (..., K, 2) pixels -> frames (..., C, H, W) in [0, 1]. Ball k is drawn in
        ``_PALETTE[k]`` when C == 3; overlapping balls combine by maximum. The disc edge is a
        one-pixel linear ramp, so a sub-pixel move changes the image.
        """
        c = self.config
        if positions.dim() < 2 or positions.shape[-1] != 2:
            raise ShapeError(f"render wants positions of shape (..., K, 2); got {tuple(positions.shape)}.")
        lead = positions.shape[:-2]
        k = positions.shape[-2]
        p = positions.reshape(-1, k, 2).float()
        r = float(c.radius if radius is None else radius)
        cov = self._discs(p, r)  # (N, K, H, W)
        colours = self._colours_for(k).to(cov.device)
        if k == 1:
            img = cov[:, 0, None] * colours[0, :, None, None]  # (N, C, H, W)
        else:
            img = (cov[:, :, None] * colours[None, :, :, None, None]).amax(dim=1)
        return img.reshape(*lead, c.channels, c.img_size, c.img_size)

    def _colours_for(self, k: int) -> Tensor:
        """(K, C) colour of each ball: white for grey frames, ``_PALETTE`` cycled for RGB."""
        if self.config.channels == 1:
            return torch.ones(k, 1)
        return torch.tensor([_PALETTE[i % len(_PALETTE)] for i in range(k)], dtype=torch.float32)

    def _discs(self, p: Tensor, r: float) -> Tensor:
        """Coverage (N, K, H, W) of soft discs at centres ``p`` (N, K, 2)."""
        xs, ys = self._xs.to(p.device), self._ys.to(p.device)
        dx = xs - p[:, :, 0, None, None]
        dy = ys - p[:, :, 1, None, None]
        dist = torch.sqrt(dx * dx + dy * dy)
        return (r + 0.5 - dist).clamp_(0.0, 1.0)

    def _dots(self, dots: Tensor) -> Tensor:
        """Distractor layer (b, T, 1, H, W): a 2x2 grey square at each of ``dots`` (b, T, M, 2).

        Drawn independently per frame, so the dots carry no information about the balls or
        about each other; squares are splatted by index (cheap) rather than rendered as discs.
        """
        s = self.config.img_size
        b, t, m, _ = dots.shape
        ij = dots.clamp(0, s - 2).long()  # top-left corner, (b, T, M, 2) as (x, y)
        base = ij[..., 1] * s + ij[..., 0]  # (b, T, M)
        idx = torch.cat([base, base + 1, base + s, base + s + 1], dim=-1).reshape(b * t, 4 * m)
        layer = torch.zeros(b * t, s * s)
        layer.scatter_(1, idx, _DISTRACTOR_LEVEL)
        return layer.reshape(b, t, 1, s, s)

    # ------------------------------------------------------------------ dynamics
    def _split_state(self, state: Tensor) -> tuple[Tensor, Tensor]:
        k = self.config.num_balls
        if state.dim() != 2 or state.shape[-1] != 4 * k:
            raise ShapeError(f"state must be (B, {4 * k}) for num_balls={k}; got {tuple(state.shape)}.")
        pos = state[:, : 2 * k].reshape(-1, k, 2)
        vel = state[:, 2 * k :].reshape(-1, k, 2)
        return pos, vel

    @staticmethod
    def _join_state(pos: Tensor, vel: Tensor) -> Tensor:
        return torch.cat([pos.flatten(1), vel.flatten(1)], dim=1)

    def next_modes(self, state: Tensor) -> Tensor:
        """The two possible next positions in the stochastic variant: (B, 4K) -> (B, 2, 2K).

        Mode 0 keeps the horizontal velocity, mode 1 reverses it (for all balls at once: one coin
        per clip). Away from walls the modes are ``2|vx| >= 2*speed[0]`` apart; when the ball is
        within ``|vx|`` of a side wall the reflection can bring them closer.
        """
        pos, vel = self._split_state(state.float())
        b = pos.shape[0]
        outs = []
        for flip in (False, True):
            f = torch.full((b,), flip, dtype=torch.bool, device=pos.device)
            new, _ = step_dynamics(pos, vel, self.low, self.high, flip=f)
            outs.append(new.flatten(1))
        return torch.stack(outs, dim=1)

    def rollout(self, state: Tensor, actions: Tensor) -> Tensor:
        """Deterministic rollout under given normalized actions (for world models and planning).

        ``state`` (B, 4K), ``actions`` (B, H, 2) in [-1, 1] (clipped) -> states (B, H+1, 4K)
        including the start. Uses the push/clip rule of the "actions" variant, no kicks.
        """
        pos, vel = self._split_state(state.float())
        if actions.dim() != 3 or actions.shape[0] != pos.shape[0] or actions.shape[-1] != 2:
            raise ShapeError(f"actions must be (B={pos.shape[0]}, H, 2); got {tuple(actions.shape)}.")
        states = [self._join_state(pos, vel)]
        c = self.config
        for h in range(actions.shape[1]):
            push = actions[:, h].float().clamp(-1, 1) * c.action_scale
            pos, vel = step_dynamics(pos, vel, self.low, self.high, push=push, max_speed=c.speed[1])
            states.append(self._join_state(pos, vel))
        return torch.stack(states, dim=1)

    # ------------------------------------------------------------------ batches
    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        """Rows ``[rank*B/W, (rank+1)*B/W)`` of global batch ``step`` (see module docstring).

        Returns ``frames`` (b, T, C, H, W), ``state`` (b, T, 4K), ``actions`` (b, T-1, 2),
        with ``b = batch_size // world_size``.
        """
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        c = self.config
        gen = torch.Generator().manual_seed(mix_seed(c.seed, SPLITS.index(c.split), step))
        rnd = self._draw(gen, batch_size)
        rnd = {k: v[lo:hi] for k, v in rnd.items()}
        return self._simulate(rnd)

    def _draw(self, gen: Tensor, n: int) -> dict[str, Tensor]:
        """All random numbers of a global batch of ``n`` clips (cheap, O(n*T*K))."""
        c = self.config
        k, t = c.num_balls, c.frames
        pos = self.low + (self.high - self.low) * torch.rand(n, k, 2, generator=gen)
        speed = c.speed[0] + (c.speed[1] - c.speed[0]) * torch.rand(n, k, generator=gen)
        if c.variant == "stochastic":
            # keep |vx| >= speed[0] (>= radius): angle within +-acos(speed[0]/speed) of horizontal
            half = torch.acos((c.speed[0] / speed.clamp_min(1e-6)).clamp(max=1.0))
            ang = (2 * torch.rand(n, k, generator=gen) - 1) * half
            ang = ang + math.pi * (torch.rand(n, k, generator=gen) < 0.5).float()
        else:
            ang = 2 * math.pi * torch.rand(n, k, generator=gen)
        vel = torch.stack([speed * torch.cos(ang), speed * torch.sin(ang)], dim=-1)
        flips = torch.rand(n, t - 1, generator=gen) < c.kick_prob
        actions = 2 * torch.rand(n, t - 1, 2, generator=gen) - 1
        dots = torch.rand(n, t, c.num_distractors, 2, generator=gen) * c.img_size
        return {"pos": pos, "vel": vel, "flips": flips, "actions": actions, "dots": dots}

    def _simulate(self, rnd: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        pos, vel = rnd["pos"], rnd["vel"]
        states, positions = [self._join_state(pos, vel)], [pos]
        for t in range(c.frames - 1):
            flip = rnd["flips"][:, t] if c.variant == "stochastic" else None
            push = rnd["actions"][:, t] * c.action_scale if c.variant == "actions" else None
            pos, vel = step_dynamics(pos, vel, self.low, self.high, flip=flip, push=push, max_speed=c.speed[1])
            states.append(self._join_state(pos, vel))
            positions.append(pos)
        frames = self.render(torch.stack(positions, dim=1))  # (b, T, C, H, W)
        if c.variant == "distractors" and c.num_distractors > 0:
            frames = torch.maximum(frames, self._dots(rnd["dots"]))
        actions = rnd["actions"] if c.variant == "actions" else torch.zeros_like(rnd["actions"])
        return {"frames": frames.contiguous(), "state": torch.stack(states, dim=1), "actions": actions.contiguous()}
