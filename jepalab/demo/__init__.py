"""``jepalab demo``: JEPA vs its pixel twin vs JEPA-with-z on a bouncing-ball world, measured.

The question (from the JEPA articles): does predicting pixels of an uncertain future blur, while
predicting embeddings keeps what matters? The demo trains three small models on the same data with
the one trainer, measures them on held-out data and writes ``report.html`` with figures.

This module only wires the CLI; the work lives in ``demo.run`` (training), ``demo.measure``
(numbers) and ``jepalab.report`` (pictures and HTML). Imports are lazy so ``jepalab --help`` is fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from .choices import SIZES, VARIANTS, Z_KINDS


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "demo",
        help="train JEPA, its pixel twin and JEPA-with-z on bouncing balls; write an HTML report",
        description=(
            "Train a JEPA, a pixel-predicting twin of the same size and a JEPA with a latent "
            "variable z on a synthetic bouncing-ball world, measure them on held-out data "
            "(probes, blur, mode coverage, collapse) and write run_dir/report.html."
        ),
    )
    p.add_argument("--config", default=None, metavar="YAML",
                   help="the experiment that defines the JEPA, the world and the training "
                        "(default: configs/demo.yaml; the twin and the z model are derived from it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.steps=800 (repeatable; as for train)")
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help="world (default: the config's data.variant): 'stochastic' (random kicks -> two "
                        "possible futures), 'deterministic', or 'distractors' (random dots redrawn every frame)")
    p.add_argument("--size", choices=SIZES, default="small",
                   help="training length and number of test clips: tiny, small or base run 0.5x, 1x or 4x the "
                        "config's train.steps (base also doubles the batch); the models are the same")
    p.add_argument("--device", default=None, help="cpu, cuda, mps or auto (default: the config's train.device)")
    p.add_argument("--quick", action="store_true",
                   help="0.1x the config's steps, fewer test clips: a smoke test that finishes in under a minute")
    p.add_argument("--out", dest="out_dir", default=None,
                   help="output directory (default runs/demo-<variant>, or runs/demo-<variant>-quick)")
    p.add_argument("--seed", type=int, default=None,
                   help="one seed for data, init and masks (default: the config's seed)")
    p.add_argument("--z", dest="z_kind", choices=Z_KINDS, default="discrete",
                   help="latent of the JEPA-with-z: 'discrete' (8 learned codes, multiple-choice learning; "
                        "default) or 'gaussian' (z ~ N(0, I), relaxed best-of-K)")
    p.set_defaults(func=run_demo_from_args)
    return p


def run_demo_from_args(args: argparse.Namespace) -> int:
    """CLI entry: run the demo with parsed arguments, print where the report is, return 0."""
    import shlex
    import sys

    from .run import run_demo

    result = run_demo(variant=args.variant, size=args.size, device=args.device, quick=args.quick,
                      out_dir=args.out_dir, seed=args.seed, z_kind=getattr(args, "z_kind", "discrete"),
                      config=getattr(args, "config", None), overrides=getattr(args, "overrides", []),
                      command=shlex.join(["jepalab", *sys.argv[1:]]) if sys.argv[1:2] == ["demo"] else None)
    print(f"\nReport: {result['report']}")
    return 0


def run_demo(variant: str | None = None, size: str = "small", device: str | None = None,
             quick: bool = False, out_dir: str | None = None, seed: int | None = None,
             z_kind: str = "discrete", config: str | None = None,
             overrides: list[str] | tuple[str, ...] = (), command: str | None = None) -> dict[str, Any]:
    """Train the three models, measure them, write the report; return the measured numbers
    (see ``jepalab.demo.run.run_demo`` for the arguments)."""
    from .run import run_demo as _run

    return _run(variant=variant, size=size, device=device, quick=quick, out_dir=out_dir, seed=seed, z_kind=z_kind,
                config=config, overrides=overrides, command=command)


__all__ = ["register", "run_demo", "run_demo_from_args", "VARIANTS", "SIZES", "Z_KINDS"]
