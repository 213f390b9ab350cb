"""Collapse study: one I-JEPA, five anti-collapse devices, and what the collapse monitor says.

Why: the masked-prediction loss alone has a trivial minimum (every image -> the same embedding,
so every target is predicted exactly). Assran et al. (2023, I-JEPA) avoid it with an EMA teacher
and stop-gradient; VICReg (Bardes et al. 2022), Barlow Twins (Zbontar et al. 2021) and SIGReg
(Balestriero & LeCun 2025, LeJEPA) avoid it with a regularizer on the embedding distribution.
This study trains the SAME I-JEPA (same ViT, masks, predictor, data, steps, seed) five ways:

- ``none``:   online targets with gradient, no regularizer (expected: collapses, flagged);
- ``ema``:    the paper's EMA teacher + stop-gradient;
- ``vicreg``: online targets + ``w * VICReg(pool(context tokens), pool(full-image tokens))``;
- ``barlow``: online targets + ``w * BarlowTwins(pool(context tokens), pool(full-image tokens))``;
- ``sigreg``: online targets, ``(1 - w) * prediction + w * SIGReg(pool(full-image tokens))``.

For each it reports the trainer's monitor (``monitor/collapsed``, the ``collapse`` event), the
collapse statistics of held-out embeddings ``(N, D)`` and a linear-probe R^2 of the balls' state.
    .venv/bin/python benchmarks/collapse_study.py              # ~3-5 min on one thread
The table goes to ``benchmarks/results/collapse_study.md`` with the command in its header.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for ssl_table (the reference rows)

from jepalab.atomic import write_text_atomic
from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import ConfigError
from jepalab.eval.monitors import collapse_stats
from jepalab.eval.probes import linear_probe
from jepalab.masks import Masks
from jepalab.objectives.barlow import BarlowTwinsLoss
from jepalab.objectives.sigreg import SIGReg
from jepalab.objectives.vicreg import VICRegLoss
from jepalab.recipes.ijepa import IJEPA, IJEPAConfig
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
DEVICES = ("none", "ema", "vicreg", "barlow", "sigreg")
#: Regularizer weights. Measured (SSL.md, "Collapse study"): VICReg at 0.04 (a term the size of the
#: prediction loss at the start) is flagged for a while before it recovers, at 0.2 never in the
#: study but still in the smoke test's 32-d toy, at 1 in neither; Barlow Twins, whose loss sees only
#: batch-standardized embeddings, lets the spread shrink until it is flagged at 0.02-0.1 and holds
#: it at 0.5-2 (2: no drift over 400 steps).
DEFAULT_WEIGHTS = {"vicreg": 1.0, "barlow": 2.0, "sigreg": 0.1}


class RegularizedIJEPA(IJEPA):
    """I-JEPA (Assran et al. 2023) whose anti-collapse device is one of ``DEVICES``.

    ``none``/``ema`` are the recipe itself; the regularized variants keep the online target
    (no EMA, no stop-gradient) and add a term on pooled embeddings ``(B, D)``: the mean of the
    context encoder's tokens and the mean of the full-image tokens act as two views.
    """

    def __init__(self, config: IJEPAConfig, device: str, weight: float = 0.0) -> None:
        if device not in DEVICES:
            raise ConfigError(f"anti-collapse device {device!r}: choose one of {DEVICES}.")
        if device not in ("none", "ema") and not weight > 0:
            raise ConfigError(f"device {device!r} needs a weight > 0, got {weight}.")
        super().__init__(dataclasses.replace(config, anti_collapse="ema" if device == "ema" else "none"))
        self.device_kind, self.weight = device, float(weight)
        self.reg: torch.nn.Module | None = {
            "vicreg": VICRegLoss(), "barlow": BarlowTwinsLoss(), "sigreg": SIGReg(num_proj=256),
        }.get(device)
        self._full: Tensor | None = None
        self._ctx: Tensor | None = None

    def targets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, t = super().targets(x)
        self._full = h  # (B, N, D), with gradient when there is no teacher
        return h, t

    def predict_loss(self, ctx: Tensor, masks: Masks, target: Tensor) -> Tensor:
        self._ctx = ctx  # (B, Nc, D) context tokens
        return super().predict_loss(ctx, masks, target)

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        out = super().training_step(batch, step)
        if self.reg is None:
            return out
        assert self._full is not None and self._ctx is not None
        z_full, z_ctx = self._full.mean(1), self._ctx.mean(1)  # (B, D) each
        pred = out["loss"]
        if self.device_kind == "sigreg":
            reg = self.reg(z_full, step=step)
            out["loss"] = (1 - self.weight) * pred + self.weight * reg
        else:
            reg = self.reg(z_ctx, z_full)["loss"]
            out["loss"] = pred + self.weight * reg
        out["prediction"], out["regularizer"] = pred.detach(), reg.detach()
        self._full = self._ctx = None
        return out


def study_config(embed_dim: int = 64, depth: int = 2, steps: int = 200) -> IJEPAConfig:
    """The tiny I-JEPA shared by all variants (32x32 RGB balls, 8x8 patch grid)."""
    return IJEPAConfig(img_size=32, in_chans=3, patch_size=4, encoder="vit", embed_dim=embed_dim, depth=depth,
                       heads=2, pred_dim=32, pred_depth=2, pred_heads=2, total_steps=steps)


def balls(split: str, seed: int) -> BouncingBalls:
    return BouncingBalls(BouncingConfig(img_size=32, channels=3, frames=2, num_balls=3, radius=5.0, split=split, seed=seed))


def held_out(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Probe-train and test frames ``(n, 3, 32, 32)`` with their states ``(n, 12)`` (frame 0)."""
    tr = balls("train", seed + 1).batch(0, n)
    te = balls("test", seed).batch(0, n)
    return tr["frames"][:, 0], tr["state"][:, 0], te["frames"][:, 0], te["state"][:, 0]


