"""Evaluate a finished run: probes on frozen features, effective rank, and a random-init baseline.

Why one function for the CLI and for Python: ``jepalab eval RUN_DIR`` and a notebook must report
the same numbers. The protocol follows the JEPA papers at laptop scale: freeze the encoder, embed
a training split and a held-out split of the run's own data source, fit read-outs on the first
and score them on the second -- linear (I-JEPA, Assran et al. 2023), weighted k-NN (DINO, Caron et
al. 2021), attentive (V-JEPA, Bardes et al. 2024) -- plus RankMe effective rank and the collapse
flags (Garrido et al. 2023). Labelled image sets are scored by accuracy, worlds with a true
``state`` (bouncing balls, recorded trajectories) by R^2 of the state at the first frame. The same
numbers for the *same architecture at its initial weights* (the run's seed) say how much
training helped: a probe on random conv features is often far above chance, so a bare accuracy
means little without it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from jepalab.atomic import write_text_atomic
from jepalab.errors import CheckpointError, ConfigError, DataError, ShapeError
from jepalab.eval.probes import class_counts, knn_regress
from jepalab.eval.table import format_table
from jepalab.preflight import check_writable_dir

PROBES = ("linear", "knn", "attentive")
EVAL_FILE = "eval.json"
#: every probe within this of the random-init twin (accuracy or R^2) -> warn: nothing was learned.
BARELY_TRAINED = 0.01


# --- data ---------------------------------------------------------------------------------------
def _split_config(data_cfg: Any, split: str) -> Any:
    """The run's data config with ``split`` replaced (sources without a split field cannot be
    held out)."""
    names = {f.name for f in dataclasses.fields(data_cfg)}
    if "split" not in names:
        raise DataError(f"the run's data source ({type(data_cfg).__name__}) has no 'split' field, so no held-out "
                        "data exists; evaluate with the Python API on your own train/test features.")
    return dataclasses.replace(data_cfg, split=split)


def iter_examples(source: Any, max_samples: int, batch_size: int, clip: bool,
                  seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(inputs, targets)`` batches of up to ``max_samples`` examples of a source.

    Inputs are images ``(B, C, H, W)`` (the first frame of a clip) or whole clips
    ``(B, T, C, H, W)`` when ``clip``; targets are ``labels (B,)`` or ``state`` at the first frame
    ``(B, S)``. In-memory image sources give a seeded random subset, stratified by class
    (:func:`jepalab.eval.probes.sample_rows`: files sorted by class must not bias the probes);
    others are read through ``batch(step, batch_size)`` for steps 0, 1, ..., each batch already a
    random draw of the source's world.
    """
    from jepalab.eval.probes import sample_rows

    if max_samples < 1 or batch_size < 1:
        raise DataError(f"need max_samples >= 1 and batch_size >= 1, got {max_samples}, {batch_size}.")
    if all(hasattr(source, a) for a in ("images", "labels", "prepare")):
        rows = sample_rows(source.labels, max_samples, seed)
        for i in range(0, rows.numel(), batch_size):
            idx = rows[i:i + batch_size]
            yield source.prepare(source.images[idx]), source.labels[idx]
        return
    done, step = 0, 0
    while done < max_samples:
        b = source.batch(step, batch_size)
        step += 1
        if "images" in b:
            x = b["images"]
        elif "frames" in b:
            x = b["frames"] if clip else b["frames"][:, 0]
        else:
            raise DataError(f"source batches need 'images' or 'frames' to evaluate; got keys {sorted(b)}.")
        if "state" in b:
            s = b["state"]
            y = s[:, 0] if s.dim() == 3 else s
        elif "labels" in b:
            y = b["labels"]
        else:
            raise DataError(f"source batches need 'labels' or 'state' to score probes; got keys {sorted(b)}.")
        take = min(x.shape[0], max_samples - done)
        done += take
        yield x[:take], y[:take]


def _is_clip_model(model: nn.Module) -> bool:
    return int(getattr(getattr(model, "config", None), "num_frames", 1) or 1) > 1


