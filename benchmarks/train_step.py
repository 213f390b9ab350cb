"""Training-step throughput of jepalab's I-JEPA against lightly's, side by side in one process.

Why: a JEPA library is only useful on small hardware if its step is close to what the hardware
can do. This script measures the machine's fp32 matmul peak (``matmul_peak.py``), then times the
full I-JEPA training step (masks, teacher forward, context encoder, predictor, loss, backward,
AdamW, EMA update) of

- ``jepalab``: ``jepalab.recipes.ijepa.IJEPA(IJEPAConfig(...))``,
- ``jepalab+compile`` (``--compile``): the same with encoder, teacher and predictor compiled,
- ``lightly``: lightly 1.6.0's ``IJEPABackbone`` + ``IJEPAPredictor`` (torchvision ViT blocks)
  with its ``IJEPAMaskCollator``, assembled as in lightly's own I-JEPA example,

with the same widths, depths, heads, patch grid, mask settings (4 targets, scale 0.15-0.2,
aspect 0.75-1.5, context 0.85-1.0), batch, data, loss (smooth L1), optimizer and thread count.
Methods are interleaved round by round so load from other processes hits all of them alike;
step times are medians. FLOPs are counted (matmuls, convs, attention; forward + backward) with
``torch.utils.flop_counter.FlopCounterMode`` on the same seeded steps that are timed.

lightly needs torchvision, which does not import beside the torch 2.13.0 CPU build of ``.venv``;
run this in ``.venv-bench`` (``scripts/setup_bench_env.sh``)::

    .venv-bench/bin/python benchmarks/train_step.py --out /tmp/train_step.md
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# On a shared, oversubscribed CPU, OpenMP threads that spin at barriers make a 2-thread step up to
# 10x slower (measured here); passive waiting removes that pathology for every method alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from jepalab.atomic import write_text_atomic
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import MatmulPeak, measure_matmul_peak, vit_gemm_shapes  # noqa: E402


@dataclass
class Shape:
    """The model and batch both sides are built with."""

    img: int = 64
    patch: int = 8
    dim: int = 192
    depth: int = 6
    heads: int = 3
    pred_dim: int = 96
    pred_depth: int = 4
    pred_heads: int = 3
    targets: int = 4
    batch: int = 64
    lr: float = 1e-4

    @property
    def num_patches(self) -> int:
        return (self.img // self.patch) ** 2


class Method:
    """One way of running the I-JEPA step. ``step(images, seed)`` does a full optimizer step whose
    masks depend only on ``seed``, so FLOP counting and timing see the same work."""

    name = ""

    def __init__(self) -> None:
        self.modules: list[nn.Module] = []
        self.opt: torch.optim.Optimizer | None = None
        self.ctx_tokens: list[int] = []

    def step(self, images: Tensor, seed: int) -> float:
        raise NotImplementedError

    def used_params(self) -> int:
        """Parameters that received a gradient in the last step (unused heads are not counted)."""
        return sum(p.numel() for m in self.modules for p in m.parameters() if p.grad is not None)


class JepalabStep(Method):
    """jepalab's recipe driven the way ``jepalab.train`` drives it (minus logging/checkpoints)."""

    def __init__(self, s: Shape, compile_: bool = False, context_scale: tuple[float, float] = (0.85, 1.0)) -> None:
        super().__init__()
        from jepalab.recipes.ijepa import IJEPA, IJEPAConfig

        self.name = "jepalab+compile" if compile_ else "jepalab"
        if context_scale != (0.85, 1.0):
            self.name += f" (context {context_scale[0]}-{context_scale[1]})"
        cfg = IJEPAConfig(context_scale=context_scale,
            img_size=s.img, in_chans=3, patch_size=s.patch, encoder="vit", embed_dim=s.dim, depth=s.depth,
            heads=s.heads, mlp_ratio=4.0, pred_dim=s.pred_dim, pred_depth=s.pred_depth, pred_heads=s.pred_heads,
            num_targets=s.targets, loss="smooth_l1", total_steps=10_000,
        )
        self.model = IJEPA(cfg)
        if compile_:
            self.model.encoder.compile(dynamic=True)
            self.model.predictor.compile(dynamic=True)
            if self.model.teacher is not None:
                self.model.teacher.module.compile(dynamic=True)
        self.modules = [self.model]
        self.opt = torch.optim.AdamW(self.model.trainable_parameters(), lr=s.lr)
        self.t = 0

    def step(self, images: Tensor, seed: int) -> float:
        torch.manual_seed(seed)  # the trainer seeds the global RNG per step; masks come from it
        self.opt.zero_grad(set_to_none=True)
        out = self.model.training_step({"images": images}, self.t)
        out["loss"].backward()
        self.opt.step()
        self.model.after_optimizer_step(self.t)
        self.t += 1
        self.ctx_tokens.append(int(out["context_tokens"]))
        return float(out["loss"].detach())


