"""The demo's measurements on held-out bouncing-ball clips (``split="test"``).

What is measured, per model (JEPA, pixel twin, JEPA with z):
- linear-probe R^2 of the ball position from one frame's frozen embedding, and of its velocity
  from two consecutive embeddings (a single frame does not show motion);
- R^2 of the same position probe (fit on *true* embeddings of training clips) applied to
  *predicted* embeddings 1..H steps ahead;
- on the stochastic world, where a one-step prediction lands relative to the two possible futures
  (``BouncingBalls.next_modes``): probed position for the JEPAs, intensity centroid for the pixel
  twin (``jepalab.eval.blur.mode_assignment``), and how many of the 2 modes the z-samples cover;
- the pixel twin's blur against the true frame (peak, spread, blob count);
- collapse statistics of the test embeddings.
R^2 figures all come from ``jepalab.eval.probes.linear_probe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jepalab.errors import DataError
from jepalab.eval.blur import BETWEEN, MODE_A, MODE_B, centroid, mode_assignment, mode_fractions
from jepalab.eval.monitors import collapse_stats
from jepalab.eval.probes import linear_probe


#: A fixed ridge for the second reading of predicted embeddings. GCV (fit on true embeddings) can
#: pick a near-zero ridge that leans on low-variance directions a predictor does not reproduce,
#: so the demo reports predicted-embedding R^2 under both the GCV probe and this one.
ROBUST_RIDGE = 1e-3


@dataclass
class Clips:
    """A fixed set of clips: ``frames (N, T, C, H, W)``, ``state (N, T, 4)`` (x, y, vx, vy)."""

    frames: Tensor
    state: Tensor


def collect(source: Any, n: int, batch_size: int = 256, first_step: int = 0) -> Clips:
    """Concatenate ``source.batch`` calls into ``n`` clips (steps ``first_step, first_step+1, ...``)."""
    frames, state, step = [], [], first_step
    while sum(f.shape[0] for f in frames) < n:
        b = source.batch(step, min(batch_size, n - sum(f.shape[0] for f in frames)))
        frames.append(b["frames"])
        state.append(b["state"])
        step += 1
    return Clips(torch.cat(frames), torch.cat(state))


@torch.no_grad()
def embed(model: Any, frames: Tensor, batch_size: int = 128) -> Tensor:
    """Per-frame embeddings of clips ``(N, T, C, H, W) -> (N, T, D)`` on the model's device (CPU out)."""
    dev = next(model.parameters()).device
    out = [model.encode_clip(frames[i:i + batch_size].to(dev)).cpu() for i in range(0, len(frames), batch_size)]
    return torch.cat(out)


class Readout:
    """The position probe as a function, to see *where* a probed prediction lands.

    ``linear_probe`` returns scores only; this solves the same standardized ridge problem (same
    features, penalty ``alpha * N``) so its positions agree with ``linear_probe(..., ridge=alpha)``.
    """

    def __init__(self, x: Tensor, y: Tensor, alpha: float) -> None:
        x, y = x.double(), y.double()
        self.mu, sd = x.mean(0), x.std(0, unbiased=False)
        self.sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        xs = (x - self.mu) / self.sd
        self.y_mu = y.mean(0)
        a = xs.T @ xs + alpha * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
        self.w = torch.linalg.solve(a, xs.T @ (y - self.y_mu))

    def __call__(self, x: Tensor) -> Tensor:
        return ((x.double() - self.mu) / self.sd) @ self.w + self.y_mu


def landing_coordinate(pos: Tensor, modes: Tensor) -> Tensor:
    """Position along the segment mode 0 -> mode 1: ``(N, 2), (N, 2, 2) -> (N,)`` (0, 0.5, 1)."""
    a, b = modes[:, 0].double(), modes[:, 1].double()
    seg = b - a
    return ((pos.double() - a) * seg).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)


def _fractions(codes: Tensor) -> dict[str, float]:
    f = mode_fractions(codes)
    return {"on_mode": f["mode_a"] + f["mode_b"], "between": f["between"], "off": f["off"]}


