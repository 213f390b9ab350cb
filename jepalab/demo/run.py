"""Train the demo's three models with the one trainer, measure them, write the report.

Models (same frame encoder and predictor, ~0.3M parameters each): ``jepa`` (FutureJEPA, next
embedding, SIGReg), ``pixel`` (PixelTwin, next frame's pixels, MSE) and ``jepa_z`` (FutureJEPA
with a latent z trained best-of-K: by default 8 learned discrete codes, see ``z_config``). Two
decoders are then trained on the frozen JEPA encoders, only to draw predicted embeddings as pictures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from jepalab.errors import ConfigError

from . import SIZES, VARIANTS

#: Per size: training steps, batch, probe/test clips, rollout horizon, z samples, decoder steps.
SIZE_SETTINGS: dict[str, dict[str, int]] = {
    "quick": dict(steps=40, batch=32, probe_clips=192, test_clips=128, horizon=2, z_samples=4, dec_steps=30),
    "tiny": dict(steps=150, batch=64, probe_clips=512, test_clips=256, horizon=3, z_samples=8, dec_steps=100),
    "small": dict(steps=300, batch=64, probe_clips=1024, test_clips=512, horizon=4, z_samples=8, dec_steps=150),
    "base": dict(steps=1200, batch=128, probe_clips=2048, test_clips=1024, horizon=4, z_samples=16, dec_steps=400),
}
IMG, RADIUS, SPEED, K, LATENT = 32, 2.5, (2.5, 3.5), 3, 2


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an unavailable explicit choice is a ConfigError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu.")
    if device not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device must be auto, cpu, cuda or mps; got '{device}'.")
    return torch.device(device)


def world_config(variant: str, seed: int, frames: int, split: str = "train") -> Any:
    """The demo's bouncing-ball world (32x32 grey, one ball; kicks in the stochastic variant)."""
    from jepalab.data.bouncing import BouncingConfig

    return BouncingConfig(img_size=IMG, channels=1, radius=RADIUS, speed=SPEED, frames=frames,
                          variant=variant, seed=seed, split=split)


def build_models(steps: int, z_kind: str = "discrete") -> dict[str, Any]:
    """The three models; the pixel twin shares the JEPA's encoder/predictor sizes."""
    from jepalab.recipes.future import FutureConfig, FutureJEPA
    from jepalab.recipes.pixel import PixelConfig, PixelTwin

    return {
        "jepa": FutureJEPA(FutureConfig(img_size=IMG, context_frames=K, total_steps=steps)),
        "pixel": PixelTwin(PixelConfig(img_size=IMG, context_frames=K)),
        "jepa_z": FutureJEPA(z_config(steps, z_kind)),
    }


