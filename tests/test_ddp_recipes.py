"""Real recipes under DDP: 2 gloo processes x B/2 rows train what 1 process x B rows trains.

I-JEPA (per-batch block shapes, per-sample positions, trimming to the global batch minimum),
VICReg (per-image views, batch statistics, a BatchNorm in the projector) and the world model
(a BatchNorm at the end of the encoder, SIGReg) are trained for a few steps from their shipped
configs, shrunk, once in one process and once under torchrun; the per-step losses and the final
weights must agree. Also runnable as ``python -m test_ddp_recipes '<json>'`` (the training worker).

VICReg and the world model train in float64: their float32 gradients are ill-conditioned enough
(a BatchNorm over nearly constant features, parameters the loss is invariant to, which Adam's
normalisation turns rounding noise into full-size steps for) that two summation orders of the
same math drift apart; in float64 any difference left is a difference in the math.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TESTS_DIR, subprocess_env
from safetensors.torch import load_file

from jepalab.checkpoint import MODEL_FILE
from jepalab.data.augment import AugmentConfig, ViewAugment
from jepalab.draws import Draws, attach
from jepalab.errors import DataError
from jepalab.masks import FutureFrameMask, MultiBlockMask, RandomMask, TubeMask
from jepalab.runlog import read_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed gloo")
SHRINK = ["train.steps=4", "train.warmup_steps=1", "train.log_every=1", "train.monitor_every=0",
          "train.checkpoint_every=0", "train.progress=false", "train.device=cpu"]


class Float64Source:
    """A source whose floating-point tensors come as float64."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
        b = self.source.batch(step, batch_size, rank=rank, world_size=world_size)
        return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in b.items()}


def _build(args: dict[str, Any]) -> tuple[Any, Any, Any]:
    from jepalab.config import load_experiment
    from jepalab.experiment import build

    exp = load_experiment(CONFIGS / args["config"], args["set"])
    model, source = build(exp)
    if args.get("float64"):
        model.double()
        source = Float64Source(source)
    return exp, model, source


def worker_main(argv: list[str]) -> None:
    """Train per ``{"config", "set", "float64", "run_dir"}`` (one JSON argument)."""
    from jepalab.train import train

    torch.set_num_threads(1)
    args = json.loads(argv[0])
    exp, model, source = _build(args)
    train(model, source, exp.train, args["run_dir"], seed=exp.seed)


