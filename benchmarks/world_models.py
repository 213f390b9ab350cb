"""World models end to end on this CPU: record -> train -> rollout error -> plan to held-out goals.

Per environment (Two-Room, bouncing with actions, Push-T; each when its package imports) this
script records random + scripted-expert episodes, then for each recipe of ``wm_parts.py``
(``compact``: keypoint encoder + MLP predictor, ``lewm``: LeWorldModel at CPU size) and each seed
trains a model and plans toward held-out goals with receding-horizon CEM (LeWM protocol: the goal
is the recorded frame 25 steps ahead, 50-step budget), next to random actions on the same goals.
Success rates come with Wilson 95% intervals; every failed goal is classified as a search, model,
cost or replanning failure (``jepalab.planning.failures``). On the first seed of ``compact`` it
also runs the studies: MPPI, the cost reduction over the horizon (last / mean / min), and the
search budget (CEM 3 / 10 / 30 iterations: success must not fall as the search grows).

Run one env per process (they can run side by side), then merge:
``python benchmarks/world_models.py --envs tworoom`` (writes ``results/world_models_tworoom.json``)
and ``python benchmarks/world_models.py --report`` (writes ``results/world_models.md`` from every
``world_models_<env>.json``). ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wm_parts import (CEM, DATA, HERE, LEWM_CEM, MPPI, QUICK, RECIPES, ROOT, available, evaluate,  # noqa: E402
                      lightly_twin, plan_speed, record, rollout_error, slug, train_model, world_model)

from jepalab.atomic import write_text_atomic  # noqa: E402

RESULTS = HERE / "results"


def run_env(env: str, a: argparse.Namespace) -> dict[str, Any]:
    """Everything measured on one env (module docstring)."""
    d = {**DATA[env], **({"episodes": a.episodes} if a.episodes else {}),
         **({"episodes": QUICK["episodes"]} if a.quick else {})}
    cached = _recorded(a.work, env, d)
    t0 = time.perf_counter()
    data = record(env, a.work, d)
    res: dict[str, Any] = {"data": d, "record_s": None if cached else time.perf_counter() - t0, "recipes": {}}
    peak = _matmul_peak()
    for recipe in a.recipes:
        rows = []
        seeds = a.seeds if recipe == "compact" else a.seeds[:1]
        for seed in seeds:
            depth = {"pred_depth": a.pred_depth} if a.pred_depth and recipe == "compact" else None
            model = world_model(env, recipe, seed, overrides=depth)
            # a variant's run lives beside the default one, never over it (wm_rooms.py reads the default)
            variant = "" if a.sample == "clips" else f"_{a.sample}"
            run = a.work / slug(env) / f"run_{recipe}_{seed}{variant}"
            row: dict[str, Any] = {"seed": seed, "train": train_model(model, data, env, recipe, run, seed,
                                                                      QUICK["train_steps"] if a.quick else None)}
            row["rollout"] = rollout_error(model, data, env)
            red = RECIPES[recipe]["reduce"]
            goals = a.goals if recipe == "compact" else a.lewm_goals
            row["cem"] = evaluate(model, env, data, goals, "cem", CEM, red, seed=0)
            _say(env, recipe, seed, "cem", row["cem"])
            if seed == seeds[0] and a.study_goals > 0:
                row["speed"] = plan_speed(model, peak, CEM)
                row["speed_lewm_cem"] = plan_speed(model, peak, LEWM_CEM)
                row["studies"] = studies(model, env, data, recipe, a)
            rows.append(row)
            _save(env, a, res | {"recipes": {**res["recipes"], recipe: rows}})
        res["recipes"][recipe] = rows
    if not a.no_lightly and "lewm" in a.recipes:
        res["lightly"] = lightly_twin(env, a.work, data, a.lewm_goals, a.quick)
    res["torch"], res["threads"] = torch.__version__, torch.get_num_threads()
    return res


def _recorded(work: Path, env: str, d: dict[str, Any]) -> bool:
    """Whether ``record`` will reuse an earlier recording (then this run did not time it)."""
    from jepalab.data.trajectories import read_meta

    meta = work / slug(env) / "mixed" / "meta.json"
    return meta.is_file() and read_meta(meta.parent).get("episodes") == d["episodes"]


def studies(model: Any, env: str, data: Path, recipe: str, a: argparse.Namespace) -> dict[str, Any]:
    """Planner and cost studies on one trained model (``a.study_goals`` goals each, no baseline)."""
    red, g, out = RECIPES[recipe]["reduce"], a.study_goals, {}
    if recipe == "compact":
        out["mppi"] = evaluate(model, env, data, g, "mppi", MPPI, red, baseline=False)
        for r in ("last", "mean", "min"):
            out[f"reduce_{r}"] = evaluate(model, env, data, g, "cem", CEM, r, baseline=False)
        for it in (3, 10, 30):
            out[f"cem_iters_{it}"] = evaluate(model, env, data, g, "cem", {**CEM, "iterations": it}, red,
                                              baseline=False)
    else:  # the paper's recipe under the cost that lets a plan arrive early
        out["reduce_min"] = evaluate(model, env, data, min(g, a.lewm_goals), "cem", CEM, "min", baseline=False)
    for k, v in out.items():
        _say(env, recipe, "-", k, v)
    return out


def _matmul_peak() -> float:
    from matmul_peak import measure_matmul_peak

    return float(measure_matmul_peak(1, (512, 1024), repeats=3).peak_gflops)


def _say(env: str, recipe: str, seed: Any, what: str, r: dict[str, Any]) -> None:
    print(f"{env} {recipe} seed {seed} {what}: {r['successes']}/{r['episodes']} "
          f"(random {r.get('random_success_rate')}) {r['s_per_plan']:.3f} s/plan causes {r['failure_causes']}",
          flush=True)


def _save(env: str, a: argparse.Namespace, res: dict[str, Any]) -> None:
    """Write the env's results file. A run of some recipes and seeds (``--recipes compact --seeds
    1``) replaces those rows and keeps the other recipes' and seeds' rows (and the lightly twin) from
    the file, when both runs used the same recorded data, so seeds can run in parallel processes;
    each row keeps the command that produced it."""
    cmd = _command(a)
    res = {**res, "command": cmd, "load_before": a.load,
           "recipes": {k: [{**row, "command": cmd} for row in rows] for k, rows in res["recipes"].items()}}
    path = a.out_dir / f"world_models_{slug(env)}{'_quick' if a.quick else ''}.json"
    if path.is_file():
        old = json.loads(path.read_text())
        same = ("img", "chans", "episodes", "steps", "env_kwargs")  # what defines the recording
        if all(old.get("data", {}).get(k) == res["data"].get(k) for k in same):
            new_seeds = {k: {row["seed"] for row in rows} for k, rows in res["recipes"].items()}
            kept = {k: [{"command": old.get("command", "?"), **row} for row in rows
                        if row.get("seed") not in new_seeds.get(k, ())]
                    for k, rows in old.get("recipes", {}).items()}
            res["recipes"] = {k: sorted(kept.get(k, []) + res["recipes"].get(k, []), key=lambda r: r.get("seed", 0))
                              for k in {**kept, **res["recipes"]} if kept.get(k) or res["recipes"].get(k)}
            if "lightly" in old and "lightly" not in res:
                res["lightly"] = {"command": old.get("command", "?"), **old["lightly"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(res, indent=2, default=str))


def _command(a: argparse.Namespace) -> str:
    parts = ["python benchmarks/world_models.py", "--envs", *a.envs]
    if a.recipes != list(RECIPES):
        parts += ["--recipes", *a.recipes]
    if a.out_dir != RESULTS:
        parts += ["--out-dir", str(a.out_dir.relative_to(ROOT) if a.out_dir.is_relative_to(ROOT) else a.out_dir)]
    if a.work != ROOT / "runs" / "bench_world_models":
        parts += ["--work", str(a.work.relative_to(ROOT) if a.work.is_relative_to(ROOT) else a.work)]
    if a.no_lightly:
        parts.append("--no-lightly")
    if a.episodes:
        parts += ["--episodes", str(a.episodes)]
    if a.sample != "clips":
        parts += ["--sample", a.sample]
    if a.quick:
        parts.append("--quick")
    if a.goals != 100:
        parts += ["--goals", str(a.goals)]
    if a.lewm_goals != 50:
        parts += ["--lewm-goals", str(a.lewm_goals)]
    if a.study_goals != 50:
        parts += ["--study-goals", str(a.study_goals)]
    if a.pred_depth:
        parts += ["--pred-depth", str(a.pred_depth)]
    if a.seeds != [0, 1]:
        parts += ["--seeds", *map(str, a.seeds)]
    return " ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["tworoom"], choices=list(DATA))
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="training seeds of the compact recipe")
    p.add_argument("--goals", type=int, default=100, help="held-out goals per evaluation (default 100)")
    p.add_argument("--study-goals", type=int, default=50, help="goals per planner/cost study (default 50; 0 skips the studies)")
    p.add_argument("--lewm-goals", type=int, default=50,
                   help="goals for the lewm recipe (default 50: its transformer plans ~15x slower on this CPU)")
    p.add_argument("--episodes", type=int, default=None,
                   help="recorded episodes (default: the env's setting in wm_parts.DATA, 200; a multiple of 4)")
    p.add_argument("--sample", choices=("clips", "episodes"), default="clips",
                   help="training clips drawn uniformly over clips (default) or over episodes first")
    p.add_argument("--pred-depth", type=int, default=None,
                   help="layers of the compact recipe's MLP predictor (default: the recipe's)")
    p.add_argument("--quick", action="store_true", help="tiny data and budget: a smoke run, not the table")
    p.add_argument("--no-lightly", action="store_true", help="skip the lightly LeWMLoss twin")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_world_models")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="merge results/world_models_<env>.json into the .md")
    p.add_argument("--lightly-only", action="store_true",
                   help="only add the lightly LeWMLoss twin to an env's existing results file")
    p.add_argument("--lightly-worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.lightly_worker:  # inside .venv-bench: train the lightly twin; the main process evaluates it
        env, d = a.lightly_worker, DATA[a.lightly_worker]
        model = world_model(env, "lewm", 0, lightly=True)
        r = train_model(model, a.work / slug(env) / "mixed", env, "lewm", a.work / slug(env) / "run_lightly", 0,
                        QUICK["train_steps"] if a.quick else None)
        plain = world_model(env, "lewm", 0)
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("lightly_loss.")})
        plain.save_pretrained(a.work / slug(env) / "lightly_model")
        write_text_atomic(a.work / slug(env) / "lightly.json", json.dumps({**r, "torch": torch.__version__}, indent=2))
        return
    if a.report:
        from wm_report import write_report

        sfx = "_quick" if a.quick else ""
        write_report(a.out_dir, a.out_dir / f"world_models{sfx}.md", sfx)
        return
    if a.episodes is not None and (a.episodes < 20 or a.episodes % 4):
        p.error("--episodes must be a multiple of 4, at least 20 (random/expert pairs; 10% held out)")
    if min(a.goals, a.lewm_goals) < 1 or a.study_goals < 0:
        p.error("--goals and --lewm-goals must be >= 1, --study-goals >= 0 (0 skips the studies)")
    a.load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    for r in RECIPES.values():
        r["sample"] = a.sample
    if a.lightly_only:
        for env in a.envs:
            path = a.out_dir / f"world_models_{slug(env)}{'_quick' if a.quick else ''}.json"
            res = json.loads(path.read_text())
            res["lightly"] = lightly_twin(env, a.work, record(env, a.work, {**DATA[env], **(
                {"episodes": QUICK["episodes"]} if a.quick else {})}), a.lewm_goals, a.quick)
            res["lightly"]["command"] = _command(a) + " --lightly-only"
            write_text_atomic(path, json.dumps(res, indent=2, default=str))
            print(f"{env}: lightly twin {res['lightly'].get('cem', res['lightly'])}", flush=True)
        return
    for env in a.envs:
        why = available(env)
        if why:
            print(f"{env}: skipped ({why})", flush=True)
            continue
        t0 = time.perf_counter()
        res = run_env(env, a)
        res["wall_min"] = (time.perf_counter() - t0) / 60
        res["load_after"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        _save(env, a, res)
        print(f"{env}: done in {res['wall_min']:.1f} min", flush=True)


if __name__ == "__main__":
    main()