class LightlyStep(Method):
    """lightly 1.6.0's I-JEPA parts, assembled like lightly's ``examples/pytorch/ijepa.py``.

    Adaptation (documented): ``IJEPAPredictor.from_vit_encoder`` hard-codes a 768-wide input, and
    its constructor ties the encoder width to the predictor's MLP width (``mlp_dim``). To get the
    same predictor as jepalab (width ``pred_dim``, MLP ``4 * pred_dim``, input/output ``dim``) we
    build it with ``mlp_dim = 4 * pred_dim`` and resize its two projections to ``dim``.
    The collator keeps its default ``min_keep=4``: it applies that minimum to target blocks too
    and loops forever when a target block (3x3 = 9 patches on an 8x8 grid) is not above it.
    """

    name = "lightly"

    def __init__(self, s: Shape) -> None:
        super().__init__()
        from lightly.data.ijepa_collate import IJEPAMaskCollator
        from lightly.models import utils as lu
        from lightly.models.modules import ijepa

        self.lu, self.s = lu, s
        self.encoder = ijepa.IJEPABackbone(
            image_size=s.img, patch_size=s.patch, num_layers=s.depth, num_heads=s.heads,
            hidden_dim=s.dim, mlp_dim=4 * s.dim,
        )
        self.predictor = ijepa.IJEPAPredictor(
            seq_length=s.num_patches, num_layers=s.pred_depth, num_heads=s.pred_heads,
            hidden_dim=s.pred_dim, predictor_embed_dim=s.pred_dim, num_patches=s.num_patches,
            mlp_dim=4 * s.pred_dim, dropout=0.0, attention_dropout=0.0,
        )
        self.predictor.predictor_embed = nn.Linear(s.dim, s.pred_dim)
        self.predictor.predictor_proj = nn.Linear(s.pred_dim, s.dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.collator = IJEPAMaskCollator(
            input_size=s.img, patch_size=s.patch, enc_mask_scale=(0.85, 1.0), pred_mask_scale=(0.15, 0.2),
            aspect_ratio=(0.75, 1.5), nenc=1, npred=s.targets, min_keep=4,
        )
        self.modules = [self.encoder, self.predictor]
        params = list(self.encoder.parameters()) + list(self.predictor.parameters())
        self.opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=s.lr)
        self.t = 0

    def masks(self, images: Tensor, seed: int) -> tuple[list[Tensor], list[Tensor]]:
        """lightly's collator, made deterministic in ``seed`` (block sizes come from its counter,
        positions from the global RNG)."""
        torch.manual_seed(seed)
        self.collator._itr_counter.value = seed - 1
        _, enc, pred = self.collator([0] * images.shape[0])
        return list(enc), list(pred)

    def step(self, images: Tensor, seed: int) -> float:
        lu = self.lu
        masks_enc, masks_pred = self.masks(images, seed)
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            h = self.target_encoder(images)
            h = F.layer_norm(h, (h.size(-1),))
            h = lu.repeat_interleave_batch(lu.apply_masks(h, masks_pred), len(images), repeat=len(masks_enc))
        z = self.predictor(self.encoder(images, masks_enc), masks_enc, masks_pred)
        loss = F.smooth_l1_loss(z, h)
        loss.backward()
        self.opt.step()
        m = 0.996 + (1.0 - 0.996) * min(self.t / 10_000, 1.0)
        lu.update_momentum(self.encoder, self.target_encoder, m)
        self.t += 1
        self.ctx_tokens.append(int(masks_enc[0].shape[1]))
        return float(loss.detach())


