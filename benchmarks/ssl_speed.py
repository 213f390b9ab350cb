"""The interleaved jepalab-vs-lightly training-speed test of the SSL table (``ssl_table.py --speed-only``).

Why a file of its own: the table measures quality; this measures speed, with its own protocol
(alternating short runs so both sides see the same machine load, optional ``train.compile`` on the
jepalab side). ``ssl_table.py`` keeps the command line and calls :func:`speed_section`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ssl_table import VIEW_METHODS, Method, Setting, build_model, methods_for, mnist_setting, train_cfg, video_setting

from jepalab.errors import ConfigError, MissingDependencyError
from jepalab.train import train


def speed_ab(pair: tuple[Method, Method], st: Setting, steps: int, rounds: int, seed: int,
             compile: bool = False, warm: int = 5) -> dict[str, float]:
    """Interleaved A/B timing of a jepalab row and its lightly twin: ``rounds`` alternating
    training calls of ``steps`` steps each (A B B A A B ...), median images/s of each side.

    Why: on a shared CPU the load changes from minute to minute, so one run per side measures
    the neighbours as much as the code; alternating short runs exposes both to the same load.
    With ``compile`` the jepalab side trains with ``TrainConfig.compile`` (lightly ships no
    trainer, so its side stays eager) and both sides are timed in steady state: images/s over
    steps ``warm+1..steps``, read from the run log, so compilation is excluded; the extra time
    of the jepalab side's first ``warm`` steps over lightly's is reported as compile time
    (``compile_s``: first round, a cold compile; ``recompile_s``: median of later rounds, where
    Dynamo's cache makes a fresh model's compile cheap). ``jepalab_eager`` adds a third,
    uncompiled jepalab side per round for the eager-vs-compiled ratio.
    """
    from jepalab.runlog import read_jsonl

    if compile and not 0 < warm < steps:
        raise ConfigError(f"--speed-steps ({steps}) must exceed the {warm} warm-up steps excluded with --compile.")
    if compile:  # forget other pairs' graphs: each method compiles (static shapes) and is timed on its own
        torch._dynamo.reset()
    sides = ("a", "b", "e") if compile else ("a", "b")
    got: dict[str, list[float]] = {k: [] for k in sides}
    first: dict[str, list[float]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                m = pair[1] if side == "b" else pair[0]
                model = build_model(m, steps, seed)
                run = Path(tmp) / f"{side}{r}"
                cfg = train_cfg(m, steps, compile=compile and side == "a", log_every=warm if compile else 0)
                t0 = time.perf_counter()
                train(model, st.image_source, cfg, run, seed=seed)
                wall = time.perf_counter() - t0
                if not compile:
                    got[side].append(steps * m.batch_size / wall)
                    continue
                log = {row["step"]: row["time"] for row in read_jsonl(run / "log.jsonl")}
                got[side].append((steps - warm) * m.batch_size / (log[steps] - log[warm]))
                first[side].append(log[warm])
    med = {k: sorted(v)[rounds // 2] for k, v in got.items()}
    out = {"jepalab": med["a"], "lightly": med["b"], "ratio": med["a"] / med["b"]}
    if compile:
        later = sorted(a - b for a, b in zip(first["a"][1:], first["b"][1:])) or [float("nan")]
        out.update(jepalab_eager=med["e"], compiled_vs_eager=med["a"] / med["e"],
                   compile_s=first["a"][0] - first["b"][0], recompile_s=later[len(later) // 2])
    return out


def speed_section(a: argparse.Namespace, md: list[str], steps: int, why_no_lightly: str | None) -> list[str]:
    """The speed report: ``md`` (the table's header lines) retitled, then one row per view method
    and dataset of ``a.datasets`` (``a.speed_steps``, ``a.speed_rounds``, ``a.compile``, ``a.seed``)."""
    if why_no_lightly is not None:
        raise MissingDependencyError(f"--speed-only compares with lightly, but {why_no_lightly}; "
                                     "run it with .venv-bench/bin/python (scripts/setup_bench_env.sh).")
    md[0] = "# jepalab vs lightly: interleaved A/B training speed"
    md[4] = md[4].replace(f"{steps} (MNIST) / {20 if a.quick else a.video_steps} (video) steps per run",
                          f"{a.speed_steps}-step runs")
    md += ["", f"Each pair alternates {a.speed_rounds} training calls of {a.speed_steps} steps per side (ABBA...), "
           "same backbone, views, data, trainer; median images/s per side.", "",
           "| dataset | method | batch | jepalab img/s | lightly img/s | ratio jepalab/lightly |", "|---|---|---|---|---|---|"]
    if a.compile:
        md[0] = "# jepalab (train.compile=true) vs lightly: interleaved A/B training speed"
        md[-4] = (f"Each round runs {a.speed_steps}-step training calls of jepalab compiled, lightly (eager: lightly "
                  "ships no trainer) and jepalab eager, in alternating order, same backbone, views, data, trainer; "
                  f"steady-state images/s = steps 6..{a.speed_steps} read from the run log (compilation excluded), "
                  f"median of {a.speed_rounds} rounds. compile s = extra time of the compiled side's first 5 steps over "
                  "lightly's: first round (cold in this process; run with a fresh TORCHINDUCTOR_CACHE_DIR for a cold disk cache too) / median of later rounds (Dynamo cache warm).")
        md[-2] = ("| dataset | method | batch | jepalab compiled img/s | lightly img/s | ratio compiled/lightly "
                  "| jepalab eager img/s | compiled/eager | compile s (cold / later) |")
        md[-1] = "|---|---|---|---|---|---|---|---|---|"
    for ds in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        st = mnist_setting(a.mnist_train, 64, 64, seed=a.seed) if ds == "mnist" else video_setting(64, 64, seed=a.seed)
        ms = [m for m in methods_for(st, with_lightly=True) if m.recipe in VIEW_METHODS]
        for jm, lm in zip(ms[0::2], ms[1::2]):
            r = speed_ab((jm, lm), st, a.speed_steps, a.speed_rounds, a.seed, compile=a.compile)
            md.append(f"| {st.name} | {jm.label} | {jm.batch_size} | {r['jepalab']:.0f} | {r['lightly']:.0f} | {r['ratio']:.2f}x |")
            if a.compile:
                md[-1] += (f" {r['jepalab_eager']:.0f} | {r['compiled_vs_eager']:.2f}x | "
                           f"{r['compile_s']:.1f} / {r['recompile_s']:.1f} |")
            print(md[-1], flush=True)
    return md