def probe_model(model: Any, train: Clips, test: Clips, k: int, horizon: int, rollout: bool = True) -> dict[str, Any]:
    """Probe R^2 of position / velocity on true embeddings and of position on predicted ones.

    Returns the numbers plus ``readout`` (the position probe) and the test embeddings.
    """
    etr, ete = embed(model, train.frames), embed(model, test.frames)
    d = etr.shape[-1]
    pos = linear_probe(etr.reshape(-1, d), train.state[..., :2].reshape(-1, 2),
                       ete.reshape(-1, d), test.state[..., :2].reshape(-1, 2))
    pair = lambda e: torch.cat([e[:, 1:], e[:, :-1]], dim=-1).reshape(-1, 2 * d)  # noqa: E731
    vel = linear_probe(pair(etr), train.state[:, 1:, 2:4].reshape(-1, 2), pair(ete), test.state[:, 1:, 2:4].reshape(-1, 2))
    out: dict[str, Any] = {
        "probe_pos_r2": pos["r2"], "probe_vel_r2": vel["r2"],
        # the readout places *predicted* embeddings, so it uses the robust ridge (see ROBUST_RIDGE)
        "readout": Readout(etr.reshape(-1, d), train.state[..., :2].reshape(-1, 2), ROBUST_RIDGE),
        "embeddings": ete, "collapse": collapse_stats(ete.reshape(-1, d)),
    }
    if rollout:
        with torch.no_grad():
            dev = next(model.parameters()).device
            pred = model.rollout(ete[:, :k].to(dev), horizon).cpu()  # (N, H, D)
        per_step, per_step_y, robust = [], [], []
        for h in range(horizon):
            r = linear_probe(etr.reshape(-1, d), train.state[..., :2].reshape(-1, 2), pred[:, h],
                             test.state[:, k + h, :2], ridge=pos["ridge"])
            per_step.append(r["r2"])
            per_step_y.append(r["r2_per_target"][1])
            robust.append(linear_probe(etr.reshape(-1, d), train.state[..., :2].reshape(-1, 2), pred[:, h],
                                       test.state[:, k + h, :2], ridge=ROBUST_RIDGE)["r2"])
        out.update(pred_r2=per_step, pred_r2_y=per_step_y, pred_r2_robust=robust, predicted=pred)
    return out


def stochastic_landing(jepa: dict[str, Any], jepa_z: dict[str, Any], model_z: Any, pixel_frames: Tensor,
                       modes: Tensor, keep: Tensor, k: int, samples: int,
                       generator: torch.Generator, world: Any = None) -> dict[str, Any]:
    """Where one-step predictions land relative to the two possible futures (see module doc).

    ``modes (N, 2, 2)`` next positions without / with the kick; ``keep (N,)`` bool selects clips
    whose modes are at least a ball diameter apart; ``pixel_frames`` ``(N, C, H, W)`` one step ahead.
    With ``world`` (the ``BouncingBalls`` source) it also reports :func:`mode_separation`.
    """
    if int(keep.sum()) < 2:
        raise DataError("fewer than 2 test clips have well-separated futures; use more test clips.")
    m = modes[keep]
    res: dict[str, Any] = {"n": int(keep.sum())}
    # deterministic JEPA: probed position of the predicted embedding
    pj = jepa["readout"](jepa["predicted"][keep, 0])
    res["jepa"] = _fractions(mode_assignment(pj, m))
    res["jepa_u"] = landing_coordinate(pj, m)
    # pixel twin: intensity centroid of the predicted frame (dark frames land 'off')
    pc = centroid(pixel_frames[keep])
    res["pixel"] = _fractions(mode_assignment(pc, m))
    res["pixel_u"] = landing_coordinate(pc, m)
    # JEPA with z: several samples per clip; which modes do they reach?
    ete = jepa_z["embeddings"][keep]
    dev = next(model_z.parameters()).device
    codes, us = [], []
    with torch.no_grad():
        for _ in range(samples):
            z = model_z.sample_latents(ete.shape[0], generator)
            p = jepa_z["readout"](model_z.predict(ete[:, :k].to(dev), z).cpu())
            codes.append(mode_assignment(p, m))
            us.append(landing_coordinate(p, m))
    codes_t, u_t = torch.stack(codes, 1), torch.stack(us, 1)  # (N, S) each
    if world is not None:
        res["z_separation"] = mode_separation(model_z, ete, m, world, k, samples, generator)
        # the most a perfect predictor could score: the true embeddings of both futures, probed
        ea, eb = future_embeddings(model_z, m, world)
        true_a, true_b = mode_assignment(jepa_z["readout"](ea), m), mode_assignment(jepa_z["readout"](eb), m)
    hit_a, hit_b = (codes_t == MODE_A).any(1), (codes_t == MODE_B).any(1)
    res["jepa_z"] = _fractions(codes_t.flatten())
    res["jepa_z_u"] = torch.cat(us)
    res["z_coverage"] = {
        "modes_covered_mean": float((hit_a.float() + hit_b.float()).mean()),
        "both_covered": float((hit_a & hit_b).float().mean()),
        "samples_between": float((codes_t == BETWEEN).float().mean()),
        "samples": samples,
        # the same along the segment only (landing coordinate within 0.25 of 0 and of 1): separates
        # "z picks a future" from the across-segment error that the deterministic part also makes
        "both_covered_along": float(((u_t.abs() < 0.25).any(1) & ((u_t - 1).abs() < 0.25).any(1)).float().mean()),
    }
    if world is not None:
        res["z_coverage"]["both_covered_true_futures"] = float(((true_a == MODE_A) & (true_b == MODE_B)).float().mean())
    return res