def _inspect(model: Any, source: Any, cfg: TrainConfig, run_dir: Path, seed: int,
             probe: tuple[Tensor, ...]) -> dict[str, Any]:
    """Train with jepalab's trainer, then read back its monitor and probe held-out embeddings."""
    t0 = time.perf_counter()
    final = train(model, source, cfg, run_dir, seed=seed)
    wall = time.perf_counter() - t0
    mon = [r for r in read_jsonl(run_dir / "log.jsonl") if "monitor/collapsed" in r]
    events = [e for e in read_jsonl(run_dir / "events.jsonl") if e.get("event") == "collapse"]
    ptx, pty, tex, tey = probe
    model.eval()
    with torch.no_grad():
        ztr, zte = model.encode(ptx), model.encode(tex)
    held = collapse_stats(zte)
    r2 = float(linear_probe(ztr, pty, zte, tey)["r2"]) if torch.isfinite(zte).all() else float("nan")
    return {
        "final_loss": float(final["loss"]), "wall_s": wall,
        "monitor_collapsed": bool(mon[-1]["monitor/collapsed"]) if mon else None,
        "monitor_rank": float(mon[-1]["monitor/rank"]) if mon else float("nan"),
        "first_collapse_step": events[0].get("step") if events else None,
        "held_rank": held["rank_centered"], "held_std_ratio": held["std"] / held["std_ref"],
        "held_collapsed": bool(held["collapsed"]), "probe_r2": r2,
    }


