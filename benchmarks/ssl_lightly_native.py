"""jepalab vs lightly *as lightly's own examples run it*: the speed and accuracy a user who switches sees.

Why a second comparison beside ``ssl_table.py``: the table gives lightly's loss and head jepalab's
whole pipeline (views, data, trainer), which isolates the objective (equal within noise) but is not
what a lightly user runs. lightly's examples augment each image on its own with torchvision
transforms inside a ``DataLoader`` (``lightly.transforms``: a ``MultiViewTransform`` of view
transforms), then run a plain loop: views -> backbone -> head -> loss -> step. jepalab augments
whole batches as tensors inside the training process. Here both sides share the backbone (jepalab's
conv encoder + learned pooling), the head's shape, the optimizer (AdamW, same parameter groups,
warmup + cosine, grad clip 1), the steps, the batch and, as far as lightly's transform can express
it, the augmentation distribution (crop scale, flip probability, brightness and contrast, always
applied; lightly has no additive noise, so its views go without jepalab's ``noise_std``). They
differ in the data pipeline and in the loss/head implementation.

Speed: interleaved rounds (jepalab, lightly, lightly, jepalab, ...) of short runs from a fresh
model, images/s of the whole training call (DataLoader workers' start-up included), median per side.
Two core budgets, the same for both sides: 1 core (1 torch thread; lightly ``num_workers=0``) and
``c`` > 1 cores (jepalab ``c`` threads; lightly 1 thread + ``c`` loader workers: its transforms are
the bottleneck, so this is lightly's fastest split here). The 2-core rows need an otherwise idle
machine: on a busy one, 2 OpenMP threads wait on each other and measure the neighbours. Accuracy: each side
trains the table's full budget once (1 thread) and is probed with the table's kNN and linear probes.

    .venv-bench/bin/python benchmarks/ssl_lightly_native.py          # ~8 min on an idle 2-core CPU
    .venv-bench/bin/python benchmarks/ssl_lightly_native.py --quick  # a smoke run
Writes ``benchmarks/results/ssl_lightly_native.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_table import (MNIST_STEPS, RESULTS, VIEW_METHODS, LightlyViewRecipe, Method, Setting, build_model,  # noqa: E402
                       evaluate, lightly_status, loadavg, methods_for, mnist_setting, train_cfg, write_report)

from jepalab.errors import ConfigError, MissingDependencyError  # noqa: E402
from jepalab.train import TrainConfig, train  # noqa: E402
from jepalab.trainer.config import lr_at, param_groups  # noqa: E402


class PILImages(torch.utils.data.Dataset):
    """Images ``(N, C, H, W)`` in [0, 1] held as PIL images (what torchvision transforms take),
    each returned as ``transform(image)``: lightly's list of views ``[(C, H, W), ...]``."""

    def __init__(self, images: Tensor, transform: Any) -> None:
        from PIL import Image

        mode = "L" if images.shape[1] == 1 else "RGB"
        arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        self.images = [Image.fromarray(a[..., 0] if mode == "L" else a, mode=mode) for a in arr]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[Tensor]:
        return self.transform(self.images[i])


def lightly_transform(m: Method) -> Any:
    """lightly's multi-view transform with the jepalab row's augmentation settings.

    ``VICRegViewTransform`` with blur, solarization, grayscale and normalization off and colour
    jitter restricted to brightness/contrast at jepalab's strengths, applied to every view
    (``cj_prob=1``) as jepalab does; one copy per view of the recipe (2, or 4 for LeJEPA)."""
    from lightly.transforms import VICRegViewTransform
    from lightly.transforms.multi_view_transform import MultiViewTransform

    aug, cfg = m.model["augment"], m.model
    view = VICRegViewTransform(
        input_size=cfg["img_size"], cj_prob=1.0, cj_strength=1.0, cj_bright=aug["brightness"],
        cj_contrast=aug["contrast"], cj_sat=0.0, cj_hue=0.0, min_scale=aug["crop_scale"][0],
        random_gray_scale=0.0, solarize_prob=0.0, gaussian_blur=0.0, hf_prob=aug["flip_prob"], normalize=None)
    return MultiViewTransform([view] * cfg.get("num_views", 2))