# --- features and probes ----------------------------------------------------------------------
def featurize(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], tokens: bool,
              device: torch.device) -> dict[str, Any]:
    """Pooled features ``(N, D)`` via ``model.encode``, optional tokens ``(N, T, D)``, targets."""
    from jepalab.eval.attentive import tokens_of

    feats, toks, ys = [], [], []
    token_error = None
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            x = x.to(device)
            z = model.encode(x)
            if z.dim() == 3:
                z = z.mean(1)
            if z.dim() != 2 or z.shape[0] != x.shape[0]:
                raise ShapeError(f"{type(model).__name__}.encode returned {tuple(z.shape)}; expected (B, D).")
            feats.append(z.float().cpu())
            ys.append(y.cpu())
            if tokens and token_error is None:
                try:
                    toks.append(tokens_of(model, x).float().cpu())
                except ShapeError as e:
                    token_error = str(e)
    return {"x": torch.cat(feats), "y": torch.cat(ys), "tokens": torch.cat(toks) if toks and token_error is None else None,
            "token_error": token_error}


def run_probes(train: dict[str, Any], test: dict[str, Any], probes: Sequence[str], task: str,
               attentive_epochs: int = 40, seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Score every probe in ``probes`` plus rank/collapse stats of the held-out features
    (the attentive probe trains on ``device``; the closed-form probes run on the CPU)."""
    from jepalab.eval.attentive import attentive_probe
    from jepalab.eval.monitors import collapse_stats
    from jepalab.eval.probes import knn_classify, linear_classifier, linear_probe

    out: dict[str, Any] = {"scores": {}, "details": {}, "skipped": {}}
    xtr, ytr, xte, yte = train["x"], train["y"], test["x"], test["y"]
    for p in probes:
        t0 = time.perf_counter()
        if p == "linear":
            if task == "classification":
                out["scores"][p] = linear_classifier(xtr, ytr, xte, yte)
            else:
                d = linear_probe(xtr, ytr, xte, yte)
                out["scores"][p], out["details"][p] = d["r2"], d
        elif p == "knn":
            out["scores"][p] = knn_classify(xtr, ytr, xte, yte) if task == "classification" else knn_regress(xtr, ytr, xte, yte)
        elif p == "attentive":
            if train["tokens"] is None or test["tokens"] is None:
                out["skipped"][p] = train["token_error"] or test["token_error"] or "no token outputs"
                continue
            d = attentive_probe(train["tokens"], ytr, test["tokens"], yte, task=task, epochs=attentive_epochs, seed=seed,
                                device=device)
            out["scores"][p], out["details"][p] = d["accuracy" if task == "classification" else "r2"], d
        out["details"].setdefault(p, {})["seconds"] = round(time.perf_counter() - t0, 3)
    stats = collapse_stats(xte)
    out["rank"] = stats["rank"]
    out["collapse"] = stats
    return out


# --- runs ---------------------------------------------------------------------------------------
def load_run(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """``(trained model, Experiment)`` of a finished run; :class:`CheckpointError` otherwise."""
    from jepalab.config import load_experiment
    from jepalab.experiment import EXPERIMENT_FILE
    from jepalab.recipes.base import CONFIG_FILE, WEIGHTS_FILE, Recipe

    rd = Path(run_dir)
    if not (rd / EXPERIMENT_FILE).is_file():
        raise CheckpointError(f"'{rd}' is not a jepalab run directory: it has no {EXPERIMENT_FILE}. "
                              "Pass the directory that `jepalab train` wrote (default runs/<name>).")
    if not (rd / WEIGHTS_FILE).is_file() or not (rd / CONFIG_FILE).is_file():
        raise CheckpointError(f"'{rd}' has no finished model ({WEIGHTS_FILE} + {CONFIG_FILE} are written when "
                              f"training ends); finish it with `jepalab resume {rd}` first.")
    exp = load_experiment(rd / EXPERIMENT_FILE)
    return Recipe.from_pretrained(rd, map_location=map_location), exp


def random_twin(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture at the initial weights a run with ``seed`` started from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(model)(copy.deepcopy(model.config))


def _finite(obj: Any) -> Any:
    """JSON-safe copy: tensors to lists, non-finite floats to strings (as the run logs do)."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, Tensor):
        return _finite(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def _targets(train: dict[str, Any], test: dict[str, Any], columns: Sequence[int] | None = None,
             names: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Decide classification vs regression; for state, keep ``columns`` (all when None) minus
    constant ones (undefined R^2), and name them when the source names its state columns."""
    y = train["y"]
    if not y.is_floating_point():
        if columns is not None:
            raise DataError("state_columns was given but this source has class labels, not a state.")
        classes = int(torch.unique(y).numel())
        if classes < 2:
            raise DataError("the training split has a single class label, so no probe can be scored; use data "
                            "with at least two classes (e.g. sub-folders) or with a 'state'.")
        counts = torch.bincount(test["y"])
        return "classification", {"num_classes": classes, "chance": float(counts.max()) / float(test["y"].numel())}
    s = y.shape[1]
    cols = list(range(s)) if columns is None else [int(c) for c in columns]
    if not cols or any(not 0 <= c < s for c in cols):
        raise DataError(f"state_columns {list(columns or [])} must be indices in [0, {s}) of the state.")
    cols = [c for c in cols if float(y[:, c].float().std()) > 1e-6]
    if not cols:
        raise DataError("every chosen state column is constant in the training split; nothing to regress.")
    train["y"], test["y"] = train["y"][:, cols].float(), test["y"][:, cols].float()
    info: dict[str, Any] = {"state_columns": cols, "chance": 0.0}
    if names is not None and len(names) == s:
        info["state_names"] = [str(names[c]) for c in cols]
    return "regression", info


def _state_names(source: Any) -> list[str] | None:
    names = getattr(source, "state_names", None)
    names = names() if callable(names) else names
    return list(names) if isinstance(names, (list, tuple)) else None


def evaluate_run(
    run_dir: str | os.PathLike,
    probes: Sequence[str] = PROBES,
    split: str = "test",
    baseline: str | None = "random",
    max_train: int = 2000,
    max_test: int = 1000,
    batch_size: int = 256,
    attentive_epochs: int = 20,
    device: str | torch.device | None = None,
    write: bool = True,
    state_columns: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Evaluate the finished model in ``run_dir`` and write ``run_dir/eval.json`` atomically.

    Embeds up to ``max_train`` examples of the run's training split and ``max_test`` of
    ``split`` (held out), runs ``probes`` (any of ``linear``, ``knn``, ``attentive``), and
    computes effective rank + collapse stats of the held-out features. ``baseline="random"``
    repeats everything for the same architecture at its initial weights (``None`` skips it).
    For state targets, ``state_columns`` picks columns (e.g. only the positions, which one frame
    can show; velocities cannot be read from a single frame); R^2 per column is in ``details``.
    Returns the dict written to eval.json: ``task``, ``metric`` (accuracy or r2), ``chance``,
    ``models.trained`` / ``models.random`` (``scores``, ``rank``, ``collapse``, ``skipped``,
    ``details``), ``gain`` (trained minus random score per probe), ``warnings`` (a class missing
    from a probe set, a model no better than its random init) and, for labels, ``class_counts``
    (rows per class in each probe set).

    Image sets held in memory are sampled at random with the run's seed, stratified by class
    (:func:`jepalab.eval.probes.sample_rows`), so ``max_train`` below the split's size still sees
    every class in its proportion; the same rows serve the trained model and its random twin.
    """
    probes = tuple(probes)
    bad = [p for p in probes if p not in PROBES]
    if bad or not probes:
        raise DataError(f"unknown probe(s) {bad or '(none given)'}: choose from {', '.join(PROBES)}.")
    if baseline not in (None, "random"):
        raise DataError(f"baseline={baseline!r}: use 'random' or None.")
    for flag, v in (("--max-train", max_train), ("--max-test", max_test), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{flag} must be a whole number >= 1, got {v!r}.")
    from jepalab.data import build_source

    dev = eval_device(device)
    if write:
        check_writable_dir(run_dir, "RUN_DIR (where eval.json is written)")
    t_start = time.perf_counter()
    model, exp = load_run(run_dir)
    train_cfg = exp.data
    if getattr(train_cfg, "split", None) == split:
        raise DataError(f"the run trained on split '{split}'; evaluate on a different held-out split (--split).")
    sources = {"train": build_source(exp.source, train_cfg), "test": build_source(exp.source, _split_config(train_cfg, split))}
    clip = _is_clip_model(model)
    limits = {"train": max_train, "test": max_test}

    models = {"trained": model}
    if baseline == "random":
        models["random"] = random_twin(model, exp.seed)
    keep: list[int] | None = None  # state columns kept (regression), fixed by the trained model's pass
    result: dict[str, Any] = {
        "run_dir": str(run_dir), "recipe": exp.recipe, "source": exp.source, "split": split,
        "train_split": getattr(train_cfg, "split", None), "probes": list(probes), "models": {},
    }
    for name, m in models.items():
        m.to(dev)
        # inputs are re-read per model (sources are deterministic) rather than held in memory
        feats = {k: featurize(m, iter_examples(src, limits[k], batch_size, clip, seed=exp.seed),
                              "attentive" in probes, dev) for k, src in sources.items()}
        if "task" not in result:
            task, info = _targets(feats["train"], feats["test"], state_columns, _state_names(sources["train"]))
            keep = info.get("state_columns")
            result.update(task=task, metric="accuracy" if task == "classification" else "r2", **info,
                          n_train=int(feats["train"]["x"].shape[0]), n_test=int(feats["test"]["x"].shape[0]),
                          embed_dim=int(feats["train"]["x"].shape[1]), warnings=[])
            if task == "classification":
                result["class_counts"], result["warnings"] = _class_summary(feats, sources, max_train, max_test)
        elif keep is not None:
            for f in feats.values():
                f["y"] = f["y"][:, keep].float()
        result["models"][name] = run_probes(feats["train"], feats["test"], probes, result["task"], attentive_epochs,
                                            exp.seed, dev)
    if "random" in result["models"]:
        tr, rn = result["models"]["trained"]["scores"], result["models"]["random"]["scores"]
        result["gain"] = {p: tr[p] - rn[p] for p in tr if p in rn}
        gains = [g for g in result["gain"].values() if isinstance(g, float) and math.isfinite(g)]
        if gains and all(abs(g) < BARELY_TRAINED for g in gains):
            result["warnings"].append(
                f"the trained model scores within {BARELY_TRAINED} of its random initialisation on every probe: it "
                f"has barely learned anything; check its steps and loss with `jepalab info {run_dir}`, then train "
                "longer or adjust train.lr.")
        result["gain"]["rank"] = result["models"]["trained"]["rank"] - result["models"]["random"]["rank"]
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    result = _finite(result)
    if write:
        write_text_atomic(Path(run_dir) / EVAL_FILE, json.dumps(result, indent=2))
    return result


def eval_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when present, else CPU; an explicit device must exist here."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device: use cpu, cuda, mps or auto.") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {device}: this machine has no such CUDA device; use --device cpu (or auto).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu (or auto).")
    return dev


def _class_summary(feats: dict[str, dict[str, Any]], sources: dict[str, Any], max_train: int,
                   max_test: int) -> tuple[dict[str, list[int]], list[str]]:
    """Rows per class in each probe set, and a warning for every class one of them lacks."""
    ytr, yte = feats["train"]["y"], feats["test"]["y"]
    full = getattr(sources["train"], "labels", ytr)  # the whole training split, when held in memory
    k = int(max(int(full.max()), int(ytr.max()), int(yte.max()))) + 1
    counts = {"train": class_counts(ytr, k), "test": class_counts(yte, k)}
    in_split = class_counts(full, k)
    names = getattr(sources["train"], "class_names", None)

    def label(cs: list[int]) -> str:
        return ", ".join(repr(names[c]) if names and c < len(names) and names[c] else str(c) for c in cs)

    warnings = []
    lack = [c for c in range(k) if counts["train"][c] == 0 and (in_split[c] or counts["test"][c])]
    if lack:
        fix = (f"raise --max-train (now {max_train}) to at least the {k} classes" if any(in_split[c] for c in lack)
               else "the training split holds none of them, so no probe can predict them")
        warnings.append(f"class(es) {label(lack)} are missing from the probe training set: {fix}.")
    lack = [c for c in range(k) if counts["test"][c] == 0 and counts["train"][c]]
    if lack:
        warnings.append(f"class(es) {label(lack)} are missing from the held-out set, so their accuracy is not "
                        f"measured: raise --max-test (now {max_test}) or hold out more data.")
    return counts, warnings


__all__ = ["PROBES", "EVAL_FILE", "BARELY_TRAINED", "eval_device", "evaluate_run", "format_table", "featurize", "iter_examples", "knn_regress",
           "load_run", "random_twin", "run_probes"]
