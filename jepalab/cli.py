"""The ``jepalab`` command: train from a YAML config, resume, inspect a run, list recipes, demo.

Why one small argparse front end: a newcomer should get from ``pip install`` to a trained model
with one command and see, with another, what a run did (steps, last losses, checkpoints, whether
the embeddings collapsed). Every error jepalab raises on purpose is printed as ``error: ...`` with
exit code 2 and no traceback (set ``JEPALAB_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from jepalab import __version__
from jepalab.cli_info import cmd_info, read_log, run_summary  # noqa: F401  (re-exported: jepalab.cli.run_summary)
from jepalab.errors import CheckpointError, ConfigError, JepalabError
from jepalab.threads import add_threads_argument, configure_threads

EXAMPLES = """\
examples:
  jepalab recipes                                  list the methods you can train
  jepalab train configs/ijepa_tiny.yaml            train; the run goes to runs/<name>, here runs/ijepa-tiny
  jepalab train configs/ijepa_tiny.yaml --set train.steps=50 --set model.embed_dim=32 --run-dir runs/ijepa-32
  jepalab info runs/ijepa-tiny                     steps, last metrics, checkpoints, collapse
  jepalab resume runs/ijepa-tiny                   continue from the newest checkpoint
  jepalab eval runs/ijepa-tiny                     probes + effective rank vs a random-init model
  jepalab demo --quick                             JEPA vs pixel prediction, with a report
  jepalab collect pusht --policy expert --episodes 20 --out runs/data/pusht   record episodes

outputs go under runs/ unless told otherwise. set JEPALAB_DEBUG=1 to see full tracebacks.
CPU threads: --threads N or JEPALAB_THREADS=N (default: the usable CPUs; idle threads sleep,
OMP_WAIT_POLICY=PASSIVE, unless you set OMP_* yourself).
"""


def _add_override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=3e-4 or "
                        "--set model.embed_dim=64 (repeatable; values are read as YAML)")
    p.add_argument("--device", default=None,
                   help="where to train: cpu, cuda, mps or auto (same as --set train.device=D)")
    add_threads_argument(p)


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"train.device={args.device}"] if args.device else []
    return list(args.overrides) + extra


def _has_run(run_dir: Path) -> bool:
    ckpt = run_dir / "checkpoints"
    return (run_dir / "log.jsonl").is_file() or (ckpt.is_dir() and any(ckpt.iterdir()))


def _say(msg: str) -> None:
    """Print once per job: under torchrun only rank 0 talks."""
    if os.environ.get("RANK", "0") == "0":
        print(msg, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    """Load and validate the config, refuse to clobber an existing run, then train."""
    from jepalab.config import load_experiment
    from jepalab.experiment import preflight, run

    exp = load_experiment(args.config, _overrides(args))
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / exp.name
    if os.environ.get("RANK", "0") == "0" and _has_run(run_dir):  # torchrun: rank 0 decides
        raise ConfigError(f"{run_dir} already holds a run. Continue it with `jepalab resume {run_dir}`, "
                          "or start a new one with --run-dir NEW_DIR.")
    preflight(exp, run_dir)  # run dir, device, memory: fail before saying "Training"
    steps = getattr(exp.train, "steps", "?")
    _say(f"Training '{exp.recipe}' on '{exp.source}' for {steps} steps -> {run_dir}")
    run(exp, run_dir, resume=False)
    _say(f"Done. Inspect the run with: jepalab info {run_dir}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a run from its newest checkpoint with the config stored in the run directory."""
    from jepalab.config import load_experiment
    from jepalab.experiment import EXPERIMENT_FILE, preflight, run

    run_dir = Path(args.run_dir)
    cfg = run_dir / EXPERIMENT_FILE
    if not cfg.is_file():
        raise CheckpointError(f"{run_dir} is not a jepalab run directory: it has no {EXPERIMENT_FILE}. "
                              "Pass the directory that `jepalab train` wrote (default runs/<name>).")
    exp = load_experiment(cfg, _overrides(args))
    preflight(exp, run_dir, resume=True)  # e.g. train.steps below the steps already done
    _say(f"Resuming '{exp.recipe}' in {run_dir} (until step {getattr(exp.train, 'steps', '?')})")
    run(exp, run_dir, resume=True)
    _say(f"Done. Inspect the run with: jepalab info {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Probe a finished run's frozen features (and a random-init twin), write eval.json, print."""
    from jepalab.eval.evaluate import EVAL_FILE, evaluate_run, format_table

    from jepalab.trainer.lock import RunLock

    probes = [p for item in args.probes for p in item.split(",") if p]
    with RunLock(args.run_dir, "eval"):  # not while a train/resume is still writing the run
        result = evaluate_run(args.run_dir, probes=probes, split=args.split,
                              baseline=None if args.no_baseline else "random", device=args.device,
                              state_columns=args.state_columns, max_train=args.max_train, max_test=args.max_test)
    if args.json:
        print(json.dumps(result, indent=2))
        for w in result.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
    else:
        print(format_table(result))
        print(f"wrote {Path(args.run_dir) / EVAL_FILE}")
    return 0


_DOC_ROLE = re.compile(r":\w+:`([^`]*)`")               # :class:`Name` -> Name
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!etc)(?<! al)\.(?=\s|$)")


