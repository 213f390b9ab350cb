"""All of the demo's numbers for the three trained models, plus the arrays the figures need.

Split from ``measure.py`` (the measuring primitives) so that this file only says *which*
measurements the demo makes; every number lands in a JSON-able dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from jepalab.eval.blur import blur_metrics, centroid
from jepalab.eval.probes import r2_score

from .measure import Clips, probe_model, stochastic_landing, z_sample_spread

FILM_CLIPS = 2      # clips shown as filmstrips
FILM_Z = 3          # z samples drawn per filmstrip clip


def _mean_blur(pred: Tensor, true: Tensor) -> dict[str, float]:
    """Means over frames; a predicted frame with nothing above the background has no spread, so the
    spread is averaged over the others and ``dark_frames`` says how many there were."""
    b = blur_metrics(pred, true)
    spread = b["spread_ratio"][torch.isfinite(b["spread_ratio"])]
    return {"peak_ratio": float(b["peak_ratio"].mean()),
            "spread_ratio": float(spread.mean()) if len(spread) else 0.0,
            "dark_frames": float((~torch.isfinite(b["spread_ratio"])).float().mean()),
            "blobs": float(b["blobs"].float().mean()), "true_blobs": float(b["true_blobs"].float().mean()),
            "two_or_more_blobs": float((b["blobs"] >= 2).float().mean())}


def _safe_centroid(frames: Tensor) -> Tensor:
    """Centroid (N, 2); an all-dark frame (nothing to locate) gets the image centre."""
    c = centroid(frames)
    mid = frames.shape[-1] / 2.0
    return torch.where(torch.isfinite(c), c, torch.full_like(c, mid))


def _public(d: dict[str, Any]) -> dict[str, Any]:
    """Drop tensors / helper objects, keep JSON-able numbers."""
    keep = ("probe_pos_r2", "probe_vel_r2", "pred_r2", "pred_r2_y", "pred_r2_robust", "collapse")
    return {k: d[k] for k in keep if k in d}


@torch.no_grad()
def measure_all(models: dict[str, Any], decoders: dict[str, Any], probe: Clips, test: Clips, world: Any,
                k: int, s: dict[str, int], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Numbers (JSON-able) and arrays (for figures) for ``jepa``, ``pixel`` and ``jepa_z``."""
    gen = torch.Generator().manual_seed(seed + 12345)
    horizon = s["horizon"]
    jepa = probe_model(models["jepa"], probe, test, k, horizon)
    jz = probe_model(models["jepa_z"], probe, test, k, horizon)
    pix = probe_model(models["pixel"], probe, test, k, horizon, rollout=False)
    results: dict[str, Any] = {"models": {"jepa": _public(jepa), "pixel": _public(pix), "jepa_z": _public(jz)}}

    # pixel twin: predicted frames, where their ball is (centroid), and how blurred they are
    pm = models["pixel"]
    dev = next(pm.parameters()).device
    pframes = torch.cat([pm.rollout_frames(test.frames[i:i + 128, :k].to(dev), horizon).cpu()
                         for i in range(0, len(test.frames), 128)])  # (N, H, C, H, W)
    results["models"]["pixel"]["centroid_r2"] = [
        float(r2_score(_safe_centroid(pframes[:, h]), test.state[:, k + h, :2]).mean()) for h in range(horizon)]
    results["pixel_blur"] = _mean_blur(pframes[:, 0], test.frames[:, k])

    # JEPA predictions drawn by the separately trained decoder (and its fidelity on true frames)
    dj = decoders["jepa"].decoder
    ddev = next(dj.parameters()).device
    dec_pred = dj(jepa["predicted"][:, 0].to(ddev)).cpu()
    dec_true = dj(jepa["embeddings"][:, k].to(ddev)).cpu()
    results["decoded_jepa_blur"] = _mean_blur(dec_pred, test.frames[:, k])
    results["decoder_fidelity_blur"] = _mean_blur(dec_true, test.frames[:, k])
    results["models"]["jepa_z"]["z_spread"] = z_sample_spread(models["jepa_z"], jz["embeddings"][:, :k], 4, gen)

    arrays: dict[str, Any] = {
        "pca": {"JEPA": jepa["embeddings"][:, 0].numpy(), "pixel twin": pix["embeddings"][:, 0].numpy(),
                "JEPA + z": jz["embeddings"][:, 0].numpy()},
        "pca_color": test.state[:, 0, 0].numpy(),
    }
    keep = torch.ones(len(test.frames), dtype=torch.bool)
    modes = None
    if world.config.variant == "stochastic":
        modes = world.next_modes(test.state[:, k - 1])  # (N, 2, 2): without / with the kick
        keep = (modes[:, 1] - modes[:, 0]).norm(dim=-1) >= 2 * world.config.radius
        land = stochastic_landing(jepa, jz, models["jepa_z"], pframes[:, 0], modes, keep, k, s["z_samples"], gen,
                                  world)
        arrays["landing"] = {"JEPA (probed)": land.pop("jepa_u").numpy(),
                             "pixel twin (centroid)": land.pop("pixel_u").numpy(),
                             "JEPA + z samples (probed)": land.pop("jepa_z_u").numpy()}
        results["stochastic"] = land
    arrays["film"] = _film(models, decoders, test, pframes, jepa, jz, modes, keep, world, k, horizon, gen)
    return results, arrays


def _film(models: dict[str, Any], decoders: dict[str, Any], test: Clips, pframes: Tensor, jepa: dict[str, Any],
          jz: dict[str, Any], modes: Tensor | None, keep: Tensor, world: Any, k: int, horizon: int,
          gen: torch.Generator) -> list[dict[str, Any]]:
    """Rows of frames for a few clips: truth, possible futures, pixel twin, decoded JEPA, z samples."""
    idx = torch.nonzero(keep).flatten()[:FILM_CLIPS].tolist()
    blank = [None] * k
    dj, dz = decoders["jepa"].decoder, decoders["jepa_z"].decoder
    dev = next(dj.parameters()).device
    mz = models["jepa_z"]
    films = []
    for i in idx:
        rows: list[tuple[str, list[Any]]] = [("truth", [f.numpy() for f in test.frames[i]])]
        if modes is not None:
            both = world.render(modes[i].reshape(2, 1, 2)).amax(0)
            rows.append(("the 2 possible\nnext frames", blank + [both.numpy()] + [None] * (horizon - 1)))
        rows.append(("pixel twin", blank + [f.numpy() for f in pframes[i]]))
        rows.append(("JEPA decoder\non true frames*", [f.numpy() for f in dj(jepa["embeddings"][i].to(dev)).cpu()]))
        rows.append(("JEPA predicted\n(decoded*)", blank + [f.numpy() for f in dj(jepa["predicted"][i].to(dev)).cpu()]))
        hist = jz["embeddings"][i:i + 1, :k].to(dev)
        for j in range(FILM_Z):
            z = mz.sample_latents(1, gen)
            roll = mz.rollout(hist, horizon, z)[0]
            rows.append((f"JEPA + z sample {j + 1}\n(decoded*)", blank + [f.numpy() for f in dz(roll).cpu()]))
        films.append({"clip": i, "rows": rows})
    return films


__all__ = ["measure_all"]