def train_lightly(m: Method, images: Tensor, steps: int, seed: int, workers: int) -> tuple[LightlyViewRecipe, float]:
    """lightly's example loop for the row ``m`` (its lightly twin: lightly head + loss), trained
    ``steps`` steps on ``images``; returns the model and the wall time of the whole call."""
    cfg = train_cfg(m, steps)
    t0 = time.perf_counter()
    model = build_model(dataclasses.replace(m, lightly=True), steps, seed)
    assert isinstance(model, LightlyViewRecipe)
    groups, _ = param_groups(model, cfg.weight_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(PILImages(images, lightly_transform(m)), batch_size=m.batch_size,
                                         shuffle=True, drop_last=True, num_workers=workers, generator=gen)
    params = [p for g in groups for p in g["params"]]
    step = 0
    model.train()
    while step < steps:
        for views in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            b = views[0].shape[0]
            z = model.backbone.projector(model.backbone.embed(torch.cat(views)))
            loss = model.loss_of(list(z.split(b)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            if step == steps:
                break
    return model, time.perf_counter() - t0


def train_jepalab(m: Method, st: Setting, steps: int, seed: int, root: Path) -> tuple[Any, float]:
    cfg: TrainConfig = train_cfg(m, steps)
    t0 = time.perf_counter()
    model = build_model(m, steps, seed)
    train(model, st.image_source, cfg, root / f"{m.recipe}-{time.monotonic_ns()}", seed=seed)
    return model, time.perf_counter() - t0


def speed(m: Method, st: Setting, images: Tensor, steps: int, rounds: int, seed: int, cores: int) -> dict[str, float]:
    """Median images/s of each side over ``rounds`` interleaved runs on ``cores`` cores."""
    got: dict[str, list[float]] = {"jepalab": [], "lightly": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in ("jepalab", "lightly") if r % 2 == 0 else ("lightly", "jepalab"):
                torch.set_num_threads(cores if side == "jepalab" else 1)
                if side == "jepalab":
                    _, wall = train_jepalab(m, st, steps, seed, Path(tmp))
                else:
                    _, wall = train_lightly(m, images, steps, seed, workers=0 if cores == 1 else cores)
                got[side].append(steps * m.batch_size / wall)
    torch.set_num_threads(1)
    return {k: statistics.median(v) for k, v in got.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=MNIST_STEPS, help="training steps of the accuracy runs (the table's)")
    p.add_argument("--speed-steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--cores", default="1,2", help="comma list of core budgets for the speed test")
    p.add_argument("--methods", default="LeJEPA,VICReg,Barlow Twins")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 20 steps, small sets, 2 rounds")
    p.add_argument("--out", default=str(RESULTS / "ssl_lightly_native.md"))
    a = p.parse_args(argv)
    why = lightly_status()
    if why:
        raise MissingDependencyError(f"this comparison needs lightly: {why}; run scripts/setup_bench_env.sh and use "
                                     ".venv-bench/bin/python.")
    steps, sp_steps, rounds = (20, 10, 2) if a.quick else (a.steps, a.speed_steps, a.rounds)
    cores = [int(c) for c in a.cores.split(",") if c.strip()]
    if any(c < 1 for c in cores) or steps < 1 or sp_steps < 1 or rounds < 1:
        raise ConfigError("--cores, --steps, --speed-steps and --rounds must be positive.")
    torch.set_num_threads(1)
    t_start, load0 = time.perf_counter(), loadavg()
    st = mnist_setting(2000 if a.quick else 10000, 1000 if a.quick else 5000, 500 if a.quick else 2000, seed=a.seed)
    images = st.image_source.all()["images"]
    want = [x.strip() for x in a.methods.split(",") if x.strip()]
    rows = [m for m in methods_for(st, with_lightly=False) if m.recipe in VIEW_METHODS and m.label in want]
    if len(rows) != len(want):
        raise ConfigError(f"--methods: choose among LeJEPA, VICReg, Barlow Twins; got {want}.")
    import lightly

    cmd = " ".join(["benchmarks/ssl_lightly_native.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    md = ["# jepalab vs lightly as lightly's examples run it (MNIST 16x16)", "",
          f"Command: `{Path(sys.executable).name} {cmd}`; torch {torch.__version__}, lightly {lightly.__version__}, "
          f"CPU fp32, seed {a.seed}; load average at start: {load0}.", "",
          "lightly side: per-image `lightly.transforms` (VICRegViewTransform x views, jepalab's crop/jitter settings, "
          "no noise) in a torch DataLoader, lightly `ProjectionHead` + loss, a plain loop. jepalab side: `jepalab.train` "
          "with batched tensor views. Same backbone, optimizer, schedule, steps and batch (see the script's docstring).", "",
          f"## Speed: images/s, median of {rounds} interleaved {sp_steps}-step runs per side", "",
          "| method | batch x views | cores | jepalab img/s | lightly img/s | jepalab / lightly |", "|---|---|---|---|---|---|"]
    for m in rows:
        for c in cores:
            print(f"[speed] {m.label}, {c} core(s) ...", flush=True)
            r = speed(m, st, images, sp_steps, rounds, a.seed, c)
            md.append(f"| {m.label} | {m.batch_size} x {m.model.get('num_views', 2)} | {c} | {r['jepalab']:.0f} | "
                      f"{r['lightly']:.0f} | {r['jepalab'] / r['lightly']:.2f}x |")
            print("   ", md[-1], flush=True)
    md += ["", f"## Accuracy after {steps} steps (1 thread; lightly with 0 workers)", "",
           "| method | jepalab kNN | jepalab linear | lightly kNN | lightly linear | jepalab wall s | lightly wall s |",
           "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for m in rows:
            print(f"[accuracy] {m.label} ...", flush=True)
            jm, jw = train_jepalab(m, st, steps, a.seed, Path(tmp))
            lm, lw = train_lightly(m, images, steps, a.seed, workers=0)
            je, le = evaluate(jm, st), evaluate(lm, st)
            md.append(f"| {m.label} | {je['knn']:.3f} | {je['linear']:.3f} | {le['knn']:.3f} | {le['linear']:.3f} | "
                      f"{jw:.1f} | {lw:.1f} |")
            print("   ", md[-1], flush=True)
    md += ["", f"Total wall time {time.perf_counter() - t_start:.0f} s; load average at end: {loadavg()}.", ""]
    write_report(Path(a.out), md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