def count_flops(method: Method, images: Tensor, seeds: list[int]) -> float:
    """Mean FLOPs (forward + backward matmul/conv/attention) of one step over ``seeds``."""
    total = 0
    for sd in seeds:
        with FlopCounterMode(display=False) as fc:
            method.step(images, sd)
        total += fc.get_total_flops()
    return total / len(seeds)


def time_interleaved(
    methods: list[Method], images: Tensor, seeds: list[int], warmup: int, rounds: int
) -> dict[str, list[float]]:
    """Per-step wall times; methods alternate step by step (order reversed every round), so a
    burst of load from other processes lands on all of them alike."""
    for m in methods:
        for i in range(warmup):
            m.step(images, seeds[i % len(seeds)])
        m.ctx_tokens.clear()
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    for r in range(rounds):
        for sd in seeds:
            for m in methods if r % 2 == 0 else methods[::-1]:
                t0 = time.perf_counter()
                m.step(images, sd)
                times[m.name].append(time.perf_counter() - t0)
    return times


def profile(method: Method, images: Tensor, seeds: list[int], rows: int) -> str:
    """torch.profiler op table (self CPU time) over a few steps, plus per-module forward times."""
    from torch.profiler import ProfilerActivity, profile as tprofile, record_function

    handles = []

    def label(mod: nn.Module, name: str) -> None:
        ctx: list = []
        handles.append(mod.register_forward_pre_hook(lambda *_: ctx.append(record_function(f"fwd::{name}").__enter__())))
        handles.append(mod.register_forward_hook(lambda *_: ctx.pop().__exit__(None, None, None)))

    if isinstance(method, JepalabStep):
        mdl = method.model
        label(mdl.encoder, "context_encoder")
        label(mdl.predictor, "predictor")
        if mdl.teacher is not None:
            label(mdl.teacher.module, "teacher")
    elif isinstance(method, LightlyStep):
        label(method.encoder, "context_encoder")
        label(method.predictor, "predictor")
        label(method.target_encoder, "teacher")
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for sd in seeds:
            with record_function("step"):
                method.step(images, sd)
    for h in handles:
        h.remove()
    ka = prof.key_averages()
    mods = [e for e in ka if e.key.startswith("fwd::") or e.key == "step"]
    n = len(seeds)
    lines = [f"### {method.name}: forward time per module (ms/step, CPU total incl. children)"]
    lines += [f"- {e.key}: {e.cpu_time_total / 1e3 / n:.1f}" for e in sorted(mods, key=lambda e: -e.cpu_time_total)]
    lines.append(f"\n### {method.name}: top ops by self CPU time\n```")
    lines.append(ka.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))
    lines.append("```")
    return "\n".join(lines)


