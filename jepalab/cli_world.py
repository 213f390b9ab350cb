"""``jepalab plan`` and ``jepalab evaluate-planning``: the world-model commands of the CLI.

Why a separate module: ``cli.py`` stays a small front end; these two commands load a trained
world model, drive a real environment with a latent planner (receding-horizon MPC) and write
what happened (a filmstrip + GIF, or a JSON of success rates and plan costs). Registered by
``cli.build_parser`` through :func:`register`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from jepalab.errors import ConfigError
from jepalab.preflight import check_writable_dir

PLAN_EXAMPLES = """\
examples:
  jepalab train configs/worldmodel_bouncing.yaml --run-dir runs/wm_bouncing   a world model to plan with
  jepalab plan runs/wm_bouncing --env bouncing --env-arg radius=3 --out runs/plans/radius3
  jepalab collect bouncing --episodes 50 --steps 40 --out runs/data/bouncing   recorded goals
  jepalab plan runs/wm_bouncing --env bouncing --data runs/data/bouncing   (a held-out recorded goal)
  jepalab plan runs/wm_bouncing --env bouncing --planner mppi --samples 300
"""

EVAL_EXAMPLES = """\
example:
  jepalab evaluate-planning runs/wm_bouncing --env bouncing --data runs/data/bouncing --episodes 20
"""


def _env_kwargs(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env-arg {item!r}: write KEY=VALUE, e.g. --env-arg radius=5.")
        out[key] = yaml.safe_load(value)
    return out


def add_collect_env_options(p: argparse.ArgumentParser) -> None:
    """``collect``'s options for how the env is driven: parallel workers and held random actions."""
    p.add_argument("--workers", type=int, default=1,
                   help="env copies stepped in parallel worker processes (gymnasium.vector); the episodes are "
                        "the same as with 1 (default 1)")
    p.add_argument("--repeat", type=int, default=None, metavar="K",
                   help="random policy: hold each action for K steps (held actions travel further than "
                        "one-step jitter; default 1)")


def collect_policy_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Policy options from ``collect``'s flags, checked before any env starts."""
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: use 1 or more.")
    if args.repeat is None:
        return {}
    if args.policy != "random":
        raise ConfigError(f"--repeat holds the actions of the random policy; drop it for --policy {args.policy}.")
    if args.repeat < 1:
        raise ConfigError(f"--repeat {args.repeat}: use 1 or more steps per action.")
    return {"repeat": args.repeat}


def _env_name(args: argparse.Namespace, meta: dict[str, Any] | None) -> str:
    """``--env``, or the env the ``--data`` recording was made in; they must agree when both are given."""
    recorded = None if meta is None else meta.get("env")
    if args.env is None:
        if recorded is None:
            raise ConfigError("say which env to plan in: --env NAME (bouncing, pusht, tworoom, a gymnasium id or "
                              "module:function), or --data DIR of a recording.")
        return str(recorded)
    if recorded is not None and recorded != args.env:
        raise ConfigError(f"{args.data} was recorded in env '{recorded}', not '{args.env}'; drop --env or pass the "
                          "recording of that env.")
    return args.env


