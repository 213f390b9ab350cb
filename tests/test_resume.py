"""Kill a training process with SIGKILL, resume, and get exactly the weights of an unbroken run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TESTS_DIR, TinySource, make_model, subprocess_env, worker_cmd

from jepalab.checkpoint import latest_checkpoint, list_checkpoints, read_state
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train

torch.set_num_threads(1)

TRAIN = dict(steps=30, batch_size=16, lr=1e-2, warmup_steps=10, checkpoint_every=5, keep_last=2,
             log_every=1, monitor_every=0, progress=False, device="cpu", grad_clip=1.0)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_is_bit_exact(tmp_path) -> None:
    # reference: one uninterrupted run in this process
    ref = make_model()
    train(ref, TinySource(), TrainConfig(**TRAIN), tmp_path / "ref", seed=7)

    # the same run in a subprocess, slowed down, killed once a mid-run checkpoint exists
    run = tmp_path / "killed"
    args = {"model": {"sleep": 0.05}, "train": TRAIN, "run_dir": str(run), "seed": 7}
    proc = subprocess.Popen(worker_cmd(args), env=subprocess_env(), cwd=TESTS_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while True:
            ck = latest_checkpoint(run) if (run / "checkpoints").exists() else None
            if ck is not None and read_state(ck)["step"] >= 10:
                break
            if proc.poll() is not None:
                pytest.fail(f"worker exited early: {proc.stdout.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint at step >= 10 within 120 s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    killed_at = read_state(latest_checkpoint(run))["step"]
    assert proc.returncode == -signal.SIGKILL
    assert killed_at < 30, "the run finished before it was killed; the test proves nothing"

    # resume in a fresh model (different init, so loading must overwrite everything)
    resumed = make_model(init_seed=99)
    out = train(resumed, TinySource(), TrainConfig(**TRAIN), run, seed=7, resume=True)
    assert out["step"] == 30
    ref_state, res_state = ref.state_dict(), resumed.state_dict()
    assert ref_state.keys() == res_state.keys()
    for k in ref_state:  # includes the EMA teacher
        assert torch.equal(ref_state[k], res_state[k]), f"{k} differs after resume from step {killed_at}"

    # the log holds every step exactly once, with the same losses as the unbroken run
    log, ref_log = read_jsonl(run / "log.jsonl"), read_jsonl(tmp_path / "ref" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 31))
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]
    assert [p.name for p in list_checkpoints(run)] == ["step_0000025", "step_0000030"]  # keep_last=2
    events = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "resume"]
    assert events and f"step {killed_at}" in events[-1]["message"]


def test_resume_without_checkpoint_starts_fresh_and_finished_run_is_a_noop(tmp_path) -> None:
    c = TrainConfig(**{**TRAIN, "steps": 10})
    a = make_model()
    train(a, TinySource(), c, tmp_path, seed=1, resume=True)  # nothing to resume: starts at 0
    assert "no checkpoint" in read_jsonl(tmp_path / "events.jsonl")[0]["message"]
    b = make_model(init_seed=5)
    out = train(b, TinySource(), c, tmp_path, seed=1, resume=True)  # already done: loads, no steps
    assert out["step"] == 10
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert len(read_jsonl(tmp_path / "log.jsonl")) == 10


def test_resume_extends_a_finished_run(tmp_path) -> None:
    # asking for more steps continues from the final checkpoint (the schedule is the new one)
    train(make_model(), TinySource(), TrainConfig(**{**TRAIN, "steps": 10}), tmp_path)
    out = train(make_model(), TinySource(), TrainConfig(**{**TRAIN, "steps": 15}), tmp_path, resume=True)
    assert out["step"] == 15
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == list(range(1, 16))


def test_resume_reports_changed_settings_and_refuses_another_model(tmp_path) -> None:
    train(make_model(), TinySource(), TrainConfig(**{**TRAIN, "steps": 10}), tmp_path)
    train(make_model(), TinySource(), TrainConfig(**{**TRAIN, "steps": 12, "lr": 5e-3}), tmp_path, resume=True)
    ev = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["event"] == "config_changed"]
    assert len(ev) == 1 and "lr 0.01 -> 0.005" in ev[0]["message"] and "steps 10 -> 12" in ev[0]["message"]
    from jepalab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="same config|same model config"):
        train(make_model(unused=True), TinySource(), TrainConfig(**{**TRAIN, "steps": 14}), tmp_path, resume=True)
