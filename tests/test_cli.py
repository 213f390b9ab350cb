"""The ``jepalab`` command line: help texts, a tiny end-to-end train/info/resume, and errors that
are one readable line (exit code 2) instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepalab.cli import main, run_summary
from jepalab.errors import ConfigError

torch.set_num_threads(1)

TINY = """\
name: tiny
seed: 3
recipe: future
model: {img_size: 32, embed_dim: 16, enc_width: 8, enc_dim: 16, pred_hidden: 32}
data: {source: bouncing, img_size: 32}
train:
  steps: 4
  batch_size: 4
  warmup_steps: 1
  log_every: 1
  monitor_every: 2
  checkpoint_every: 2
  device: cpu
  progress: false
"""


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m jepalab ARGS`` in a fresh process, like a user would."""
    full_env = {k: v for k, v in os.environ.items() if k != "JEPALAB_DEBUG"}
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "jepalab", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=300)


def test_help_lists_commands_and_examples() -> None:
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    for word in ("train", "resume", "info", "recipes", "demo", "examples:", "--set"):
        assert word in r.stdout
    r = cli("train", "--help")
    assert r.returncode == 0 and "--run-dir" in r.stdout and "--device" in r.stdout and "KEY=VALUE" in r.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 1
    assert "usage: jepalab" in capsys.readouterr().out


def test_recipes_lists_every_registered_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    from jepalab.recipes import RECIPES

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(RECIPES)
    future = next(ln for ln in lines if ln.startswith("future"))
    assert "unavailable" not in future and len(future.split()) > 2


def test_train_info_resume_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run_dir = tmp_path / "run"
    r = cli("train", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert (run_dir / "experiment.yaml").is_file() and (run_dir / "log.jsonl").is_file()

    r = cli("info", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "recipe:      future" in r.stdout and "data:        bouncing" in r.stdout
    assert "steps:       4 / 4" in r.stdout
    assert "step_0000004" in r.stdout and "loss=" in r.stdout and "no collapse flagged" in r.stdout

    # Training into a directory that already holds a run must not clobber it.
    r = cli("train", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 2 and "jepalab resume" in r.stderr and "Traceback" not in r.stderr

    # Resume extends the run; the stored config records the new plan.
    r = cli("resume", str(run_dir), "--set", "train.steps=6")
    assert r.returncode == 0, r.stderr
    s = run_summary(run_dir)
    assert (s["steps_done"], s["steps_planned"]) == (6, 6)
    assert s["checkpoints"][-1] == "step_0000006"
    steps = [json.loads(ln)["step"] for ln in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # resumed from step 4, not from scratch


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.replace("batch_size: 4", "batch_sise: 4"))
    r = cli("train", str(cfg), "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert "train.batch_sise" in r.stderr and "train.batch_size" in r.stderr and "bad.yaml:" in r.stderr
    assert not (tmp_path / "r").exists()  # nothing was written


def test_bad_override_and_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    assert main(["train", str(cfg), "--set", "train.steps"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_debug_env_shows_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JEPALAB_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["train", str(tmp_path / "missing.yaml")])


def test_info_on_non_run_dir_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a jepalab run directory" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["resume", str(tmp_path)]) == 2
    assert "experiment.yaml" in capsys.readouterr().err


def test_info_reports_collapse_and_torn_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-written run dir: collapse flags are surfaced, a line cut by a crash is skipped."""
    (tmp_path / "experiment.yaml").write_text("name: x\nrecipe: vicreg\ndata: {source: digits}\ntrain: {steps: 30}\n")
    lines = [
        {"step": 10, "loss": 1.0, "monitor/rank": 20.0, "monitor/collapsed": False},
        {"step": 20, "loss": 0.5, "monitor/rank": 1.2, "monitor/collapsed": True},
        {"step": 25, "loss": "nan"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"step": 30, "lo'
    (tmp_path / "log.jsonl").write_text(text)
    s = run_summary(tmp_path)
    assert s["recipe"] == "vicreg" and s["source"] == "digits"
    assert (s["steps_done"], s["steps_planned"]) == (25, 30)
    assert s["collapse_steps"] == [20] and s["bad_log_lines"] == 1
    assert s["last_metrics"]["loss"] == "nan" and s["last_metrics"]["monitor/rank"] == 1.2
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FLAGGED" in out and "first at step 20" in out and "1 unreadable" in out and "25 / 30" in out


def test_demo_is_registered_or_replaced_by_a_clear_stand_in(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "jepalab.demo", None)  # simulate a missing/broken module
    assert main(["demo"]) == 2
    assert "demo is unavailable" in capsys.readouterr().err