def _count(lowest: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``lowest`` (argparse turns the error into exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be {lowest} or more, got {value}")
        return value

    parse.__name__ = f"whole number >= {lowest}"
    return parse


def _planner_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"horizon": args.horizon}
    if args.planner in ("cem", "mppi"):
        kw["samples"] = args.samples
    if args.iterations is not None:
        kw["iterations"] = args.iterations
    if args.planner == "cem":
        kw["elites"] = min(args.elites, args.samples)
    if args.planner in ("cem", "mppi"):
        kw["noise_beta"] = args.noise_beta
    kw["reduce"] = args.reduce
    if args.uncertainty:
        kw["uncertainty"] = args.uncertainty
    return kw


def cmd_plan(args: argparse.Namespace) -> int:
    """Run one MPC episode toward a goal; save a filmstrip PNG, a GIF and episode.json."""
    import torch

    from jepalab.data.envs import make_env, make_env_from_meta
    from jepalab.data.trajectories import read_meta
    from jepalab.planning.episode_media import save_episode_media
    from jepalab.planning.evaluate import (check_env_matches, encoder_fn, load_world_model, make_planner,
                                           pick_tasks, run_goal_episode, start_context)
    from jepalab.planning.mpc import MPCController

    check_writable_dir(args.out, "--out")  # before planning, which may take minutes
    torch.set_num_threads(args.threads)
    kwargs = _env_kwargs(args.env_args)
    meta = read_meta(args.data) if args.data else None
    args.env = _env_name(args, meta)
    model = load_world_model(args.run_dir)
    env = (make_env_from_meta(meta, seed=args.seed, **kwargs) if meta is not None
           else make_env(args.env, img_size=int(model.config.img_size), seed=args.seed, **kwargs))
    try:
        check_env_matches(model, env)
        if meta is not None:
            env.check_goal_reaching(meta.get("state_dim"))
        planner = make_planner(model, args.planner, seed=args.seed, **_planner_kwargs(args))
        f = int(model.config.frameskip)
        ctrl = MPCController(planner, encoder_fn(model), replan_every=f, history=int(model.config.history))
        if args.data:
            task = pick_tasks(args.data, 1, args.goal_offset, args.test_every, args.seed,
                              accept=lambda s, g: not env.goal_success(s, g)[0])[0]
            from jepalab.data.trajectories import load_episode

            context = start_context(model, load_episode(args.data, task["episode"]), task)
            ctrl.reset(context["goal_obs"], env_action_dim=env.action_dim, past_obs=context["past_obs"],
                       past_actions=context["past_actions"])
            res = run_goal_episode(env, task, ctrl.act, args.budget, keep_frames=True)
            goal_img, where = task["goal_frame"], f"held-out episode {task['episode']}, step {task['start']}"
        else:
            obs = env.reset(seed=args.seed)
            goal_obs = env.goal_obs()
            if goal_obs is None:
                raise ConfigError(f"env '{args.env}' defines no goal of its own; pass --data DIR to take goals "
                                  "from recorded episodes.")
            ctrl.reset(goal_obs, env_action_dim=env.action_dim)
            res = {"success": env.success(), "steps": 0, "frames": [obs["pixels"]]}
            while not res["success"] and res["steps"] < args.budget:
                obs, _r, done, info = env.step(ctrl.act(obs))
                res["steps"] += 1
                res["frames"].append(obs["pixels"])
                res["success"] = env.success(info)
                if done:
                    break
            goal_img, where = goal_obs["pixels"], f"the env's own goal (seed {args.seed})"
    finally:
        env.close()
    out = Path(args.out)
    paths = save_episode_media(res["frames"], out, goal=goal_img, name=f"plan_{args.env.replace('/', '_').replace(':', '_')}")
    summary = {"env": args.env, "planner": args.planner, "goal": where, "success": bool(res["success"]),
               "steps": int(res["steps"]), "plans": len(ctrl.plan_times),
               "s_per_plan": (sum(ctrl.plan_times) / len(ctrl.plan_times)) if ctrl.plan_times else None,
               "final_distance": res.get("final_distance"), "filmstrip": str(paths["filmstrip"]),
               "gif": str(paths["gif"])}
    (out / "episode.json").write_text(json.dumps(summary, indent=2))
    verdict = "reached the goal" if summary["success"] else "did not reach the goal"
    print(f"{args.planner} on '{args.env}' ({where}): {verdict} in {summary['steps']} steps, "
          f"{summary['plans']} plans"
          + (f" at {summary['s_per_plan']:.3f} s/plan" if summary["s_per_plan"] else "") + ".")
    print(f"wrote {paths['filmstrip']}, {paths['gif']} and {out / 'episode.json'}")
    return 0


def cmd_evaluate_planning(args: argparse.Namespace) -> int:
    """Plan toward N held-out recorded goals; print and write success rate, s/plan, FLOPs/plan."""
    import torch

    from jepalab.data.trajectories import read_meta
    from jepalab.planning.evaluate import evaluate_planning, load_world_model

    torch.set_num_threads(args.threads)
    model = load_world_model(args.run_dir)
    args.env = _env_name(args, read_meta(args.data))
    out = Path(args.out) if args.out else Path(args.run_dir) / f"planning_{args.env.replace('/', '_').replace(':', '_')}.json"
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the path of the JSON file to write, e.g. {out / 'planning.json'}.")
    check_writable_dir(out.parent, "--out")
    from jepalab.trainer.lock import RunLock

    with RunLock(args.run_dir, "evaluate-planning"):  # not while a train/resume is still writing the run
        r = evaluate_planning(model, args.env, args.data, episodes=args.episodes, goal_offset=args.goal_offset,
                              budget=args.budget, planner=args.planner, planner_kwargs=_planner_kwargs(args),
                              test_every=args.test_every, seed=args.seed, baseline=not args.no_baseline, out=out,
                              progress=not args.no_progress)
    rnd = r["random_success_rate"]
    print(f"env {r['env']}, planner {r['planner']}, {r['episodes']} held-out goals ({r['goal_offset']} steps ahead, "
          f"budget {r['budget']}); success = {r['criterion']}")
    print(f"success rate   {100 * r['success_rate']:.1f}%" + (f"   (random actions: {100 * rnd:.1f}%)" if rnd is not None
                                                              else ""))
    print(f"time per plan  {r['s_per_plan']:.3f} s  ({r['threads']} thread(s), median of {r['plans']} plans)")
    if r["flops_per_plan"]:
        print(f"FLOPs per plan {r['flops_per_plan'] / 1e9:.2f} GFLOP = {r['gflops_per_s']:.1f} GFLOP/s")
    causes = ", ".join(f"{k} {v}" for k, v in (r.get("failure_causes") or {}).items() if v)
    if causes:  # jepalab.planning.failures: what to fix (search budget, model, cost, replanning)
        print(f"failed goals   {causes}")
    print(f"wrote {out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished world-model run (`jepalab train`)")
    p.add_argument("--env", default=None,
                   help="the env the model was trained on: bouncing, pusht, tworoom, a gymnasium id, a registered "
                        "name or module:function of your env factory (default: the --data recording's env)")
    p.add_argument("--planner", choices=("cem", "mppi", "gradient"), default="cem", help="default cem")
    p.add_argument("--horizon", type=_count(1), default=5, help="planned model steps (default 5, as LeWM)")
    p.add_argument("--samples", type=_count(1), default=300, help="candidates per iteration (cem/mppi; default 300)")
    p.add_argument("--iterations", type=_count(1), default=None, help="optimizer iterations (default: cem 30, mppi 10)")
    p.add_argument("--elites", type=_count(1), default=30, help="cem elites (default 30)")
    p.add_argument("--noise-beta", type=float, default=0.0,
                   help="colour of the sampling noise in env time (cem/mppi): 0 = white (LeWM's and the "
                        "benchmark's; default), 2 = iCEM's coloured noise")
    p.add_argument("--reduce", choices=("min", "mean", "last"), default="min",
                   help="how the distances to the goal over the horizon become one cost: min = the closest the "
                        "plan comes (default; lets a plan arrive early or detour), mean = the whole path, "
                        "last = the end only (LeWM's)")
    p.add_argument("--uncertainty", type=float, default=0.0,
                   help="weight of the ensemble's disagreement in the cost (models trained with model.ensemble >= "
                        "2; default 0 = off)")
    p.add_argument("--budget", type=_count(1), default=50, help="env steps per episode (default 50)")
    p.add_argument("--goal-offset", type=_count(1), default=25, help="goal = recorded frame this many steps ahead")
    p.add_argument("--test-every", type=_count(1), default=10, help="held-out episodes: i %% N == N-1 (default 10)")
    p.add_argument("--seed", type=_count(0), default=0, help="seed of goal choice, env and planner")
    p.add_argument("--threads", type=_count(1), default=1, help="torch intra-op threads (default 1)")


def register(sub: Any) -> None:
    """Add ``plan`` and ``evaluate-planning`` to the ``jepalab`` sub-command parser."""
    p = sub.add_parser("plan", help="plan one episode toward a goal with a world model; filmstrip + GIF",
                       description="Load the world model of RUN_DIR, run receding-horizon MPC in ENV toward a "
                                   "goal (the env's own, or with --data a held-out recorded frame --goal-offset "
                                   "steps ahead) and save a filmstrip PNG, a GIF and episode.json in --out.",
                       epilog=PLAN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--data", default=None, help="recorded episodes to take a held-out goal from")
    p.add_argument("--out", default="runs/plans", help="output directory (default runs/plans/)")
    p.add_argument("--env-arg", dest="env_args", action="append", default=[], metavar="KEY=VALUE",
                   help="env constructor option, value read as YAML (repeatable; with --data, meta.json's win "
                        "unless given here)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("evaluate-planning", help="success rate, time and FLOPs per plan on held-out goals",
                       description="Plan toward --episodes goals taken from held-out recorded episodes (start = "
                                   "a recorded state, goal = the frame --goal-offset steps later, --budget env "
                                   "steps, LeWorldModel's protocol), with a random-action baseline on the same "
                                   "goals. Writes RUN_DIR/planning_<env>.json (or --out).",
                       epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--data", required=True, help="trajectory directory (`jepalab collect ENV --out DIR`)")
    p.add_argument("--episodes", type=_count(1), default=20, help="number of held-out goals (default 20)")
    p.add_argument("--out", default=None, help="result JSON path (default RUN_DIR/planning_<env>.json)")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-action baseline")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate_planning)


__all__ = ["register", "cmd_plan", "cmd_evaluate_planning", "add_collect_env_options", "collect_policy_kwargs"]
