"""``evaluate_run`` and ``jepalab eval``: a tiny real run on digits (classification) and on the
bouncing world (state regression) is probed, eval.json is written with finite numbers and a
random-init baseline that really is the run's initial model, and bad run dirs fail cleanly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepalab.cli import main
from jepalab.config import load_experiment
from jepalab.errors import CheckpointError, DataError
from jepalab.eval.evaluate import EVAL_FILE, evaluate_run, knn_regress, load_run, random_twin
from jepalab.experiment import build, run

torch.set_num_threads(1)

DIGITS = """\
name: eval-digits
seed: 7
recipe: lejepa
model: {img_size: 16, in_chans: 1, encoder: conv, embed_dim: 32, width: 8, patch_size: 4, num_views: 2,
        proj_hidden: 0, proj_dim: 16, sigreg_proj: 32}
data: {source: digits, img_size: 16, channels: 1}
train: {steps: 6, batch_size: 64, lr: 0.002, warmup_steps: 1, log_every: 2, monitor_every: 0,
        checkpoint_every: 0, device: cpu, progress: false}
"""

BOUNCING = """\
name: eval-bouncing
seed: 3
recipe: future
model: {img_size: 32, embed_dim: 16, enc_width: 8, enc_dim: 16, pred_hidden: 32}
data: {source: bouncing, img_size: 32}
train: {steps: 3, batch_size: 4, warmup_steps: 1, log_every: 1, monitor_every: 0, checkpoint_every: 0,
        device: cpu, progress: false}
"""

SMALL = dict(max_train=300, max_test=150, attentive_epochs=4)


def _train(tmp: Path, text: str) -> Path:
    cfg = tmp / "exp.yaml"
    cfg.write_text(text)
    run_dir = tmp / "run"
    run(load_experiment(cfg), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("digits"), DIGITS)


def _numbers(obj: object) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []


def test_evaluate_run_writes_eval_json_with_baseline(digits_run: Path) -> None:
    res = evaluate_run(digits_run, **SMALL)
    on_disk = json.loads((digits_run / EVAL_FILE).read_text())
    assert on_disk == res
    assert res["task"] == "classification" and res["metric"] == "accuracy"
    assert res["n_train"] == 300 and res["n_test"] == 150 and res["num_classes"] == 10
    assert set(res["models"]) == {"trained", "random"}
    for name in ("trained", "random"):
        m = res["models"][name]
        assert set(m["scores"]) == {"linear", "knn", "attentive"}
        assert all(0.0 <= s <= 1.0 for s in m["scores"].values())
        assert m["rank"] >= 1.0 and isinstance(m["collapse"]["collapsed"], bool)
        # digits are easy: every probe must be far above chance (~0.1), trained or not
        assert min(m["scores"].values()) > res["chance"] + 0.3, m["scores"]
    assert set(res["gain"]) == {"linear", "knn", "attentive", "rank"}
    assert res["gain"]["linear"] == pytest.approx(
        res["models"]["trained"]["scores"]["linear"] - res["models"]["random"]["scores"]["linear"])
    nums = _numbers(res)
    assert nums and all(math.isfinite(x) for x in nums)
    # trained and random features differ, so their ranks do
    assert res["models"]["trained"]["rank"] != res["models"]["random"]["rank"]


def test_random_baseline_is_the_runs_initial_model(digits_run: Path) -> None:
    model, exp = load_run(digits_run)
    twin = random_twin(model, exp.seed)
    init, _ = build(exp)
    for k, v in init.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[k], v, msg=f"{k} differs from the run's initial weights")
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in init.state_dict().items())


def test_evaluate_run_regression_on_bouncing_state(tmp_path: Path) -> None:
    rd = _train(tmp_path, BOUNCING)
    res = evaluate_run(rd, probes=("linear", "knn", "attentive"), **SMALL)
    assert res["task"] == "regression" and res["metric"] == "r2"
    assert res["state_columns"] == [0, 1, 2, 3] and res["state_names"] == ["x0", "y0", "vx0", "vy0"]
    assert len(res["models"]["trained"]["details"]["linear"]["r2_per_target"]) == 4
    for m in res["models"].values():
        assert set(m["scores"]) == {"linear", "knn"}
        assert "token outputs" in m["skipped"]["attentive"]  # the frame encoder pools: said, not crashed
        assert all(math.isfinite(s) and s <= 1.0 for s in m["scores"].values())
    assert (rd / EVAL_FILE).is_file()
    pos = evaluate_run(rd, probes=("linear",), state_columns=[0, 1], baseline=None, write=False, **SMALL)
    assert pos["state_names"] == ["x0", "y0"] and list(pos["models"]) == ["trained"]
    # one frame shows where the ball is, not where it goes: positions are easier than the full state
    assert pos["models"]["trained"]["scores"]["linear"] > res["models"]["trained"]["scores"]["linear"]
    with pytest.raises(DataError, match="state_columns"):
        evaluate_run(rd, probes=("linear",), state_columns=[9], write=False, **SMALL)


def test_knn_regress_recovers_a_smooth_function() -> None:
    g = torch.Generator().manual_seed(0)
    ang = 2 * math.pi * torch.rand(600, generator=g)
    x = torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    y = torch.stack([torch.sin(2 * ang), torch.cos(3 * ang)], 1)
    assert knn_regress(x[:500], y[:500], x[500:], y[500:], k=5) > 0.9
    shuffled = y[torch.randperm(500, generator=g)]
    assert knn_regress(x[:500], shuffled, x[500:], y[500:], k=5) < 0.2


def test_errors_are_actionable(tmp_path: Path, digits_run: Path) -> None:
    with pytest.raises(CheckpointError, match="not a jepalab run directory"):
        evaluate_run(tmp_path)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "experiment.yaml").write_text((digits_run / "experiment.yaml").read_text())
    with pytest.raises(CheckpointError, match="no finished model"):
        evaluate_run(unfinished)
    with pytest.raises(DataError, match="unknown probe"):
        evaluate_run(digits_run, probes=("linear", "svm"))
    with pytest.raises(DataError, match="trained on split"):
        evaluate_run(digits_run, split="train")
    with pytest.raises(DataError, match="baseline"):
        evaluate_run(digits_run, baseline="imagenet")


def test_cli_eval_table_json_and_errors(digits_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["eval", str(digits_run), "--probes", "linear,knn", "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "knn" in out and "eff. rank" in out and "attentive" not in out
    assert f"wrote {digits_run / EVAL_FILE}" in out
    assert main(["eval", str(digits_run), "--probes", "linear", "knn", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["probes"] == ["linear", "knn"] and "random" in res["models"] and "gain" in res
    with pytest.raises(DataError, match="class labels"):
        evaluate_run(digits_run, probes=("linear",), state_columns=[0], write=False, **SMALL)
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a jepalab run directory" in capsys.readouterr().err


def test_cli_eval_error_has_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JEPALAB_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([sys.executable, "-m", "jepalab", "eval", str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "Traceback" not in r.stderr