def _summary_line(doc: str | None) -> str:
    """The whole first sentence of a docstring's first paragraph as plain text (reST roles and
    backticks removed): what ``jepalab recipes`` shows for each recipe."""
    para = " ".join((doc or "").strip().split("\n\n")[0].split())
    para = _DOC_ROLE.sub(r"\1", para).replace("``", "").replace("`", "")
    if not para:
        return "(no description)"
    end = _SENTENCE_END.search(para)
    return para[: end.start() + 1] if end else para


def cmd_recipes(args: argparse.Namespace) -> int:
    """List registered recipes with the first line of each class's docstring."""
    from jepalab.recipes import RECIPES, get_recipe

    width = max(len(n) for n in RECIPES)
    for name in RECIPES:
        try:
            line = _summary_line(get_recipe(name).__doc__)
        except Exception as e:  # one broken/missing recipe must not hide the others
            line = f"(unavailable: {type(e).__name__}: {e})"
        print(f"{name:<{width}}  {line}")  # one line per recipe, whole sentence: the terminal wraps it
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Record episodes of ENV with a policy to a trajectory directory (resumable; see
    docs/trajectories.md), then print what the directory holds."""
    import yaml

    from jepalab.data.recording import collect

    env_kwargs: dict[str, Any] = {}
    for item in args.env_args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env-arg {item!r}: write KEY=VALUE, e.g. --env-arg num_balls=2.")
        env_kwargs[key] = yaml.safe_load(value)
    from jepalab.cli_world import collect_policy_kwargs

    policy_kwargs = collect_policy_kwargs(args)
    out = Path(args.out) if args.out else Path("runs") / "data" / f"{args.env.replace('/', '_').replace(':', '_')}-{args.policy}"
    from jepalab.preflight import check_writable_dir

    check_writable_dir(out, "--out")
    print(f"Collecting {args.episodes} '{args.policy}' episode(s) of '{args.env}' -> {out}", flush=True)
    try:
        meta = collect(args.env, out, episodes=args.episodes, policy=args.policy, img_size=args.img_size,
                       max_steps=args.steps, seed=args.seed, frameskip=args.frameskip,
                       frameskip_mode=args.frameskip_mode, env_kwargs=env_kwargs, progress=not args.no_progress,
                       policy_kwargs=policy_kwargs, workers=args.workers)
    except KeyboardInterrupt:
        print(f"interrupted: the complete episodes in {out} are kept; rerun the same command to resume.",
              file=sys.stderr)
        return 130
    print(f"Done: {meta['episodes']} episode(s) in {out} (action_dim={meta['action_dim']}, "
          f"img_size={meta['img_size']}). Train on it with data: {{source: trajectories, path: {out}}}")
    return 0


def _register_demo(sub: Any) -> None:
    """Let ``jepalab.demo`` add its own sub-command; if it cannot be imported, register a stand-in
    that explains why instead of breaking the whole CLI."""
    try:
        from jepalab.demo import register
    except Exception as e:  # noqa: BLE001 - report any import failure as a user-facing error
        reason = f"{type(e).__name__}: {e}"

        def unavailable(_: argparse.Namespace) -> int:
            raise JepalabError(f"the demo is unavailable in this install ({reason}).")

        p = sub.add_parser("demo", help="JEPA vs pixel prediction demo (unavailable here)")
        p.set_defaults(func=unavailable)
        return
    register(sub)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="jepalab",
        description="Train and inspect Joint-Embedding Predictive Architectures (I-JEPA, V-JEPA, "
                    "LeJEPA, VICReg, Barlow Twins, world models) from small YAML configs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jepalab {__version__}")
    add_threads_argument(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML experiment config",
                       description="Train the recipe named in CONFIG on its data source. The "
                                   "resolved config, JSONL log and checkpoints go to the run directory.",
                       epilog="example:\n  jepalab train configs/ijepa_tiny.yaml --set train.steps=100 --run-dir runs/ijepa-100",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="experiment YAML (keys: name, seed, recipe, model, data, train)")
    _add_override_args(p)
    p.add_argument("--run-dir", default=None, help="where to write the run (default runs/<name>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a run from its newest checkpoint",
                       description="Continue training in RUN_DIR with the config saved there. "
                                   "--set train.steps=N extends a finished run to N steps.",
                       epilog="examples (a run of configs/ijepa_tiny.yaml):\n"
                              "  jepalab resume runs/ijepa-tiny                        continue after a kill or Ctrl-C\n"
                              "  jepalab resume runs/ijepa-tiny --set train.steps=600  extend it to 600 steps",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `jepalab train`")
    _add_override_args(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("info", help="show a run's recipe, progress, last metrics, checkpoints, collapse",
                       description="Summarize RUN_DIR: recipe and data, steps done / planned, the "
                                   "latest logged metrics, checkpoints present and collapse flags.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `jepalab train`")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="probe a finished run's frozen features: linear, kNN, attentive, rank",
                       description="Embed the run's training split and a held-out split with the frozen "
                                   "model, score linear/kNN/attentive probes (accuracy for labels, R^2 "
                                   "for state), effective rank and collapse flags, for the trained model "
                                   "and the same architecture at its initial weights. Writes RUN_DIR/eval.json. "
                                   "A vljepa run reports zero-shot MNIST accuracy and text<->video retrieval "
                                   "R@1/R@5 instead (--max-test digits and clips; RUN_DIR/eval_vl.json); an "
                                   "llmjepa run its NL-RX regex accuracy (RUN_DIR/eval_nlrx.json).",
                       epilog="example:\n  jepalab eval runs/ijepa-tiny --probes linear knn --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `jepalab train` (finished)")
    p.add_argument("--probes", nargs="+", default=["linear", "knn", "attentive"], metavar="PROBE",
                   help="probes to run: linear, knn, attentive (default: all)")
    p.add_argument("--split", default="test", help="held-out split of the data source (default: test)")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-init baseline")
    p.add_argument("--state-columns", nargs="+", type=int, default=None, metavar="I",
                   help="probe only these state columns (e.g. positions; one frame shows no velocity)")
    p.add_argument("--max-train", type=int, default=2000, metavar="N",
                   help="probe training images, drawn at random and stratified by class (default 2000)")
    p.add_argument("--max-test", type=int, default=1000, metavar="N",
                   help="held-out images scored, drawn the same way (default 1000)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps or auto (default: auto)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("recipes", help="list the training recipes (methods) available",
                       description="List every registered recipe with a one-line description.")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("collect", help="record episodes of an environment (pusht, tworoom, bouncing, gym id)",
                       description="Run a random or scripted policy in ENV headless and write each episode "
                                   "(frames, actions in [-1,1], proprio, state, rewards, success) atomically "
                                   "to OUT/episode_NNNNNN.npz with OUT/meta.json. Rerunning the same command "
                                   "resumes where it stopped; a larger --episodes extends the dataset.",
                       epilog="examples:\n  jepalab collect bouncing --episodes 50 --steps 40 --out runs/data/bouncing\n"
                              "  jepalab collect pusht --policy expert --episodes 20 --img-size 64\n"
                              "  jepalab collect Pendulum-v1 --episodes 5   (any gymnasium id with rgb_array)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env", metavar="ENV", help="pusht (pip install gym-pusht), tworoom (stable-worldmodel), "
                                              "bouncing (built in), a gymnasium id or module:function of your "
                                              "env factory (docs/environments.md)")
    p.add_argument("--out", default=None, help="output directory (default runs/data/<env>-<policy>)")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes in the directory (default 10)")
    p.add_argument("--policy", default="random", help="random, or expert (scripted: pusht, tworoom, bouncing)")
    p.add_argument("--steps", type=int, default=None, help="max steps per episode (default: the env's limit)")
    p.add_argument("--img-size", type=int, default=64, help="frame size in pixels (default 64)")
    p.add_argument("--frameskip", type=int, default=1, help="env steps per recorded step (default 1)")
    p.add_argument("--frameskip-mode", choices=("repeat", "block"), default="repeat",
                   help="repeat one action, or take frameskip actions at once (action blocks)")
    p.add_argument("--seed", type=int, default=0, help="seed of envs and policies (default 0)")
    p.add_argument("--env-arg", dest="env_args", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the env constructor, value read as YAML (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from jepalab.cli_world import add_collect_env_options

    add_collect_env_options(p)
    p.set_defaults(func=cmd_collect)

    _register_demo(sub)
    from jepalab.cli_world import register as register_world  # plan, evaluate-planning

    register_world(sub)
    from jepalab.cli_vl import register as register_vl  # answer, describe
    register_vl(sub)
    from jepalab.cli_llm import register as register_llm  # generate; eval of llmjepa runs
    register_llm(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jepalab`` console script; returns the process exit code."""
    try:
        configure_threads()  # defaults in the environment before any module imports torch
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 1
        if args.cpu_threads is not None:
            configure_threads(args.cpu_threads)
        return int(args.func(args) or 0)
    except JepalabError as e:
        if os.environ.get("JEPALAB_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (a training run can be continued with `jepalab resume RUN_DIR`).",
              file=sys.stderr)
        return 130
