"""DDP under torchrun on CPU (gloo): 2 ranks x (B/2) must train the same weights as 1 x B."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from conftest import TinySource, make_model, run_worker
from safetensors.torch import load_file

from jepalab.checkpoint import MODEL_FILE, latest_checkpoint, list_checkpoints
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train

torch.set_num_threads(1)

TRAIN = dict(steps=6, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=3, keep_last=5,
             log_every=2, monitor_every=0, progress=False, device="cpu", grad_clip=1.0)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_process_gloo_matches_single_process(tmp_path) -> None:
    # noise=0: the recipe draws no random numbers, so rank-dependent seeds do not change the math
    single = make_model(noise=0.0)
    train(single, TinySource(), TrainConfig(**TRAIN), tmp_path / "one", seed=0)

    # 2 ranks, each also accumulating 2 micro-batches of 2 rows (exercises DDP's no_sync)
    run = tmp_path / "two"
    run_worker({"model": {"noise": 0.0}, "train": {**TRAIN, "accum_steps": 2}, "run_dir": str(run), "seed": 0},
               nproc=2)
    ddp_weights = load_file(str(latest_checkpoint(run) / MODEL_FILE))
    for k, v in single.state_dict().items():  # student, head and EMA teacher
        assert torch.allclose(v, ddp_weights[k], atol=1e-5, rtol=0), (k, (v - ddp_weights[k]).abs().max())
    assert not all(torch.equal(v, make_model(noise=0.0).state_dict()[k]) for k, v in ddp_weights.items())

    # rank 0 alone logs and checkpoints: each step logged once, with the global loss
    log, one_log = read_jsonl(run / "log.jsonl"), read_jsonl(tmp_path / "one" / "log.jsonl")
    assert [r["step"] for r in log] == [2, 4, 6]
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in one_log], rel=1e-5)
    assert [p.name for p in list_checkpoints(run)] == ["step_0000003", "step_0000006"]
    start = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "start"]
    assert len(start) == 1 and start[0]["world_size"] == 2


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_unused_trainable_parameter_gets_actionable_error(tmp_path) -> None:
    proc = run_worker({"model": {"unused": True}, "train": {**TRAIN, "steps": 3}, "run_dir": str(tmp_path / "u")},
                      nproc=2, check=False)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and "requires_grad_(False)" in proc.stderr, proc.stderr[-2000:]