def _start(args: dict[str, Any], nproc: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "test_ddp_recipes", json.dumps(args)]
    if nproc > 1:
        cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "test_ddp_recipes"]
    return subprocess.Popen(cmd, env=subprocess_env(), cwd=TESTS_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _one_vs_two(tmp_path: Path, config: str, overrides: list[str], float64: bool,
                two_overrides: tuple[str, ...] = ()) -> tuple[Path, Path, dict[str, Any]]:
    """Train ``config`` in 1 and in 2 processes (at once); return both run dirs and the args."""
    args = {"config": config, "set": SHRINK + overrides, "float64": float64}
    one, two = tmp_path / "one", tmp_path / "two"
    procs = [_start({**args, "run_dir": str(one)}, 1),
             _start({**args, "set": args["set"] + list(two_overrides), "run_dir": str(two)}, 2)]
    for p in procs:
        out, _ = p.communicate(timeout=400)
        if p.returncode != 0:
            pytest.fail(f"training worker failed ({p.returncode}):\n{out[-4000:]}")
    return one, two, args


def _assert_same_training(one: Path, two: Path, args: dict[str, Any], atol: float) -> None:
    start = [e for e in read_jsonl(two / "events.jsonl") if e["event"] == "start"]
    assert start and start[0]["world_size"] == 2
    l1, l2 = read_jsonl(one / "log.jsonl"), read_jsonl(two / "log.jsonl")
    assert [r["step"] for r in l1] == [r["step"] for r in l2] == [1, 2, 3, 4]
    assert [r["loss"] for r in l2] == pytest.approx([r["loss"] for r in l1], rel=1e-6, abs=1e-7)
    w1, w2 = load_file(str(one / MODEL_FILE)), load_file(str(two / MODEL_FILE))
    assert w1.keys() == w2.keys()
    worst = max(w1, key=lambda k: float((w1[k] - w2[k]).abs().max()))
    assert torch.allclose(w1[worst], w2[worst], atol=atol, rtol=0), (worst, float((w1[worst] - w2[worst]).abs().max()))
    _, init, _ = _build(args)  # training moved the weights: the comparison is not of two copies of the init
    moved = max(float((w1[k] - v.to(w1[k].dtype)).abs().max()) for k, v in init.state_dict().items())
    assert moved > 100 * atol


@needs_gloo
def test_ijepa_two_processes_with_accumulation_equal_one(tmp_path: Path) -> None:
    # float32, as users train. The 2-process run also splits each rank's rows into 2 micro-batches,
    # so a rank's masks come from 4 different slices of the global batch.
    one, two, args = _one_vs_two(tmp_path, "ijepa_tiny.yaml", ["train.batch_size=8", "model.total_steps=4"],
                                 float64=False, two_overrides=("train.accum_steps=2",))
    _assert_same_training(one, two, args, atol=2e-5)


@needs_gloo
def test_vicreg_two_processes_equal_one(tmp_path: Path) -> None:
    one, two, args = _one_vs_two(tmp_path, "vicreg_digits.yaml", ["train.batch_size=16"], float64=True)
    _assert_same_training(one, two, args, atol=1e-8)


@needs_gloo
def test_worldmodel_two_processes_equal_one(tmp_path: Path) -> None:
    one, two, args = _one_vs_two(tmp_path, "worldmodel_bouncing.yaml", ["train.batch_size=8"], float64=True)
    # 1e-6, not 1e-8: the bias before the BatchNorm has a zero gradient that Adam scales float64
    # rounding of up to ~1e-8 steps (a per-rank BatchNorm moves every weight by ~lr = 1e-2).
    _assert_same_training(one, two, args, atol=1e-6)
    w = load_file(str(one / MODEL_FILE))
    assert "encoder.proj.1.running_mean" in w  # the BatchNorm (running statistics included) was compared


# --- draws keyed by global row: any split of a batch draws what the whole batch draws ----------------
KEY, TOTAL = 12345, 8
WHOLE = Draws(KEY, torch.arange(TOTAL), TOTAL)
SPLIT = [Draws(KEY, torch.arange(0, 3), TOTAL), Draws(KEY, torch.arange(3, 5), TOTAL), Draws(KEY, torch.arange(5, 8), TOTAL)]


@pytest.mark.parametrize("gen", [
    MultiBlockMask((6, 6), 3, (0.1, 0.2), min_context=4),
    TubeMask((2, 6, 6), ((3, 0.15),)),
    RandomMask(36, 0.5),
    FutureFrameMask((3, 4, 4)),
], ids=lambda g: type(g).__name__)
def test_masks_of_a_split_batch_equal_the_whole_batch(gen: Any) -> None:
    whole = gen.draw(WHOLE)
    parts = []
    for d in SPLIT:
        gen.draw(Draws(KEY + 1, d.index, TOTAL))  # another step in between: no stale reuse
        parts.append(gen.draw(d))
    assert torch.equal(torch.cat([p.context for p in parts]), whole.context)
    for m, t in enumerate(whole.targets):
        assert torch.equal(torch.cat([p.targets[m] for p in parts]), t)
    if not isinstance(gen, FutureFrameMask):  # the draws do depend on the key and the row
        assert not torch.equal(gen.draw(Draws(KEY + 2, WHOLE.index, TOTAL)).targets[0], whole.targets[0])
        assert len({tuple(r.tolist()) for r in whole.targets[0]}) > 1


def test_views_of_a_split_batch_equal_the_whole_batch() -> None:
    x = torch.rand(TOTAL, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    aug = ViewAugment(AugmentConfig(flip_prob=0.5))
    whole = aug.views(x, 2, WHOLE)
    parts = [aug.views(x[d.index], 2, d) for d in SPLIT]
    for v in range(2):
        assert torch.allclose(torch.cat([p[v] for p in parts]), whole[v], atol=1e-6)
    assert not torch.allclose(whole[0], whole[1], atol=1e-3)  # the two views differ


def test_trainer_entries_give_global_rows_and_a_rank_free_key() -> None:
    batch = {"images": torch.zeros(4, 1, 2, 2)}
    rank1 = Draws.of(attach(batch, seed=3, step=7, offset=4, total=8), 4)
    rank0 = Draws.of(attach(batch, seed=3, step=7, offset=0, total=8), 4)
    assert rank1.index.tolist() == [4, 5, 6, 7] and rank1.total == 8 and rank1.key == rank0.key
    assert Draws.of(attach(batch, 3, 8, 0, 8), 4).key != rank0.key != Draws.of(attach(batch, 4, 7, 0, 8), 4).key
    clips = rank1.per_item(2)  # frame t of clip i is image 2i + t
    assert clips.index.tolist() == list(range(8, 16)) and clips.total == 16
    with pytest.raises(DataError, match="one global index per row"):
        Draws.of(attach(batch, 3, 7, 0, 8), 3)
    torch.manual_seed(0)  # no trainer entries: a key from the global RNG, rows 0..n-1
    a = Draws.of(batch, 4)
    torch.manual_seed(0)
    assert Draws.of(batch, 4).key == a.key and a.index.tolist() == [0, 1, 2, 3]


# --- the collectives behind it, in-process ------------------------------------------------------
WORLD, ROWS = 2, 6


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(WORLD * ROWS, 5, 3, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)


def _bn_and_gather_step(rows: slice) -> dict[str, torch.Tensor]:
    """One BatchNorm1d forward/backward (global statistics) feeding a batch-statistics loss on the
    gathered rows; returns the gradients and the BatchNorm's running statistics."""
    from jepalab.objectives.cross_rank import gather_rows
    from jepalab.trainer.batchnorm import restore_batchnorm, use_global_batchnorm

    x_all, w = _inputs()
    bn = torch.nn.BatchNorm1d(5).double()
    holder = torch.nn.Sequential(bn)
    swaps = use_global_batchnorm(holder) if dist.is_initialized() else []
    x = x_all[rows].clone().requires_grad_()
    z = gather_rows(holder(x).mean(-1) @ w)                       # (global rows, 4)
    loss = z.var(0).sum() + (z[:, 0] * z[:, 1]).mean()
    loss.backward()
    restore_batchnorm(swaps)
    assert holder[0] is bn
    return {"x_grad": x.grad, "w_grad": bn.weight.grad, "b_grad": bn.bias.grad, "mean": bn.running_mean.clone(),
            "var": bn.running_var.clone(), "loss": loss.detach()}


def _collective_worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(str(Path(tmp) / "store"), WORLD), rank=rank, world_size=WORLD)
    try:
        out = _bn_and_gather_step(slice(rank * ROWS, (rank + 1) * ROWS))
        for k in ("w_grad", "b_grad"):  # what DDP does to parameter gradients
            dist.all_reduce(out[k])
            out[k] /= WORLD
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@needs_gloo
def test_global_batchnorm_and_gather_rows_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(_collective_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ref = _bn_and_gather_step(slice(None))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for r, got in enumerate(ranks):
        # Every rank computes the global loss, so each row's gradient arrives W times; DDP's average
        # over the W ranks then gives the parameters exactly the one-process gradient.
        assert torch.allclose(got["loss"], ref["loss"], atol=1e-12)
        assert torch.allclose(got["x_grad"] / WORLD, ref["x_grad"][r * ROWS:(r + 1) * ROWS], atol=1e-12)
        for k in ("w_grad", "b_grad"):
            assert torch.allclose(got[k], ref[k], atol=1e-12), k
        for k in ("mean", "var"):
            assert torch.allclose(got[k], ref[k], atol=1e-12), k


if __name__ == "__main__":
    worker_main(sys.argv[1:])


@needs_gloo
def test_compact_worldmodel_two_processes_equal_one(tmp_path: Path) -> None:
    # the compact planning model's variance-covariance terms are batch statistics: over all ranks
    compact = ["model.encoder=keypoint", "model.embed_dim=8", "model.keypoints=4", "model.predictor=mlp",
               "model.pred_dim=32", "model.history=1", "model.sigreg_weight=0.0", "model.var_weight=1.0",
               "model.cov_weight=0.04", "model.idm_weight=1.0", "model.rollout_steps=2"]
    one, two, args = _one_vs_two(tmp_path, "worldmodel_bouncing.yaml", ["train.batch_size=8", *compact],
                                 float64=True)
    _assert_same_training(one, two, args, atol=1e-8)
