"""`jepalab plan` / `jepalab evaluate-planning`: files written, clear errors with exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jepalab.cli import main
from jepalab.data.recording import collect
from jepalab.recipes.worldmodel import WorldModel, WorldModelConfig

ENV_KW = dict(num_balls=1, radius=5.0, speed=[0.5, 3.0], action_scale=3.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved (untrained: the commands' plumbing is under test here) tiny bouncing world model."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(encoder="conv", img_size=32, in_chans=1, embed_dim=16, enc_width=4, enc_dim=8,
                                        pred_dim=32, pred_depth=1, pred_heads=2, sigreg_proj=16))
    d = tmp_path_factory.mktemp("wm_run")
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bouncing_data")
    collect("bouncing", d, episodes=10, policy="random", img_size=32, max_steps=30, env_kwargs=ENV_KW,
            policy_kwargs={"repeat": 5}, progress=False)
    return d


FAST = ["--samples", "8", "--iterations", "2", "--elites", "2", "--horizon", "2"]


def test_plan_writes_filmstrip_gif_and_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    out = tmp_path / "plans"
    code = main(["plan", str(run_dir), "--env", "bouncing", "--budget", "6", "--out", str(out), *FAST,
                 *[a for k, v in ENV_KW.items() for a in ("--env-arg", f"{k}={v}")]])
    assert code == 0
    summary = json.loads((out / "episode.json").read_text())
    strip = Image.open(summary["filmstrip"])
    assert strip.width > 3 * strip.height  # frames side by side, plus the goal
    gif = Image.open(summary["gif"])
    assert gif.n_frames == summary["steps"] + 1  # the first frame and one per step
    assert 1 <= summary["steps"] <= 6 and summary["plans"] == summary["steps"]
    assert "bouncing" in capsys.readouterr().out


def test_plan_with_recorded_goal(run_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    code = main(["plan", str(run_dir), "--env", "bouncing", "--data", str(data_dir), "--budget", "4",
                 "--goal-offset", "10", "--out", str(tmp_path), *FAST])
    assert code == 0
    summary = json.loads((tmp_path / "episode.json").read_text())
    assert summary["goal"].startswith("held-out episode 9")  # the only held-out episode of 10
    assert Path(summary["gif"]).is_file()


def test_evaluate_planning_cli_writes_json(run_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code = main(["evaluate-planning", str(run_dir), "--env", "bouncing", "--data", str(data_dir), "--episodes", "2",
                 "--budget", "3", "--goal-offset", "10", "--out", str(out), "--no-progress", *FAST])
    assert code == 0
    r = json.loads(out.read_text())
    assert r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0 and r["random_success_rate"] is not None
    assert r["flops_per_plan"] > 0 and r["s_per_plan"] > 0
    assert all(e["episode"] == 9 for e in r["per_episode"])  # held-out episodes only


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unknown_env_is_a_clear_error(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, ["plan", str(run_dir), "--env", "bouncng", "--out", str(tmp_path)])
    assert "Unknown environment 'bouncng'" in err and "bouncing" in err


def test_env_not_installed_is_a_clear_error(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # importing it now fails as if not installed
    err = _error(capsys, ["plan", str(run_dir), "--env", "pusht", "--out", str(tmp_path)])
    assert "pip install gym-pusht" in err


def test_wrong_action_dimension_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(encoder="conv", img_size=32, in_chans=1, embed_dim=16, enc_width=4, enc_dim=8,
                                        pred_dim=32, pred_depth=1, pred_heads=2, sigreg_proj=16, action_dim=3))
    model.save_pretrained(tmp_path / "run3")
    err = _error(capsys, ["plan", str(tmp_path / "run3"), "--env", "bouncing", "--out", str(tmp_path)])
    assert "2-dim actions" in err and "3-dim" in err


def test_not_a_world_model_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, ["evaluate-planning", str(tmp_path), "--env", "bouncing", "--data", str(tmp_path)])
    assert "not a saved jepalab model" in err


def test_media_rejects_bad_frames() -> None:
    from jepalab.errors import ShapeError
    from jepalab.planning.episode_media import filmstrip

    with pytest.raises(ShapeError):
        filmstrip([])
    with pytest.raises(ShapeError):
        filmstrip([np.zeros((4, 4))])