def mode_separation(model_z: Any, emb: Tensor, modes: Tensor, world: Any, k: int, samples: int,
                    generator: torch.Generator) -> dict[str, float]:
    """Can any latent separate the futures? Embedding distance between the two possible next
    frames vs the z model's prediction noise.

    ``emb (N, T>k, D)`` true embeddings, ``modes (N, 2, 2)``. ``separation`` is the mean
    ``|e(frame of mode 0) - e(frame of mode 1)|`` (frames rendered by ``world``); ``noise`` the
    mean distance from the true next embedding to the closest of ``samples`` z-predictions. A
    ``ratio`` near or below 1 means the encoder maps both futures about as close together as the
    predictor's own error, so no latent can tell them apart.
    """
    dev = next(model_z.parameters()).device
    ea, eb = future_embeddings(model_z, modes, world)
    hist = emb[:, :k].to(dev)
    with torch.no_grad():
        preds = torch.stack([model_z.predict(hist, model_z.sample_latents(len(hist), generator)).cpu()
                             for _ in range(samples)], 1)  # (N, S, D)
    sep = float((ea - eb).norm(dim=-1).mean())
    noise = float((preds - emb[:, k, None]).norm(dim=-1).min(1).values.mean())
    return {"separation": sep, "noise": noise, "ratio": sep / max(noise, 1e-12)}


def future_embeddings(model: Any, modes: Tensor, world: Any) -> tuple[Tensor, Tensor]:
    """Embeddings of the two possible next frames (rendered by ``world``): ``(N, 2, 2) -> (N, D) x 2``."""
    ea = embed(model, world.render(modes[:, 0].reshape(-1, 1, 1, 2)))[:, 0]
    eb = embed(model, world.render(modes[:, 1].reshape(-1, 1, 1, 2)))[:, 0]
    return ea, eb


def z_sample_spread(model_z: Any, hist: Tensor, samples: int, generator: torch.Generator) -> float:
    """Mean pairwise distance between z-sampled predictions relative to the embedding scale."""
    dev = next(model_z.parameters()).device
    with torch.no_grad():
        preds = torch.stack([
            model_z.predict(hist.to(dev), model_z.sample_latents(hist.shape[0], generator)).cpu()
            for _ in range(samples)], 1)  # (N, S, D)
    pair = torch.cdist(preds, preds).mean()
    scale = hist[:, -1].std(0).norm().clamp_min(1e-12)
    return float(pair / scale)


__all__ = ["Clips", "collect", "embed", "Readout", "probe_model", "stochastic_landing", "landing_coordinate",
           "mode_separation", "future_embeddings", "z_sample_spread"]