def _train_cfg(steps: int, batch: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, lr=1e-3, weight_decay=0.05, warmup_steps=min(20, steps),
                       checkpoint_every=0, log_every=10, monitor_every=max(steps // 4, 1), progress=False,
                       device="cpu", amp="off")


def run_variant(device: str, steps: int, batch: int, seed: int, run_dir: Path, probe: tuple[Tensor, ...],
                weight: float | None = None, embed_dim: int = 64, depth: int = 2) -> dict[str, Any]:
    """Train the I-JEPA with one anti-collapse ``device`` on 2-frame ball clips (``batch`` clips)."""
    w = DEFAULT_WEIGHTS.get(device, 0.0) if weight is None else weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RegularizedIJEPA(study_config(embed_dim, depth, steps), device, w)
    row = _inspect(model, balls("train", seed), _train_cfg(steps, batch), run_dir, seed, probe)
    return {"device": device, "weight": w, **row}


def run_reference(recipe: str, steps: int, batch: int, seed: int, run_dir: Path, probe: tuple[Tensor, ...]) -> dict[str, Any]:
    """The stand-alone two-view recipe (``vicreg``, ``barlow``, ``lejepa``: own projector, views and
    loss, no predictor) (conv encoder 64-d, projector, views), on the same frames (``2*batch`` images)."""
    from ssl_table import FramesAsImages

    from jepalab.config import from_dict
    from jepalab.recipes import get_recipe

    cls = get_recipe(recipe)
    cfg = from_dict(cls.config_class, dict(
        img_size=32, in_chans=3, encoder="conv", embed_dim=64, patch_size=4, width=16, proj_hidden=256,
        proj_dim=64 if recipe == "lejepa" else 128, augment=dict(crop_scale=[0.7, 1.0], brightness=0.2, contrast=0.2),
    ), where="model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
    row = _inspect(model, FramesAsImages(balls("train", seed)), _train_cfg(steps, 2 * batch), run_dir, seed, probe)
    return {"device": f"{recipe} recipe (reference)", "weight": float("nan"), **row}


def to_markdown(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = [*header, "",
             "| anti-collapse | weight | final loss | monitor: collapsed (step first flagged) | monitor rank | "
             "held-out centred rank | held-out std / isotropic | held-out collapsed | linear R^2 (state) | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = "yes" if r["monitor_collapsed"] else "no"
        if r["first_collapse_step"] is not None:
            flag += f" (step {r['first_collapse_step']})"
        lines.append(f"| {r['device']} | {'-' if r['weight'] != r['weight'] else format(r['weight'], 'g')} | {r['final_loss']:.4f} | {flag} | {r['monitor_rank']:.2f} | "
                     f"{r['held_rank']:.2f} | {r['held_std_ratio']:.3f} | {'yes' if r['held_collapsed'] else 'no'} | "
                     f"{r['probe_r2']:.3f} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="I-JEPA with no / EMA / VICReg / Barlow / SIGReg anti-collapse.")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", default=",".join(DEVICES),
                   help="comma list of devices, each optionally with its weight: e.g. none,ema,barlow:0.2")
    p.add_argument("--references", default="vicreg,barlow,lejepa",
                   help="stand-alone view recipes to run as references ('' for none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "collapse_study.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    devices = [d.strip() for d in a.devices.split(",") if d.strip()]
    probe = held_out(512, a.seed)
    load0 = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["n/a"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(devices):
            d, _, w = spec.partition(":")
            try:
                weight = float(w) if w else None
            except ValueError:
                raise ConfigError(f"--devices: weight of {spec!r} is not a number; write e.g. barlow:0.2.") from None
            rows.append(run_variant(d, a.steps, a.batch, a.seed, Path(tmp) / f"{i}_{d}", probe, weight=weight))
            print(rows[-1], flush=True)
        for r in [x.strip() for x in a.references.split(",") if x.strip()]:
            rows.append(run_reference(r, a.steps, a.batch, a.seed, Path(tmp) / f"reference_{r}", probe))
            print(rows[-1], flush=True)
    cmd = " ".join(["benchmarks/collapse_study.py", *(sys.argv[1:] if argv is None else argv)])
    header = ["# Collapse study: the same I-JEPA with different anti-collapse devices", "",
              f"Command: `.venv/bin/python {cmd}`", "",
              f"Tiny I-JEPA (ViT 64-d, depth 2, 8x8 patches) on 32x32 bouncing balls, {a.steps} steps x batch "
              f"{a.batch}, lr 1e-3, seed {a.seed}, torch {torch.__version__} CPU, {torch.get_num_threads()} thread(s); "
              f"load average at start {' '.join(load0)}. Monitor = the trainer's collapse monitor on the last "
              "logged batch; held-out = 512 test frames; probe = ridge R^2 of the balls' (x, y, vx, vy) at frame 0."]
    md = to_markdown(rows, header)
    write_text_atomic(a.out, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