def table(shape: Shape, peak: MatmulPeak, methods: list[Method], times: dict[str, list[float]],
          flops: dict[str, float], load: str) -> str:
    """Markdown report: the comparison table and the conditions it was measured under."""
    base = statistics.median(times["lightly"]) if "lightly" in times else None
    rows = [
        "| method | params | step ms (median, IQR) | samples/s | GFLOP/step | GFLOP/s | % of peak | vs lightly | ctx tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        ts = sorted(times[m.name])
        med = statistics.median(ts)
        q1, q3 = ts[len(ts) // 4], ts[(3 * len(ts)) // 4]
        gfs = flops[m.name] / med / 1e9
        ratio = f"{base / med:.2f}x" if base else "n/a"
        ctx = statistics.mean(m.ctx_tokens) if m.ctx_tokens else float("nan")
        rows.append(
            f"| {m.name} | {m.used_params() / 1e6:.2f}M | {med * 1e3:.0f} ({q1 * 1e3:.0f}-{q3 * 1e3:.0f}) | "
            f"{shape.batch / med:.1f} | {flops[m.name] / 1e9:.1f} | {gfs:.1f} | {100 * gfs / peak.peak_gflops:.0f}% | "
            f"{ratio} | {ctx:.1f} |"
        )
    shaped = ", ".join(f"{k}: {v:.0f}" for k, v in peak.shaped.items())
    sizes = ", ".join(f"{n}^3: {v:.0f}" for n, v in peak.by_size.items())
    return "\n".join([
        f"Model: ViT {shape.img}x{shape.img}/{shape.patch} ({shape.num_patches} patches), dim {shape.dim}, depth "
        f"{shape.depth}, heads {shape.heads}; predictor dim {shape.pred_dim}, depth {shape.pred_depth}, heads "
        f"{shape.pred_heads}; {shape.targets} targets; batch {shape.batch}; fp32, {peak.threads} threads, "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}.",
        f"fp32 matmul peak: **{peak.peak_gflops:.0f} GFLOP/s** (square GEMMs {sizes}); at this model's "
        f"GEMM shapes: {shaped} GFLOP/s.",
        f"Machine load (`uptime`) {load}.",
        "",
        *rows,
    ])


def loadavg() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="I-JEPA training-step benchmark: jepalab vs lightly.")
    d = Shape()
    for f in ("img", "patch", "dim", "depth", "heads", "pred_dim", "pred_depth", "pred_heads", "targets", "batch"):
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(d, f))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=4, help="distinct seeded steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time jepalab with torch.compile")
    p.add_argument("--no-lightly", action="store_true", help="jepalab only (e.g. in .venv without torchvision)")
    p.add_argument("--profile", action="store_true", help="append torch.profiler breakdowns")
    p.add_argument("--match-context", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="also time jepalab with this context_scale (e.g. 0.72 0.78 gives lightly's 7x7 "
                   "context block on an 8x8 grid: equal work per sample)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    a = p.parse_args(argv)
    if a.threads < 1 or a.seeds < 1 or a.rounds < 1 or a.batch < 1:
        p.error("--threads, --seeds, --rounds and --batch must be >= 1")
    shape = Shape(**{f: getattr(a, f) for f in ("img", "patch", "dim", "depth", "heads", "pred_dim", "pred_depth",
                                                 "pred_heads", "targets", "batch")})
    torch.set_num_threads(a.threads)
    load_before = loadavg()
    peak = measure_matmul_peak(a.threads, shapes=vit_gemm_shapes(shape.batch * shape.num_patches, shape.dim))
    print(f"matmul peak {peak.peak_gflops:.0f} GFLOP/s", flush=True)

    torch.manual_seed(0)
    methods: list[Method] = [JepalabStep(shape)]
    if not a.no_lightly:
        try:
            methods.append(LightlyStep(shape))
        except ImportError as e:
            p.error(f"lightly is not importable here ({e}); run in .venv-bench (scripts/setup_bench_env.sh) "
                    "or pass --no-lightly.")
    if a.match_context:
        methods.append(JepalabStep(shape, context_scale=tuple(a.match_context)))
    if a.compile:
        methods.append(JepalabStep(shape, compile_=True))
    images = torch.rand(shape.batch, 3, shape.img, shape.img, generator=torch.Generator().manual_seed(0))
    seeds = [1000 + i for i in range(a.seeds)]

    flops: dict[str, float] = {}
    for m in methods:
        t0 = time.perf_counter()
        if m.name.endswith("compile"):  # compile outside FlopCounterMode, then count on the eager twin
            for sd in seeds[:2]:
                m.step(images, sd)
            flops[m.name] = flops["jepalab"]
        else:
            flops[m.name] = count_flops(m, images, seeds)
        print(f"{m.name}: {flops[m.name] / 1e9:.1f} GFLOP/step (setup {time.perf_counter() - t0:.0f}s)", flush=True)
    times = time_interleaved(methods, images, seeds, a.warmup, a.rounds)
    load = f"before {load_before}, after {loadavg()} (2 cores)"
    report = table(shape, peak, methods, times, flops, load)
    if a.profile:
        report += "\n\n" + "\n\n".join(profile(m, images, seeds[:2], 18) for m in methods if not m.name.endswith("compile"))
    print(report)
    if a.out is not None:
        write_text_atomic(a.out, report + "\n")


if __name__ == "__main__":
    main()
