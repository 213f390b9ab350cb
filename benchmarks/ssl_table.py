"""Self-supervised benchmark table: every jepalab SSL recipe on MNIST and on two video sets
(bouncing balls, Moving MNIST), side by side with a randomly initialised encoder of the same
shape and, where lightly has the method, lightly's loss + head on the very same backbone, data,
views, trainer and steps.

Why one script: the three columns (jepalab, random init, lightly) must come from the same run,
the same machine load and the same data order, or the comparison means little. Quality is
measured on frozen pooled embeddings ``(N, D)``: weighted kNN (Caron et al. 2021) and a linear
probe (logistic regression for the digit class of MNIST and Moving MNIST, ridge R^2 for the balls'
state, also split into positions and velocities), plus the RankMe effective rank (Garrido et al.
2023) of the test embeddings. Speed: wall time of the whole
training call and training images per second (an image counts once, whatever its view count).

Run in jepalab's venv (lightly columns skipped, with a note) or in ``.venv-bench`` (with them):
    .venv-bench/bin/python benchmarks/ssl_table.py            # full table, ~40 min on 1 shared thread
    .venv/bin/python benchmarks/ssl_table.py --quick          # a smoke run of a minute or two
The markdown table is written to ``benchmarks/results/ssl_table.md`` with the command in its header.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jepalab.atomic import write_text_atomic
from jepalab.config import from_dict
from jepalab.errors import ConfigError, DataError, MissingDependencyError
from jepalab.eval.monitors import effective_rank
from jepalab.eval.probes import knn_classify, linear_classifier, linear_probe
from jepalab.recipes import get_recipe
from jepalab.recipes.base import Recipe
from jepalab.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_settings import (  # noqa: E402, F401  (re-exported: the studies import them from here)
    FramesAsImages,
    Setting,
    mnist_setting,
    moving_mnist_config,
    moving_mnist_setting,
    video_config,
    video_setting,
)

RESULTS = Path(__file__).resolve().parent / "results"
VIEW_METHODS = ("lejepa", "vicreg", "barlow")
#: Default optimizer steps per training run (a row's ``steps_scale`` multiplies them). MNIST: 900 x
#: 128 images (~11 epochs of the 10k subset); at 300 the view recipes' kNN did not clear the random
#: conv encoder's (SSL.md). Video: 200 steps of 64 frames (32 for I-JEPA) or 16 clips (V-JEPA).
MNIST_STEPS, VIDEO_STEPS = 900, 200


# ------------------------------------------------------------------------------------ methods
@dataclass
class Method:
    """A row of the table: recipe name, model config fields, training settings."""

    label: str
    recipe: str
    model: dict[str, Any]
    batch_size: int
    lr: float
    video: bool = False  # trains on clips (V-JEPA) rather than images
    lightly: bool = False  # lightly's loss/head on the same backbone
    steps_scale: float = 1.0  # this row's optimizer steps = scale x the dataset's --steps (masked JEPAs need more)


def _augment(setting: Setting) -> dict[str, Any]:
    if setting.kind == "class":  # digits: no flips (not mirror-symmetric)
        return dict(crop_scale=[0.4, 1.0], flip_prob=0.0, brightness=0.4, contrast=0.4, noise_std=0.05)
    return dict(crop_scale=[0.7, 1.0], flip_prob=0.0, brightness=0.2, contrast=0.2, noise_std=0.05)


def methods_for(setting: Setting, with_lightly: bool) -> list[Method]:
    """The jepalab rows (and lightly twins) for one setting, sized for a 2-core CPU."""
    s, c = setting.img_size, setting.in_chans
    video = setting.clip_source is not None  # 32x32 RGB frames cost ~4x a 16x16 digit: smaller batches
    # Moving MNIST: the view recipes get the MNIST budget (128 x 900 = 4.5 x the 200 video steps); at
    # 64 x 200 they did not clear the random conv encoder on kNN (SSL.md).
    moving = setting.name.startswith("Moving MNIST")
    vb, vs = (128, 4.5) if moving else (64 if video else 128, 1.0)
    view = dict(img_size=s, in_chans=c, encoder="conv", embed_dim=64, patch_size=4, width=16,
                proj_hidden=256, augment=_augment(setting))
    out = [
        # Digits: 4x4 grid of 4x4 patches, 2 targets of 2x2, full-width 4-deep predictor, 1800 x 256
        # (configs/ijepa_mnist.yaml; why: benchmarks/SSL.md). Video frames keep the 8x8-grid recipe at
        # 1600 x 64 frames: at 200 x 32 it stayed at its random init (0.362 vs 0.360 linear R^2).
        # Moving MNIST frames take the digits recipe (a 4x4 grid of 8x8 patches) at 1800 x 256: with the
        # bouncing-ball recipe they ended below their random init (SSL.md).
        Method("I-JEPA", "ijepa", dict(img_size=s, in_chans=c, encoder="vit", patch_size=s // 8, embed_dim=64, depth=3,
                                       heads=2, pred_dim=32, pred_depth=2, pred_heads=2) if video and not moving else
               dict(img_size=s, in_chans=c, encoder="vit", patch_size=s // 4, embed_dim=64, depth=3, heads=2,
                    pred_dim=64, pred_depth=4, pred_heads=4, num_targets=2, target_scale=[0.2, 0.25],
                    target_aspect=[0.75, 1.5], min_context=4), 64 if video and not moving else 256, 1e-3,
               steps_scale=9.0 if moving else 8.0 if video else 2.0),
        Method("LeJEPA", "lejepa", dict(view, proj_dim=64, num_views=4, sigreg_weight=0.05), vb, 2e-3, steps_scale=vs),
        Method("VICReg", "vicreg", dict(view, proj_dim=128), vb, 2e-3, steps_scale=vs),
        Method("Barlow Twins", "barlow", dict(view, proj_dim=128), vb, 2e-3, steps_scale=vs),
    ]
    if setting.clip_source is not None:
        # 4x4 patches (8x8 grid: 8x8 patches made a ball 1-2 patches and left ~9-15 context tokens of 64); lr 5e-4,
        # 2.5x steps: at 1e-3 the pooled teacher embedding drifts to a shared offset and is flagged (issue 5, SSL.md).
        # Moving MNIST: 8x8 patches (a digit spans 2x2), a full-width 4-deep predictor, 900 x 64 clips; the
        # bouncing-ball row's settings were flagged collapsed there (benchmarks/moving_mnist_screen.py).
        vj = dict(img_size=s, in_chans=c, num_frames=8, tubelet=2, patch_size=4, encoder="vit", embed_dim=96, depth=3,
                  heads=3, pred_dim=48, pred_depth=2, pred_heads=3)
        if moving:
            vj.update(patch_size=8, pred_dim=96, pred_depth=4, pred_heads=4)
        out.insert(1, Method("V-JEPA", "vjepa", vj, 64 if moving else 16, 5e-4, video=True,
                             steps_scale=4.5 if moving else 2.5))
    if with_lightly:  # each twin right after its jepalab row, so both run under the same machine load
        out = [x for m in out for x in ([m, dataclasses.replace(m, label=f"{m.label} (lightly)", lightly=True)]
                                        if m.recipe in VIEW_METHODS else [m])]
    return out


def build_model(m: Method, steps: int, seed: int) -> Recipe:
    """The recipe (or its lightly twin) with weights drawn from ``seed`` alone."""
    cls = get_recipe(m.recipe)
    cfg_data = dict(m.model)
    if "total_steps" in {f.name for f in dataclasses.fields(cls.config_class)}:
        cfg_data["total_steps"] = max(steps, 1)
    cfg = from_dict(cls.config_class, cfg_data, where="model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if m.lightly:
            return LightlyViewRecipe(m.recipe, cfg)
        return cls(cfg)


class LightlyViewRecipe(Recipe):
    """The lightly twin of a jepalab view recipe (VICReg, Barlow Twins, LeJEPA).

    Same ``ViewBackbone`` (encoder, pooling, augmentations) and the same trainer as jepalab's
    recipe; the projection head is lightly's ``ProjectionHead`` of the same shape
    (Linear-BN-ReLU-Linear) and the objective is lightly's: ``VICRegLoss``,
    ``BarlowTwinsLoss``, or LeJEPA's ``SIGReg`` + ``lejepa_invariance_loss`` combined as
    ``(1 - lambda) * inv + lambda * SIGReg`` over all views as global views (lightly's
    ``LeJEPALoss`` insists on at least one local view; jepalab's recipe uses global views only).
    """

    def __init__(self, recipe: str, config: Any) -> None:
        super().__init__(config)
        try:
            from lightly.loss import BarlowTwinsLoss, VICRegLoss
            from lightly.loss.lejepa_loss import SIGReg, lejepa_invariance_loss
            from lightly.models.modules.heads import ProjectionHead
        except Exception as e:  # ImportError or torchvision failing beside this torch
            raise MissingDependencyError(f"the lightly twins need lightly 1.6.0 ({e}); run "
                                         "scripts/setup_bench_env.sh and use .venv-bench/bin/python.") from e
        from jepalab.recipes.vicreg import ViewBackbone

        if recipe not in VIEW_METHODS:
            raise ConfigError(f"no lightly twin for recipe {recipe!r}; choose one of {VIEW_METHODS}.")
        self.name = f"lightly-{recipe}"
        self.kind = recipe
        c = config
        self.backbone = ViewBackbone(c)
        self.backbone.projector = ProjectionHead([
            (c.embed_dim, c.proj_hidden, nn.BatchNorm1d(c.proj_hidden), nn.ReLU()),
            (c.proj_hidden, c.proj_dim, None, None),
        ])
        if recipe == "vicreg":
            self.loss_fn = VICRegLoss(lambda_param=c.inv_weight, mu_param=c.var_weight, nu_param=c.cov_weight)
        elif recipe == "barlow":
            self.loss_fn = BarlowTwinsLoss(lambda_param=c.lambda_offdiag)
        else:
            self.loss_fn = SIGReg(knots=c.sigreg_points, t_max=c.sigreg_tmax, num_vectors=c.sigreg_proj)
            self._inv = lejepa_invariance_loss

    def loss_of(self, z: list[Tensor]) -> Tensor:
        """lightly's objective over the projections of the views, a list of ``(B, P)``."""
        if self.kind == "lejepa":
            zs = torch.stack(z)  # (V, B, P)
            lam = self.config.sigreg_weight
            return (1 - lam) * self._inv(all_proj=zs, global_proj=zs) + lam * self.loss_fn(zs)
        return torch.stack([self.loss_fn(z[0], zv) for zv in z[1:]]).mean()

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        h, z = self.backbone.views(batch)
        return {"loss": self.loss_of(z), "embeddings": h.detach()}

    def encode(self, x: Tensor) -> Tensor:
        """Pooled encoder embedding ``(B, C, H, W) -> (B, D)``."""
        return self.backbone.embed(x)


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def embed(model: Recipe, x: Tensor, chunk: int = 256) -> Tensor:
    """Frozen pooled embeddings ``(N, D)``; image recipes given clips average their frames."""
    model.eval()
    out = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        if xb.dim() == 5 and model.name != "vjepa" and model.name != "ijepa":
            b, t = xb.shape[:2]
            z = model.encode(xb.reshape(b * t, *xb.shape[2:])).view(b, t, -1).mean(1)
        else:
            z = model.encode(xb)
        out.append(z.float().cpu())
    model.train()
    return torch.cat(out)


def knn_regress(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 20) -> float:
    """Cosine k-NN regression (mean of the k nearest targets), scored by mean R^2 over targets."""
    from jepalab.eval.probes import r2_score

    tr = nn.functional.normalize(train_x, dim=1)
    te = nn.functional.normalize(test_x, dim=1)
    idx = (te @ tr.T).topk(min(k, tr.shape[0]), dim=1).indices
    return float(r2_score(train_y[idx].mean(1), test_y).mean())


def evaluate(model: Recipe, st: Setting) -> dict[str, float]:
    """kNN score, linear score (accuracy or R^2) and RankMe of the test embeddings."""
    ztr, zte = embed(model, st.probe_x), embed(model, st.test_x)
    if not (torch.isfinite(ztr).all() and torch.isfinite(zte).all()):
        raise DataError(f"{model.name} produced NaN/Inf embeddings: training diverged; lower the lr.")
    if st.kind == "class":
        knn = knn_classify(ztr, st.probe_y, zte, st.test_y, k=20)
        lin = linear_classifier(ztr, st.probe_y, zte, st.test_y, max_iter=100)
    else:
        knn = knn_regress(ztr, st.probe_y, zte, st.test_y)
        lin = float(linear_probe(ztr, st.probe_y, zte, st.test_y)["r2"])
    out = {"knn": knn, "linear": lin, "rank": effective_rank(zte)}
    for name, (lo, hi) in st.groups.items():  # e.g. positions vs velocities, each probed on its own
        out[f"linear {name}"] = float(linear_probe(ztr, st.probe_y[:, lo:hi], zte, st.test_y[:, lo:hi])["r2"])
    return out


def train_cfg(m: Method, steps: int, compile: bool = False, log_every: int = 0) -> TrainConfig:
    """The table's training settings; ``compile`` turns on ``TrainConfig.compile``, ``log_every``
    (default: once, at the end) lets the speed test read the time at an intermediate step."""
    return TrainConfig(steps=steps, batch_size=m.batch_size, lr=m.lr, weight_decay=0.05,
                       warmup_steps=min(20, steps), checkpoint_every=0, log_every=log_every or max(steps, 1),
                       monitor_every=max(steps, 1), progress=False, device="cpu", amp="off", compile=compile)


def run_method(m: Method, st: Setting, steps: int, seed: int, run_root: Path) -> dict[str, Any]:
    """Train one row (``steps`` > 0) or evaluate its random init (``steps`` == 0)."""
    model = build_model(m, steps, seed)
    row: dict[str, Any] = {"method": m.label, "steps": steps, "batch": m.batch_size}
    if steps > 0:
        source = st.clip_source if m.video else st.image_source
        t0 = time.perf_counter()
        final = train(model, source, train_cfg(m, steps), run_root / m.label.replace(" ", "_"), seed=seed)
        wall = time.perf_counter() - t0
        per_step = m.batch_size * (8 if m.video else 1)  # images (frames) per optimizer step
        row.update(wall_s=wall, samples_s=steps * per_step / wall, collapsed=bool(final.get("monitor/collapsed", False)),
                   final_loss=float(final["loss"]))
    row.update(evaluate(model, st))
    return row


def random_rows(st: Setting, methods: list[Method], seed: int) -> list[dict[str, Any]]:
    """One untrained encoder per distinct architecture (the view recipes share theirs)."""
    seen, rows = set(), []
    for m in methods:
        arch = "view backbone (conv)" if m.recipe in VIEW_METHODS else f"{m.label} encoder"
        if m.lightly or arch in seen:
            continue
        seen.add(arch)
        rows.append(run_method(dataclasses.replace(m, label=f"random init: {arch}"), st, 0, seed, Path(".")))
    return rows


# --------------------------------------------------------------------------------------- table
def fmt_rows(rows: list[dict[str, Any]], kind: str, groups: tuple[str, ...] = ()) -> list[str]:
    score = "acc" if kind == "class" else "R^2"
    extra = "".join(f" linear R^2 {g} |" for g in groups)
    lines = [f"| method | steps x batch | kNN {score} | linear {score} |{extra} eff. rank | wall s | samples/s | collapsed |",
             "|---|---|---|---|" + "---|" * len(groups) + "---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | - | failed: {r['error']} | | |" + " |" * len(groups) + " | | |")
            continue
        sp = f"{r['wall_s']:.1f} | {r['samples_s']:.0f}" if "wall_s" in r else "- | -"
        steps = f"{r['steps']} x {r['batch']}" if r["steps"] else "0 (untrained)"
        col = ("yes" if r["collapsed"] else "no") if "collapsed" in r else "-"
        ex = "".join(f" {r[f'linear {g}']:.3f} |" for g in groups)
        lines.append(f"| {r['method']} | {steps} | {r['knn']:.3f} | {r['linear']:.3f} |{ex} {r['rank']:.1f} | {sp} | {col} |")
    return lines


def compare_lines(rows: list[dict[str, Any]]) -> list[str]:
    """jepalab vs lightly, per method present in both: accuracy delta and speed ratio."""
    by = {r["method"]: r for r in rows if "error" not in r}
    out = []
    for name, r in by.items():
        twin = by.get(f"{name} (lightly)")
        if twin is None or "samples_s" not in r:
            continue
        ratio = r["samples_s"] / twin["samples_s"]
        out.append(f"- {name}: linear {r['linear']:.3f} vs lightly {twin['linear']:.3f} "
                   f"({'>=' if r['linear'] >= twin['linear'] else '<'}), kNN {r['knn']:.3f} vs {twin['knn']:.3f}; "
                   f"samples/s ratio jepalab/lightly = {ratio:.2f}x (goal >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}).")
    return out


def lightly_status() -> str | None:
    """``None`` when lightly's losses import, else the reason (printed in the table)."""
    try:
        import lightly  # noqa: F401
        from lightly.loss import BarlowTwinsLoss, LeJEPALoss, VICRegLoss  # noqa: F401
    except Exception as e:  # ImportError, or torchvision failing to load beside this torch
        return f"lightly not importable here ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return None


def write_report(out: Path, md: list[str]) -> None:
    """Write the markdown lines ``md`` to ``out`` atomically (a crash leaves the old file) and echo them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(md))
    print("\n".join(md))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="mnist,video,moving-mnist", help="comma list of mnist, video, moving-mnist")
    p.add_argument("--steps", type=int, default=MNIST_STEPS, help="optimizer steps per MNIST training run")
    p.add_argument("--video-steps", type=int, default=VIDEO_STEPS, help="optimizer steps per video training run")
    p.add_argument("--mnist-train", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 20 steps, small probe sets")
    p.add_argument("--methods", default="", help="comma list of row labels to run (default: all)")
    p.add_argument("--speed-only", action="store_true",
                   help="only the interleaved jepalab/lightly A/B speed test (writes results/ssl_speed.md)")
    p.add_argument("--speed-steps", type=int, default=30)
    p.add_argument("--speed-rounds", type=int, default=5)
    p.add_argument("--no-lightly", action="store_true", help="skip the lightly twins even if importable")
    p.add_argument("--compile", action="store_true",
                   help="--speed-only: train the jepalab side with train.compile=true (steady-state img/s, "
                        "compile time reported; writes results/ssl_speed_compile.md)")
    p.add_argument("--out", default=str(RESULTS / "ssl_table.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    steps = 20 if a.quick else a.steps
    if a.compile and not a.speed_only:
        raise ConfigError("--compile applies to the A/B speed test only: add --speed-only.")
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}.")
    why_no_lightly = "skipped by --no-lightly" if a.no_lightly else lightly_status()
    t_start, load0 = time.perf_counter(), loadavg()
    cmd = " ".join([Path(sys.executable).relative_to(Path.cwd()).as_posix() if Path(sys.executable).is_relative_to(Path.cwd())
                    else sys.executable, *map(shlex.quote, sys.argv if argv is None else ["benchmarks/ssl_table.py", *argv])])
    md = ["# jepalab SSL benchmark table", "", f"Command: `{cmd}` (every row below comes from this one "
          "command, run once: rerun it to reproduce the whole table)", "",
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU fp32, seed {a.seed}, "
          f"{steps} (MNIST) / {20 if a.quick else a.video_steps} (video) steps per run; load average (1/5/15 min) at start: {load0}."]
    md.append(f"lightly: {why_no_lightly or 'lightly ' + __import__('lightly').__version__ + ' (loss and head from lightly, backbone, views, data, trainer from jepalab)'}")
    if a.speed_only:
        from ssl_speed import speed_section  # the A/B speed test lives in its own file

        md = speed_section(a, md, steps, why_no_lightly)
    for ds in [d.strip() for d in a.datasets.split(",") if d.strip()] if not a.speed_only else []:
        if ds == "mnist":
            n = 2000 if a.quick else a.mnist_train
            st = mnist_setting(n, 1000 if a.quick else 5000, 500 if a.quick else 2000, seed=a.seed)
        elif ds == "video":
            st = video_setting(256 if a.quick else 1024, 256 if a.quick else 512, seed=a.seed)
        elif ds == "moving-mnist":
            st = moving_mnist_setting(256 if a.quick else 2048, 256 if a.quick else 1024, seed=a.seed)
        else:
            raise ConfigError(f"--datasets: unknown {ds!r}; use mnist, video and/or moving-mnist.")
        methods = methods_for(st, with_lightly=why_no_lightly is None)
        if a.methods:
            keep = {x.strip() for x in a.methods.split(",")}
            methods = [m for m in methods if m.label in keep or m.label.removesuffix(" (lightly)") in keep]
        rows = random_rows(st, methods, a.seed)
        with tempfile.TemporaryDirectory() as tmp:
            for m in methods:
                print(f"[{ds}] {m.label} ...", flush=True)
                try:
                    n_steps = steps if ds == "mnist" or a.quick else a.video_steps
                    n_steps = max(1, round(n_steps * m.steps_scale))
                    rows.append(run_method(m, st, n_steps, a.seed, Path(tmp)))
                except (MissingDependencyError, DataError) as e:
                    rows.append({"method": m.label, "error": str(e)[:100]})
                print("   ", rows[-1], flush=True)
        md += ["", f"## {st.name}", "", st.note + ".", "", *fmt_rows(rows, st.kind, tuple(st.groups)), ""]
        md += compare_lines(rows) or ["- lightly columns: " + (why_no_lightly or "no lightly twin for these methods")]
    md += ["", f"Total wall time {time.perf_counter() - t_start:.0f} s; load average at end: {loadavg()}.", ""]
    speed_md = RESULTS / ("ssl_speed_compile.md" if a.compile else "ssl_speed.md")
    write_report(Path(a.out if not (a.speed_only and a.out == str(RESULTS / "ssl_table.md")) else speed_md), md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
