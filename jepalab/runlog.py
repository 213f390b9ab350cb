"""Run logs: a JSONL metrics file, a JSONL events file, TensorBoard if installed, a progress bar.

Why JSONL: one self-describing line per logged step survives crashes (each line is flushed),
is trivially parsed by the report code (``read_jsonl``) and can be tailed while training runs.
Files written into ``run_dir``:

- ``log.jsonl``: one line per logged step: ``step`` (completed steps), ``time`` (seconds of
  training, summed over resumes), ``loss``, every scalar the recipe returned, ``lr``,
  ``grad_norm``, ``samples_per_s`` and, on monitor steps, ``monitor/rank``, ``monitor/std``,
  ``monitor/collapsed``.
- ``events.jsonl``: ``{"time", "event", "message", ...}`` for start / resume / collapse / divergence
  (also sent to the ``jepalab`` Python logger).
- ``tb/``: TensorBoard scalars, when the ``tensorboard`` package is installed.

Only rank 0 of a distributed run writes (``enabled=False`` elsewhere).
(The module is not called ``logging`` so that it does not shadow the standard library.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from jepalab.atomic import write_bytes_atomic

LOG_FILE = "log.jsonl"
EVENTS_FILE = "events.jsonl"
_logger = logging.getLogger("jepalab")


def _jsonable(v: Any) -> Any:
    """JSON has no NaN/Inf: store them as strings so that every line stays strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete lines of a JSONL file (a torn last line from a crash is skipped)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunLog:
    """Rank-0 writer of ``log.jsonl`` / ``events.jsonl`` / TensorBoard, plus a tqdm bar.

    ``start_step`` is where this process begins (non-zero after a resume): log lines past it from
    the interrupted process are dropped so that the file holds each step exactly once.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._bar = None
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        self._log = open(self.run_dir / LOG_FILE, "a", encoding="utf-8")
        self._events = open(self.run_dir / EVENTS_FILE, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # optional extra: pip install 'jepalab[tensorboard]'
                self._tb = None
        if progress and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """Keep only log lines with ``step <= step`` (all of them are re-logged after a resume)."""
        path = self.run_dir / LOG_FILE
        if not path.exists():
            return
        kept = [r for r in read_jsonl(path) if isinstance(r.get("step"), int) and r["step"] <= step]
        write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def metrics(self, record: dict[str, Any]) -> None:
        """Append one metrics line (must contain ``step``) and mirror scalars to TensorBoard."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        self._log.write(json.dumps(clean) + "\n")
        self._log.flush()
        step = record["step"]
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)
        if self._bar is not None and "loss" in record:
            self._bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record.get('lr', 0):.2e}", refresh=False)

    def event(self, kind: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        """Record a notable event (resume, collapse, divergence) in events.jsonl and the logger."""
        if not self.enabled:
            return
        rec = {"time": time.time(), "event": kind, "message": message, **{k: _jsonable(v) for k, v in fields.items()}}
        self._events.write(json.dumps(rec) + "\n")
        self._events.flush()
        _logger.log(level, "%s: %s", kind, message)
        if self._bar is not None and level >= logging.WARNING:
            self._bar.write(f"[jepalab] {kind}: {message}")

    def advance(self, n: int = 1) -> None:
        """Move the progress bar by ``n`` steps."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Flush and close all files (safe to call twice)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        for f in (getattr(self, "_log", None), getattr(self, "_events", None)):
            if f is not None and not f.closed:
                f.close()
