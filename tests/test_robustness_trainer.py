"""Trainer robustness: divergence never leaves a poisoned checkpoint as "the last good one", resume
says when it is not bit-exact, a partial collapse is flagged relative to the run's start, and a
kill while pruning leaves no half-deleted checkpoint that is counted or resumed from."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
import torch
from conftest import TESTS_DIR, TinyConfig, TinyRecipe, TinySource, make_model
from torch import Tensor

from jepalab import checkpoint as ck
from jepalab.checkpoint import (
    LATEST_FILE,
    STATE_FILE,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temp_dirs,
    restore_rng,
    save_checkpoint,
)
from jepalab.cli import run_summary
from jepalab.errors import CheckpointError, TrainingDivergedError
from jepalab.eval.monitors import REL_RANK_FRACTION, collapse_stats
from jepalab.runlog import read_jsonl
from jepalab.train import TrainConfig, train
from jepalab.trainer.config import param_groups
from jepalab.trainer.guard import GROWTH_LIMIT, weight_limit, weight_problem

torch.set_num_threads(1)
CONFIGS = TESTS_DIR.parent / "configs"

BASE = dict(steps=10, batch_size=16, lr=1e-2, warmup_steps=2, checkpoint_every=1, keep_last=3, log_every=1,
            monitor_every=0, progress=False, device="cpu", grad_clip=1.0)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


def _events(run, kind: str) -> list[dict]:
    return [e for e in read_jsonl(run / "events.jsonl") if e["event"] == kind]


# --- item 5: the NaN guard ----------------------------------------------------------------------
def test_divergence_sets_aside_the_checkpoint_whose_forward_pass_diverged(tmp_path) -> None:
    # the loss of step 4 is NaN; checkpoint step_0000004 holds exactly the weights of that forward pass
    with pytest.raises(TrainingDivergedError) as err:
        train(make_model(nan_at=4), TinySource(), cfg(), tmp_path)
    msg = str(err.value)
    assert "step_0000003" in msg and "last good checkpoint" in msg
    assert re.search(r"step_0000004 \(the weights that diverged\) was set aside", msg)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002", "step_0000003"]  # keep_last=3
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    assert (tmp_path / "checkpoints" / "diverged-step_0000004" / STATE_FILE).is_file()  # kept for inspection
    assert "jepalab resume" in msg
    # the advice works: the fixed config resumes from step 3 and finishes
    out = train(make_model(init_seed=3), TinySource(), cfg(), tmp_path, resume=True)
    assert out["step"] == 10
    assert _events(tmp_path, "resume")[-1]["message"].endswith("at step 3")


def test_exploded_weights_are_never_saved_and_resume_with_a_sane_lr_recovers(tmp_path) -> None:
    # lr=1e4 without warmup: one AdamW step moves every weight by ~1e4; the loss is still finite
    with pytest.raises(TrainingDivergedError, match=r"exploded.*not saved.*No good checkpoint.*step 0"):
        train(make_model(), TinySource(), cfg(lr=1e4, warmup_steps=0), tmp_path)
    assert list_checkpoints(tmp_path) == []
    # the advice ("fix the config and resume") gives a healthy run, not the same divergence again
    out = train(make_model(), TinySource(), cfg(lr=1e-3, warmup_steps=0, steps=3), tmp_path, resume=True)
    losses = [r["loss"] for r in read_jsonl(tmp_path / "log.jsonl")]
    assert out["step"] == 3 and all(loss < 10 for loss in losses), losses


def test_resume_refuses_a_checkpoint_with_exploded_weights(tmp_path) -> None:
    # e.g. written by an older jepalab, whose NaN guard looked at the loss only
    m = make_model()
    opt = torch.optim.AdamW(param_groups(m, 0.05)[0], lr=1e-3)  # the trainer's own grouping
    with torch.no_grad():
        m.head.weight.mul_(1e6)
    save_checkpoint(tmp_path, 5, m, opt, {"rng": {}, "param_names": None})
    with pytest.raises(CheckpointError, match=r"step_0000005 holds unusable weights.*head.weight.*Delete"):
        train(make_model(), TinySource(), cfg(), tmp_path, resume=True)


def test_weight_problem_sees_nan_buffers_and_growth() -> None:
    m = make_model()
    limit = weight_limit(m)
    assert limit == GROWTH_LIMIT * max(1.0, max(float(p.detach().abs().max()) for p in m.parameters()))
    assert weight_problem(m, limit) is None
    with torch.no_grad():
        m.teacher[0].weight[0, 0] = float("nan")  # the EMA teacher is part of the checkpoint too
    assert "teacher.0.weight" in weight_problem(m, limit)
    m = make_model()
    with torch.no_grad():
        m.pos_embed.fill_(2 * limit)
    assert "pos_embed" in weight_problem(m, limit) and "exploded" in weight_problem(m, limit)


# --- item 4: resume that is not bit-exact says so -------------------------------------------------
def _edit_state(path, **changes) -> None:
    sp = path / STATE_FILE
    state = json.loads(sp.read_text())
    state.update(changes)
    sp.write_text(json.dumps(state))


def test_resume_with_another_world_size_warns_that_it_is_not_bit_exact(tmp_path) -> None:
    train(make_model(), TinySource(), cfg(steps=4), tmp_path)
    train(make_model(), TinySource(), cfg(steps=5), tmp_path, resume=True)  # same world size: silent
    assert _events(tmp_path, "not_bit_exact") == []
    _edit_state(latest_checkpoint(tmp_path), world_size=2)  # as if written by two processes
    train(make_model(), TinySource(), cfg(steps=6), tmp_path, resume=True)
    (ev,) = _events(tmp_path, "not_bit_exact")
    assert "2 process(es)" in ev["message"] and "this run has 1" in ev["message"]
    assert "same number of processes" in ev["message"]


def test_cuda_generator_states_that_cannot_be_restored_are_reported(tmp_path) -> None:
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    fake = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    state = ck.capture_rng()
    state["cuda"] = [fake] * (here + 2)
    (note,) = restore_rng(state)
    assert f"{here + 2} GPU(s) were saved but {here} GPU(s) are visible" in note
    assert restore_rng(ck.capture_rng()) == []
    # and through a resume
    train(make_model(), TinySource(), cfg(steps=3), tmp_path)
    last = latest_checkpoint(tmp_path)
    rng = json.loads((last / STATE_FILE).read_text())["rng"]
    _edit_state(last, rng={**rng, "cuda": [fake] * (here + 1)})
    train(make_model(), TinySource(), cfg(steps=4), tmp_path, resume=True)
    (ev,) = _events(tmp_path, "not_bit_exact")
    assert "CUDA generator states" in ev["message"]


# --- item 8: collapse relative to the run's start --------------------------------------------------
def test_relative_rank_drop_is_flagged_only_with_a_reference() -> None:
    g = torch.Generator().manual_seed(0)
    start = torch.randn(128, 32, generator=g)
    ref = collapse_stats(start)
    # a partial collapse: 3 directions left, spread and centered rank above the absolute bounds
    partial = torch.randn(128, 3, generator=g) @ torch.randn(3, 32, generator=g)
    absolute = collapse_stats(partial)
    assert not absolute["collapsed"]
    rel = collapse_stats(partial, reference={"rank": ref["rank"], "rank_centered": ref["rank_centered"]})
    assert rel["collapsed"] and rel["rank_ratio"] < REL_RANK_FRACTION
    # a healthy batch keeps its rank; a shared offset lowers RankMe only: neither is flagged
    assert not collapse_stats(torch.randn(128, 32, generator=g), reference=ref)["collapsed"]
    offset = start + 8 * torch.randn(1, 32, generator=g)
    s = collapse_stats(offset, reference=ref)
    assert s["rank_ratio"] < REL_RANK_FRACTION and not s["collapsed"]


class ShrinkingRecipe(TinyRecipe):
    """Reports embeddings that keep their spread but lose all but 3 of ~16 directions from step 5 on."""

    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        out = super().training_step(batch, step)
        rows = batch["x"].shape[0]
        g = torch.Generator().manual_seed(step)
        z = torch.randn(rows, 32, generator=g)
        if step >= 5:
            z = torch.randn(rows, 3, generator=g) @ torch.randn(3, 32, generator=g)
        return {**out, "embeddings": z}


def test_trainer_flags_a_partial_collapse_against_the_runs_start_and_keeps_it_over_resume(tmp_path) -> None:
    c = cfg(steps=4, monitor_every=2, checkpoint_every=2)
    torch.manual_seed(0)
    train(ShrinkingRecipe(TinyConfig()), TinySource(), c, tmp_path)
    assert not any(r.get("monitor/collapsed") for r in read_jsonl(tmp_path / "log.jsonl"))
    ref = json.loads((latest_checkpoint(tmp_path) / STATE_FILE).read_text())["monitor_ref"]
    assert ref["rank"] > 4
    torch.manual_seed(1)
    train(ShrinkingRecipe(TinyConfig()), TinySource(), cfg(steps=8, monitor_every=2, checkpoint_every=2),
          tmp_path, resume=True)
    flagged = [r["step"] for r in read_jsonl(tmp_path / "log.jsonl") if r.get("monitor/collapsed")]
    assert flagged == [6, 8]
    (ev,) = _events(tmp_path, "collapse")
    assert "at step 0" in ev["message"]
    assert run_summary(tmp_path)["collapse_steps"] == [6, 8]


def test_lejepa_without_sigreg_is_flagged_and_with_it_is_not(tmp_path) -> None:
    """The case that slipped through: LeJEPA with SIGReg weight 0 keeps a normal spread but its
    RankMe falls to a quarter of its start within 50 steps (healthy LeJEPA keeps ~0.6)."""
    from jepalab.config import load_experiment
    from jepalab.experiment import run

    flags = {}
    for weight in (0.0, 0.05):
        exp = load_experiment(CONFIGS / "lejepa_digits.yaml", [f"model.sigreg_weight={weight}", "train.steps=50",
                                                             "train.device=cpu", "train.progress=false"])
        run(exp, tmp_path / str(weight))
        log = read_jsonl(tmp_path / str(weight) / "log.jsonl")
        flags[weight] = [r.get("monitor/collapsed") for r in log if "monitor/rank" in r]
    assert flags == {0.0: [True], 0.05: [False]}


# --- item 8: pruning cut short ------------------------------------------------------------------
def test_a_kill_while_pruning_leaves_nothing_that_is_counted_or_resumed(tmp_path, monkeypatch) -> None:
    m = make_model()
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, m, opt, {}, keep_last=3)
    real_rmtree = shutil.rmtree

    def killed_midway(path, *a, **kw):  # delete one file, then the process "dies"
        (sorted(p for p in ck.Path(path).iterdir())[0]).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 4, m, opt, {}, keep_last=3)
    monkeypatch.setattr(ck.shutil, "rmtree", real_rmtree)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002", "step_0000003", "step_0000004"]
    assert not (tmp_path / "checkpoints" / "step_0000001").exists()
    assert remove_stale_temp_dirs(tmp_path) == 1  # the .trash-* leftover
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        LATEST_FILE, "step_0000002", "step_0000003", "step_0000004"]


def test_incomplete_step_folders_are_not_counted_or_resumed(tmp_path) -> None:
    train(make_model(), TinySource(), cfg(steps=3), tmp_path)  # step_1..3
    half = tmp_path / "checkpoints" / "step_0000009"  # e.g. cut short by an older jepalab's pruning
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoints" / LATEST_FILE).unlink()  # the newest directory decides
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    s = run_summary(tmp_path)
    assert s["checkpoints"] == ["step_0000001", "step_0000002", "step_0000003"] and s["steps_done"] == 3
    out = train(make_model(), TinySource(), cfg(steps=4), tmp_path, resume=True)
    assert out["step"] == 4
