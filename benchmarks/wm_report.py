"""Merge ``results/world_models_<env>.json`` (one per env, from ``world_models.py``) into one table.

Run: ``python benchmarks/world_models.py --report`` -> ``benchmarks/results/world_models.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jepalab.atomic import write_text_atomic

ENVS = ("tworoom", "bouncing", "pusht", "Pendulum-v1", "dm_control/reacher-easy-v0")


def _pct(r: dict[str, Any]) -> str:
    lo, hi = r["wilson"]
    return f"{100 * r['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def _causes(r: dict[str, Any]) -> str:
    c = {k: v for k, v in (r.get("failure_causes") or {}).items() if v}
    return ", ".join(f"{k} {v}" for k, v in c.items()) or "none"


def _gap(r: dict[str, Any]) -> str:
    return "—" if r.get("cost_gap") is None else f"{r['cost_gap']:+.3f}"


def write_report(results: Path, out: Path, suffix: str = "") -> str:
    """Build the markdown from every env's JSON in ``results`` (``suffix`` "_quick" for smoke
    runs); returns and writes it."""
    files = {e: results / f"world_models_{e.replace('/', '_')}{suffix}.json" for e in ENVS}
    found = {e: json.loads(f.read_text()) for e, f in files.items() if f.is_file()}
    L = ["# World models end to end (CPU, fp32, 1 thread per process)", "",
         "Goal = the recorded frame 25 env steps ahead on a held-out episode, 50-step budget, receding-horizon "
         "planning with one replan per action block (frameskip 5), random actions on the same goals. "
         "Brackets: Wilson 95% intervals. Failure causes: `jepalab.planning.failures`.", ""]
    L += ["| env | recipe | seed | params | train steps / min | success (CEM 300 x 10) | random | goals | s / plan "
          "| failures by cause |", "|---|---|---:|---:|---|---|---|---:|---:|---|"]
    for env, res in found.items():
        for recipe, rows in res["recipes"].items():
            for row in rows:
                c, t = row["cem"], row["train"]
                rw = c.get("random_wilson") or (float("nan"), float("nan"))
                L.append(f"| {env} | {recipe} | {row['seed']} | {t['params'] / 1e6:.2f}M | {t['train_steps']} / "
                         f"{t['train_s'] / 60:.1f} | {_pct(c)} | {100 * c['random_success_rate']:.0f}% "
                         f"[{100 * rw[0]:.0f}, {100 * rw[1]:.0f}] | {c['episodes']} | {c['s_per_plan']:.3f} | "
                         f"{_causes(c)} |")
    L += ["", "Studies on the first seed (same model, same goals within a row group; no random baseline):", "",
          "| env | recipe | variant | success | goals | s / plan | reached - expected cost | failures by cause |",
          "|---|---|---|---|---:|---:|---:|---|"]
    for env, res in found.items():
        for recipe, rows in res["recipes"].items():
            for name, r in rows[0].get("studies", {}).items():
                L.append(f"| {env} | {recipe} | {name} | {_pct(r)} | {r['episodes']} | {r['s_per_plan']:.3f} | "
                         f"{_gap(r)} | {_causes(r)} |")
    L += ["", "Latent rollout error on held-out clips (3 context frames; squared error / total embedding variance; "
          "h = model steps of 5 env steps):", "", "| env | recipe | model h=1 / 2 / 4 / 8 | copy-last h=1 / 2 / 4 / 8 |",
          "|---|---|---|---|"]
    for env, res in found.items():
        for recipe, rows in res["recipes"].items():
            r = rows[0]["rollout"]
            fmt = lambda e: " / ".join(f"{e[h - 1]:.3f}" if h <= len(e) else "—" for h in (1, 2, 4, 8))  # noqa: E731
            L.append(f"| {env} | {recipe} | {fmt(r['model'])} | {fmt(r['copy_last'])} |")
    L += ["", "Plan cost on this CPU (1 thread; FLOPs by FlopCounterMode, matmuls only):", "",
          "| env | recipe | planner | s / plan | GFLOP / plan | GFLOP/s |", "|---|---|---|---:|---:|---:|"]
    for env, res in found.items():
        for recipe, rows in res["recipes"].items():
            for key, name in (("speed", "CEM 300 x 10"), ("speed_lewm_cem", "CEM 300 x 30 (LeWM's)")):
                p = rows[0].get(key)
                if p:
                    L.append(f"| {env} | {recipe} | {name} | {p['s_per_plan']:.3f} | {p['gflop_per_plan']:.2f} | "
                             f"{p['gflops']:.1f} |")
    L += ["", "Runs:"]
    for env, res in found.items():
        lt = res.get("lightly", {"skipped": "not run"})
        twin = (f"lightly LeWMLoss twin (LeWM recipe, lightly 1.6.0 in `.venv-bench`) {_pct(lt['cem'])} on "
                f"{lt['cem']['episodes']} goals, `{lt.get('command', '?')}`" if "cem" in lt
                else f"lightly twin: {lt.get('skipped')}")
        cmds = list(dict.fromkeys(row.get("command", res["command"]) for rows in res["recipes"].values()
                                  for row in rows))
        rec = (f"recorded in {res['record_s'] / 60:.1f} min" if res.get("record_s") is not None
               else "recorded by an earlier run (reused, not timed)")
        L.append(f"- {env}: {'; '.join(f'`{c}`' for c in cmds)} — {res['data']['episodes']} episodes {rec}; "
                 f"whole run {res.get('wall_min', float('nan')):.0f} min; load average "
                 f"before {res['load_before']}, after {res.get('load_after', '?')}; torch {res.get('torch', '?')}; {twin}.")
    text = "\n".join(L) + "\n"
    write_text_atomic(out, text)
    return text
