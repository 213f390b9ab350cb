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
from jepalab.errors import CheckpointError, DataError, ShapeError

PROBES = ("linear", "knn", "attentive")
EVAL_FILE = "eval.json"


# --- data ---------------------------------------------------------------------------------------
def _split_config(data_cfg: Any, split: str) -> Any:
    """The run's data config with ``split`` replaced (sources without a split field cannot be
    held out)."""
    names = {f.name for f in dataclasses.fields(data_cfg)}
    if "split" not in names:
        raise DataError(f"the run's data source ({type(data_cfg).__name__}) has no 'split' field, so no held-out "
                        "data exists; evaluate with the Python API on your own train/test features.")
    return dataclasses.replace(data_cfg, split=split)


def iter_examples(source: Any, max_samples: int, batch_size: int, clip: bool) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(inputs, targets)`` batches of up to ``max_samples`` examples of a source.

    Inputs are images ``(B, C, H, W)`` (the first frame of a clip) or whole clips
    ``(B, T, C, H, W)`` when ``clip``; targets are ``labels (B,)`` or ``state`` at the first frame
    ``(B, S)``. In-memory image sources are read in dataset order (no repeats); others through
    ``batch(step, batch_size)`` for steps 0, 1, ...
    """
    if max_samples < 1 or batch_size < 1:
        raise DataError(f"need max_samples >= 1 and batch_size >= 1, got {max_samples}, {batch_size}.")
    if all(hasattr(source, a) for a in ("images", "labels", "prepare")):
        n = min(max_samples, len(source.labels))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield source.prepare(source.images[i:j]), source.labels[i:j]
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


def knn_regress(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 20,
                temperature: float = 0.07) -> float:
    """Weighted k-NN regression on cosine similarity -> mean test R^2 (the regression twin of
    ``probes.knn_classify``). ``train_x`` (N, D), ``train_y`` (N, K), ``test_x`` (M, D)."""
    from jepalab.eval.probes import r2_score

    if train_x.dim() != 2 or test_x.dim() != 2 or train_y.dim() != 2 or test_y.dim() != 2:
        raise ShapeError("knn_regress wants features (N, D) and targets (N, K).")
    k = max(1, min(k, train_x.shape[0]))
    tr = nn.functional.normalize(train_x.float(), dim=1)
    te = nn.functional.normalize(test_x.float(), dim=1)
    preds = []
    for i in range(0, te.shape[0], 1024):
        top, idx = (te[i:i + 1024] @ tr.T).topk(k, dim=1)
        w = torch.softmax(top / temperature, dim=1)  # (m, k)
        preds.append((w[..., None] * train_y.float()[idx]).sum(1))
    return float(r2_score(torch.cat(preds), test_y.float()).mean())


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
    ``details``) and ``gain`` (trained minus random score per probe).
    """
    probes = tuple(probes)
    bad = [p for p in probes if p not in PROBES]
    if bad or not probes:
        raise DataError(f"unknown probe(s) {bad or '(none given)'}: choose from {', '.join(PROBES)}.")
    if baseline not in (None, "random"):
        raise DataError(f"baseline={baseline!r}: use 'random' or None.")
    from jepalab.data import build_source

    dev = torch.device(device) if device not in (None, "auto") else torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        feats = {k: featurize(m, iter_examples(src, limits[k], batch_size, clip), "attentive" in probes, dev)
                 for k, src in sources.items()}
        if "task" not in result:
            task, info = _targets(feats["train"], feats["test"], state_columns, _state_names(sources["train"]))
            keep = info.get("state_columns")
            result.update(task=task, metric="accuracy" if task == "classification" else "r2", **info,
                          n_train=int(feats["train"]["x"].shape[0]), n_test=int(feats["test"]["x"].shape[0]),
                          embed_dim=int(feats["train"]["x"].shape[1]))
        elif keep is not None:
            for f in feats.values():
                f["y"] = f["y"][:, keep].float()
        result["models"][name] = run_probes(feats["train"], feats["test"], probes, result["task"], attentive_epochs,
                                            exp.seed, dev)
    if "random" in result["models"]:
        tr, rn = result["models"]["trained"]["scores"], result["models"]["random"]["scores"]
        result["gain"] = {p: tr[p] - rn[p] for p in tr if p in rn}
        result["gain"]["rank"] = result["models"]["trained"]["rank"] - result["models"]["random"]["rank"]
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    result = _finite(result)
    if write:
        write_text_atomic(Path(run_dir) / EVAL_FILE, json.dumps(result, indent=2))
    return result


def format_table(result: dict[str, Any]) -> str:
    """A small text table of an :func:`evaluate_run` result (what ``jepalab eval`` prints)."""
    names = list(result["models"])
    head = (f"{result['recipe']} on {result['source']}: {result['n_train']} train / {result['n_test']} held-out "
            f"('{result['split']}'), metric {result['metric']}, chance {result['chance']:.3g}")
    cols = ["probe", *names] + (["gain"] if "gain" in result else [])
    rows = []
    for p in result["probes"]:
        row = [p]
        for n in names:
            s = result["models"][n]["scores"].get(p)
            row.append(f"{s:.3f}" if isinstance(s, (int, float)) else "skipped")
        if "gain" in result:
            g = result["gain"].get(p)
            row.append(f"{g:+.3f}" if isinstance(g, (int, float)) else "-")
        rows.append(row)
    rows.append(["eff. rank", *[f"{result['models'][n]['rank']:.2f}" for n in names]]
                + ([f"{result['gain']['rank']:+.2f}"] if "gain" in result else []))
    rows.append(["collapsed", *["YES" if result["models"][n]["collapse"]["collapsed"] else "no" for n in names]]
                + (["-"] if "gain" in result else []))
    widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    col_names = result.get("state_names") or [f"col{c}" for c in result.get("state_columns", [])]
    for n in names if result["task"] == "regression" else ():
        for p, d in result["models"][n]["details"].items():
            if "r2_per_target" in d:
                per = ", ".join(f"{c} {v:.2f}" for c, v in zip(col_names, d["r2_per_target"]))
                lines.append(f"R^2 per state column ({p}, {n}): {per}")
    for n in names:
        for p, why in result["models"][n].get("skipped", {}).items():
            lines.append(f"({n}: {p} skipped: {why})")
    return "\n".join(lines)


__all__ = ["PROBES", "EVAL_FILE", "evaluate_run", "format_table", "featurize", "iter_examples", "knn_regress",
           "load_run", "random_twin", "run_probes"]
