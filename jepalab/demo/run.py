"""Train the demo's three models with the one trainer, measure them, write the report.

Models (same frame encoder and predictor, ~0.3M parameters each, all defined by
``configs/demo.yaml``; see ``demo.models``): ``jepa`` (FutureJEPA, next embedding, SIGReg),
``pixel`` (PixelTwin, next frame's pixels, MSE) and ``jepa_z`` (FutureJEPA with a latent z trained
best-of-K: by default 8 learned discrete codes). Two decoders are then trained on the frozen JEPA
encoders, only to draw predicted embeddings as pictures.

Why the whole run sits inside one ``fork_rng`` seeded from the experiment's seed: data, initial
weights, masks and measurement samples then all follow from that seed, so the same command with
the same thread count writes the same results.json (timing fields aside, ``TIMING_FIELDS``).
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
from jepalab.preflight import check_writable_dir

from .models import SIZE_SETTINGS, build_decoder, build_models, load_demo_experiment, n_params, z_config

#: Fields of results.json that measure the machine, not the models: two runs with the same seed,
#: config and thread count agree on everything else, byte for byte.
TIMING_FIELDS = ("train_seconds", "total_seconds", "load_average")


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


def run_demo(variant: str | None = None, size: str = "small", device: str | None = None, quick: bool = False,
             out_dir: str | None = None, seed: int | None = None, z_kind: str = "discrete",
             config: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
             command: str | None = None) -> dict[str, Any]:
    """Train, measure and report (see module docstring); returns the measured numbers and
    ``report`` (path of report.html).

    ``config`` (default ``configs/demo.yaml``) with ``overrides`` defines the JEPA, the world and
    the training; ``seed`` and ``variant`` override the config's ``seed`` and ``data.variant``
    when given; ``size`` (or ``quick``) scales its step counts; ``device`` overrides
    ``train.device``. ``z_kind``: the JEPA-with-z's latent (see ``models.z_config``).
    ``command`` is recorded in results.json as the command that produced it.
    """
    size = "quick" if quick else size
    exp = load_demo_experiment(config, overrides, size, seed, variant)
    z_config(exp.model, 1, z_kind)  # an unknown z kind fails before any training
    dev = resolve_device(device or exp.train.device)
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, device=dev.type, checkpoint_every=0,
                                                             keep_last=1))
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # small convs gain little from many threads, and oversubscription under load
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 2) // 2)))  # is catastrophic (10x)
    try:
        with torch.random.fork_rng(devices=[]):  # one seed for everything; the caller's RNG is restored
            torch.manual_seed(exp.seed)
            return _run(exp, size, dev, out_dir, z_kind, command)
    finally:
        torch.set_num_threads(threads)


def _load_average() -> list[float] | None:
    try:
        return [float(x) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _run(exp: Any, size: str, dev: torch.device, out_dir: str | None, z_kind: str,
         command: str | None) -> dict[str, Any]:
    from jepalab.atomic import write_text_atomic
    from jepalab.config import to_dict
    from jepalab.data.bouncing import BouncingBalls
    from jepalab.experiment import build
    from jepalab.runlog import read_jsonl
    from jepalab.train import train

    from .findings import findings, summary_text
    from .measure import collect
    from .pictures import make_figures
    from .scores import measure_all

    s = SIZE_SETTINGS[size]
    variant, seed, k = exp.data.variant, exp.seed, exp.model.context_frames
    out = Path(out_dir) if out_dir else Path("runs") / f"demo-{variant}{'-quick' if size == 'quick' else ''}"
    check_writable_dir(out, "--out")  # a file or read-only place fails here, not as an OSError
    out.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.time(), _load_average()
    _, train_src = build(exp)
    models = build_models(exp, z_kind)
    steps = exp.train.steps
    timings: dict[str, float] = {}
    for name, model in models.items():
        print(f"[demo] training {name} ({n_params(model):,} parameters) for {steps} steps on {dev}")
        t = time.time()
        train(model, train_src, exp.train, out / name, seed=seed)
        timings[name] = time.time() - t
    dec_cfg = dataclasses.replace(exp.train, steps=max(1, steps // 2),
                                  warmup_steps=min(exp.train.warmup_steps, max(1, steps // 2)))
    decoders = {}
    for name in ("jepa", "jepa_z"):
        print(f"[demo] training a separate decoder on frozen {name} embeddings (for pictures only)")
        dec = build_decoder(models[name], seed)
        t = time.time()
        train(dec, train_src, dec_cfg, out / f"{name}_decoder", seed=seed)
        timings[f"{name}_decoder"] = time.time() - t
        decoders[name] = dec.eval()
    for m in models.values():
        m.eval()

    print("[demo] measuring on held-out clips (split=test)")
    probe_src = BouncingBalls(dataclasses.replace(exp.data, frames=k + 1))
    test_src = BouncingBalls(dataclasses.replace(exp.data, frames=k + int(s["horizon"]), split="test"))
    probe_clips = collect(probe_src, int(s["probe_clips"]), first_step=10**6)  # never seen in training
    test_clips = collect(test_src, int(s["test_clips"]))
    results, arrays = measure_all(models, decoders, probe_clips, test_clips, test_src, k, s, seed)
    results.update(variant=variant, size=size, z_kind=z_kind, device=str(dev), seed=seed, context_frames=k,
                   steps=steps, threads=torch.get_num_threads(), torch=torch.__version__, config=to_dict(exp),
                   world=dataclasses.asdict(test_src.config), params={n: n_params(m) for n, m in models.items()})
    if command:
        results["command"] = command
    logs = {n: read_jsonl(out / n / "log.jsonl") for n in models}
    figs = make_figures(out, arrays, logs, results)
    results["findings"] = findings(results)
    results["train_seconds"] = timings
    results["total_seconds"] = time.time() - t0
    results["load_average"] = {"start": load0, "end": _load_average()}

    from jepalab.report.html import write_report

    report = write_report(out / "report.html", results, figs)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    print(summary_text(results))
    results["report"] = str(report)
    return results


__all__ = ["run_demo", "resolve_device", "TIMING_FIELDS"]