def z_config(steps: int, kind: str = "discrete") -> Any:
    """The JEPA-with-z: ``discrete`` (default: 8 learned codes, multiple-choice learning with a
    deterministic warm-up for the first sixth of training and dead-code re-seeding, z also fed to
    the predictor's hidden layer) or ``gaussian`` (8 draws of z ~ N(0, I), relaxed winner-takes-all).

    Chosen on a validation split (training-split clips never used for training or probes), 8
    samples per clip, clips with both futures reached: 16% vs 8% for the Gaussian z at 300 steps,
    41% vs 25% at 900 steps. Test split, 300 steps, 3 init seeds: 8-19% (mean 12%) vs 7-8%; 900
    steps, 1 seed: 44% vs 24%. What remains is mostly prediction error, which falls with training
    (the z model's best-sample error drops from ~3.4 to ~2.3 while the futures stay ~9 apart).
    """
    from jepalab.recipes.future import FutureConfig

    if kind == "gaussian":
        return FutureConfig(img_size=IMG, context_frames=K, total_steps=steps, latent_dim=LATENT)
    if kind != "discrete":
        raise ConfigError(f"the JEPA-with-z latent (--z) must be 'discrete' or 'gaussian'; got '{kind}'.")
    return FutureConfig(img_size=IMG, context_frames=K, total_steps=steps, latent_dim=LATENT, latent_kind="discrete",
                        latent_samples=8, latent_relax=0.0, latent_to_hidden=True,
                        latent_warmup=max(1, steps // 6), latent_reseed_every=max(1, steps // 12))


def _train_cfg(steps: int, batch: int, device: torch.device, lr: float = 2e-3) -> Any:
    from jepalab.train import TrainConfig

    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=max(1, min(50, steps // 10)),
                       weight_decay=0.01, device=device.type, checkpoint_every=0, keep_last=1,
                       log_every=max(1, min(10, steps // 20)), monitor_every=max(1, steps // 8), progress=True)


def run_demo(variant: str = "stochastic", size: str = "small", device: str = "auto", quick: bool = False,
             out_dir: str | None = None, seed: int = 0, z_kind: str = "discrete") -> dict[str, Any]:
    """Train, measure and report (see module docstring); returns the measured numbers and
    ``report`` (path of report.html). ``z_kind``: the JEPA-with-z's latent (see ``z_config``)."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; got '{variant}'.")
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}; got '{size}'.")
    z_config(1, z_kind)  # an unknown z kind fails before any training
    dev = resolve_device(device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # small convs gain little from many threads, and oversubscription under load
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 2) // 2)))  # is catastrophic (10x)
    try:
        return _run(variant, size, quick, dev, out_dir, seed, z_kind)
    finally:
        torch.set_num_threads(threads)


def _run(variant: str, size: str, quick: bool, dev: torch.device, out_dir: str | None, seed: int,
         z_kind: str = "discrete") -> dict[str, Any]:
    from jepalab.data.bouncing import BouncingBalls
    from jepalab.runlog import read_jsonl
    from jepalab.train import train

    from .decoder import EmbeddingDecoder, EmbeddingDecoderConfig
    from .findings import findings, summary_text
    from .measure import collect
    from .pictures import make_figures
    from .scores import measure_all

    s = SIZE_SETTINGS["quick" if quick else size]
    out = Path(out_dir) if out_dir else Path("runs") / f"demo-{variant}{'-quick' if quick else ''}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_src = BouncingBalls(world_config(variant, seed, frames=K + 2))
    models = build_models(s["steps"], z_kind)
    tcfg = _train_cfg(s["steps"], s["batch"], dev)
    timings: dict[str, float] = {}
    for name, model in models.items():
        print(f"[demo] training {name} ({n_params(model):,} parameters) for {s['steps']} steps on {dev}")
        t = time.time()
        train(model, train_src, tcfg, out / name, seed=seed)
        timings[name] = time.time() - t
    decoders = {}
    for name in ("jepa", "jepa_z"):
        print(f"[demo] training a separate decoder on frozen {name} embeddings (for pictures only)")
        dec = EmbeddingDecoder(EmbeddingDecoderConfig(img_size=IMG), encoder=models[name].encoder)
        t = time.time()
        train(dec, train_src, _train_cfg(s["dec_steps"], s["batch"], dev), out / f"{name}_decoder", seed=seed)
        timings[f"{name}_decoder"] = time.time() - t
        decoders[name] = dec.eval()
    for m in models.values():
        m.eval()

    print("[demo] measuring on held-out clips (split=test)")
    probe_src = BouncingBalls(world_config(variant, seed, frames=K + 1))
    test_src = BouncingBalls(world_config(variant, seed, frames=K + s["horizon"], split="test"))
    probe_clips = collect(probe_src, s["probe_clips"], first_step=10**6)  # never seen in training
    test_clips = collect(test_src, s["test_clips"])
    results, arrays = measure_all(models, decoders, probe_clips, test_clips, test_src, K, s, seed)
    results.update(variant=variant, size="quick" if quick else size, z_kind=z_kind, device=str(dev), seed=seed, context_frames=K,
                   train_seconds=timings, world=dataclasses.asdict(test_src.config),
                   params={n: n_params(m) for n, m in models.items()})
    logs = {n: read_jsonl(out / n / "log.jsonl") for n in models}
    figs = make_figures(out, arrays, logs, results)
    results["findings"] = findings(results)
    results["total_seconds"] = time.time() - t0

    from jepalab.report.html import write_report

    report = write_report(out / "report.html", results, figs)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(summary_text(results))
    results["report"] = str(report)
    return results


def n_params(model: torch.nn.Module) -> int:
    """Trainable parameter count (an EMA teacher or frozen encoder is not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["run_demo", "SIZE_SETTINGS", "resolve_device", "world_config", "build_models", "z_config", "n_params"]
