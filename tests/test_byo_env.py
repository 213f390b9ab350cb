"""Bring your own environment: a user's env factory (a module written by the test, as a user's
package would be) goes through ``collect``, ``train``, ``plan`` and ``evaluate-planning`` from the
CLI; a bad factory or adapter stops with exit code 2 and one sentence."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from jepalab.cli import main

torch.set_num_threads(1)

USER_MODULE = '''
"""A user's 2-D point mass: a dot that actions push around, with its own jepalab adapter."""
import numpy as np

from jepalab.data.envs import Adapter


class PointMass:
    def __init__(self, size=32, max_steps=30):
        self.size, self.max_steps = size, max_steps
        self.rng = np.random.default_rng(0)
        self.pos, self.vel, self.t = np.full(2, 0.5), np.zeros(2), 0

    def _obs(self):
        return np.concatenate([self.pos, self.vel]).astype(np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.pos, self.vel, self.t = self.rng.uniform(0.2, 0.8, 2), np.zeros(2), 0
        return self._obs(), {}

    def step(self, action):
        self.vel = np.clip(0.7 * self.vel + 0.04 * np.asarray(action, np.float64), -0.08, 0.08)
        self.pos = np.clip(self.pos + self.vel, 0.0, 1.0)
        self.t += 1
        return self._obs(), 0.0, False, self.t >= self.max_steps, {}

    def render(self):
        img = np.zeros((self.size, self.size, 3), np.uint8)
        x, y = (self.pos * (self.size - 4)).astype(int)
        img[y:y + 4, x:x + 4] = 255
        return img[::-1]  # a flipped view, as OpenGL renderers hand out


def make_point(max_steps=30, state="full"):
    env = PointMass(max_steps=max_steps)

    def reset_to(env, s, goal_state):
        env.pos, env.vel = np.array(s[:2], np.float64), np.array(s[2:4] if s.size >= 4 else [0, 0], np.float64)
        return env._obs(), {}

    def goal_success(s, g):
        d = float(np.linalg.norm(s[:2] - g[:2]))
        return d < 0.1, d

    full = state == "full"
    return env, Adapter(pixels=lambda e, o: e.render(), proprio=lambda e, o, i: e.pos.astype(np.float32),
                        state=lambda e, o, i: e._obs() if full else e.pos.astype(np.float32),
                        success=lambda info: False, low=-np.ones(2), high=np.ones(2), max_steps=max_steps,
                        reset_to=reset_to, goal_success=goal_success, criterion="dot within 0.1 of the goal's")


def make_point_no_restore(**kwargs):
    env, adapter = make_point(**kwargs)
    adapter.reset_to = None
    return env, adapter


def not_a_factory():
    return "env"
'''

CONFIG = """\
name: point
seed: 0
recipe: worldmodel
model: {{objective: lewm, encoder: conv, img_size: 32, in_chans: 1, embed_dim: 16, enc_width: 4, enc_dim: 8,
        action_dim: 2, frameskip: 1, history: 3, pred_dim: 32, pred_depth: 1, pred_heads: 2, sigreg_proj: 16}}
data: {{source: trajectories, path: {data}, frames: 4, frameskip: 1, channels: 1}}
train: {{steps: 6, batch_size: 4, lr: 0.001, warmup_steps: 1, log_every: 3, monitor_every: 0, checkpoint_every: 0,
        device: cpu}}
"""

FAST = ["--samples", "8", "--iterations", "2", "--elites", "2", "--horizon", "2", "--goal-offset", "5",
        "--budget", "4", "--seed", "1"]


@pytest.fixture(scope="module")
def user_module(tmp_path_factory: pytest.TempPathFactory):
    """``my_point_env`` on sys.path, as a user's installed package would be."""
    root = tmp_path_factory.mktemp("userpkg")
    (root / "my_point_env.py").write_text(textwrap.dedent(USER_MODULE))
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root))
    yield "my_point_env"
    mp.undo()


@pytest.fixture(scope="module")
def recorded(user_module: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("point") / "data"
    code = main(["collect", f"{user_module}:make_point", "--episodes", "20", "--steps", "25", "--img-size", "32",
                 "--repeat", "3", "--workers", "2", "--out", str(data), "--no-progress"])
    assert code == 0
    return data


@pytest.fixture(scope="module")
def run_dir(recorded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("point_run")
    cfg = root / "point.yaml"
    cfg.write_text(CONFIG.format(data=recorded))
    assert main(["train", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def test_user_env_runs_collect_train_plan_evaluate(user_module: str, recorded: Path, run_dir: Path,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    meta = json.loads((recorded / "meta.json").read_text())
    assert meta["env"] == f"{user_module}:make_point" and meta["env_factory"] == meta["env"]
    assert meta["state_dim"] == 4 and meta["policy_kwargs"] == {"repeat": 3} and meta["episodes"] == 20
    assert main(["plan", str(run_dir), "--data", str(recorded), "--out", str(tmp_path / "plan"), *FAST]) == 0
    summary = json.loads((tmp_path / "plan" / "episode.json").read_text())
    assert summary["env"] == meta["env"] and summary["goal"].startswith("held-out episode")
    assert Path(summary["gif"]).is_file() and summary["final_distance"] is not None
    out = tmp_path / "eval.json"
    assert main(["evaluate-planning", str(run_dir), "--data", str(recorded), "--episodes", "3", "--out", str(out),
                 "--no-progress", *FAST]) == 0
    r = json.loads(out.read_text())
    assert r["episodes"] == 3 and r["criterion"] == "dot within 0.1 of the goal's"
    assert {e["episode"] for e in r["per_episode"]} <= {9, 19} and r["random_success_rate"] is not None
    assert "dot within 0.1" in capsys.readouterr().out


def test_registered_name_is_rebuilt_from_the_recording(user_module: str, run_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import jepalab.data.envs as envs
    from jepalab.data.recording import collect

    monkeypatch.setattr(envs, "_REGISTRY", {})
    envs.register("point2d", importlib.import_module(user_module).make_point)
    data = tmp_path / "reg"
    meta = collect("point2d", data, episodes=10, max_steps=12, img_size=32, progress=False)
    assert meta["env"] == "point2d" and meta["env_factory"] == f"{user_module}:make_point"
    monkeypatch.setattr(envs, "_REGISTRY", {})  # a new process: nobody called register()
    assert main(["evaluate-planning", str(run_dir), "--data", str(data), "--episodes", "1", "--out",
                 str(tmp_path / "r.json"), "--no-progress", "--no-baseline", *FAST]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["env"] == "point2d"


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_adapter_without_reset_to_is_refused_before_planning(user_module: str, run_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "norestore"
    assert main(["collect", f"{user_module}:make_point_no_restore", "--episodes", "10", "--steps", "12",
                 "--img-size", "32", "--out", str(data), "--no-progress"]) == 0
    err = _error(capsys, ["evaluate-planning", str(run_dir), "--data", str(data), "--no-progress", *FAST])
    assert "no reset_to" in err and not (run_dir / "planning_my_point_env_make_point_no_restore.json").exists()


def test_wrong_state_size_is_refused(user_module: str, run_dir: Path, recorded: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, ["plan", str(run_dir), "--data", str(recorded), "--env-arg", "state=pos",
                          "--out", str(tmp_path / "p"), *FAST])
    assert "state of 2 numbers but the recording's states have 4" in err


@pytest.mark.parametrize("env, message", [
    ("my_point_env:make_pont", "Did you mean 'make_point'"),
    ("my_point_env:not_a_factory", "must return (raw_env, Adapter)"),
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
])
def test_bad_factory_references(user_module: str, env: str, message: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, ["collect", env, "--episodes", "1", "--out", str(tmp_path / "d"), "--no-progress"])
    assert message in err
    assert not (tmp_path / "d").exists()  # nothing written by a command that failed at the start


def test_bad_collect_options(user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "--repeat holds" in _error(capsys, ["collect", "bouncing", "--policy", "expert", "--repeat", "3",
                                               "--out", str(tmp_path / "d")])
    assert "--workers 0" in _error(capsys, ["collect", "bouncing", "--workers", "0", "--out", str(tmp_path / "d")])
