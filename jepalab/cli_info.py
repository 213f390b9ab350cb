"""``jepalab info``: what a run did, read from its files without loading a model.

Why apart from ``cli.py``: it only reads ``experiment.yaml``, ``log.jsonl`` and the checkpoint
folders, so it works on a crashed or half-written run; ``run_summary`` is its Python form.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from jepalab.errors import CheckpointError


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a JSONL log, plus how many lines were unreadable (e.g. cut by a crash)."""
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _checkpoints(run_dir: Path) -> list[tuple[int, str]]:
    from jepalab.checkpoint import list_checkpoints

    return [(int(c.name.split("_", 1)[1]), c.name) for c in list_checkpoints(run_dir)]


def run_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What ``jepalab info`` prints, as a dict: recipe, source, steps done/planned, last metrics,
    checkpoints, collapse flags (log records whose ``collapsed`` entry is true)."""
    import yaml

    from jepalab.experiment import EXPERIMENT_FILE

    rd = Path(run_dir)
    cfg_path, log_path = rd / EXPERIMENT_FILE, rd / "log.jsonl"
    if not rd.is_dir():
        raise CheckpointError(f"Run directory '{rd}' does not exist.")
    if not cfg_path.is_file() and not log_path.is_file() and not _checkpoints(rd):
        raise CheckpointError(f"'{rd}' is not a jepalab run directory: it has no {EXPERIMENT_FILE}, "
                              "log.jsonl or checkpoints/. Pass the directory `jepalab train` wrote.")
    cfg: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cfg_path} is corrupt ({type(e).__name__}): restore it from a backup, or "
                                  "delete the run and train again.") from None
    records, bad = read_log(log_path) if log_path.is_file() else ([], 0)
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    ckpts = _checkpoints(rd)
    last: dict[str, Any] = {}
    for r in records:  # latest value of each scalar metric
        last.update({k: v for k, v in r.items()
                     if isinstance(v, (int, float, bool)) or v in ("nan", "inf", "-inf")})
    flags = [r.get("step") for r in records if any(k.endswith("collapsed") and v is True for k, v in r.items())]
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    return {
        "run_dir": str(rd), "name": cfg.get("name"), "recipe": cfg.get("recipe"),
        "source": data.get("source"), "steps_done": max(steps + [c[0] for c in ckpts], default=0),
        "steps_planned": train.get("steps"), "last_metrics": last, "bad_log_lines": bad,
        "checkpoints": [c[1] for c in ckpts], "collapse_steps": flags,
    }


def cmd_info(args: argparse.Namespace) -> int:
    """Print a run's summary (see ``run_summary``)."""
    s = run_summary(args.run_dir)
    print(f"run:         {s['run_dir']}" + (f"  (name: {s['name']})" if s["name"] else ""))
    print(f"recipe:      {s['recipe'] or '?'}")
    print(f"data:        {s['source'] or '?'}")
    print(f"steps:       {s['steps_done']} / {s['steps_planned'] if s['steps_planned'] is not None else '?'}")
    metrics = {k: v for k, v in s["last_metrics"].items() if k != "step"}
    print("last metrics: " + (", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()) or "(no log yet)"))
    if s["bad_log_lines"]:
        print(f"             ({s['bad_log_lines']} unreadable log line(s) skipped, e.g. cut by a crash)")
    ck = s["checkpoints"]
    print(f"checkpoints: {len(ck)}" + (f" ({', '.join(ck[-3:])}{', ...' if len(ck) > 3 else ''})" if ck else ""))
    flags = s["collapse_steps"]
    if flags:
        print(f"collapse:    FLAGGED at {len(flags)} monitor step(s), first at step {flags[0]}, last at "
              f"{flags[-1]}: the embeddings lost rank/spread; see docs on EMA momentum / SIGReg weight")
    else:
        print("collapse:    no collapse flagged")
    return 0



__all__ = ["cmd_info", "read_log", "run_summary"]
