"""Trajectory recording (``collect``), the on-disk format, resume, and ``TrajectorySource``.

Everything runs on the built-in bouncing env, so no optional package is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from jepalab.cli import main as cli_main
from jepalab.data import build_source
from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.data.envs import make_env
from jepalab.data.policies import make_policy
from jepalab.data.recording import collect, record_episode
from jepalab.data.trajectories import (KEYS, TrajectoryConfig, TrajectorySource, episode_path, episode_seed,
                                       list_episodes, load_episode, read_meta)
from jepalab.errors import ConfigError, DataError

torch.set_num_threads(1)
STEPS = 12


def _collect(root: Path, episodes: int = 4, **kw) -> dict:
    return collect("bouncing", root, episodes=episodes, policy=kw.pop("policy", "random"), img_size=16,
                   max_steps=kw.pop("max_steps", STEPS), seed=kw.pop("seed", 1), progress=False, **kw)


def _same_dataset(a: Path, b: Path) -> None:
    assert list_episodes(a) == list_episodes(b)
    for i in list_episodes(a):
        ea, eb = load_episode(a, i), load_episode(b, i)
        for k in KEYS:
            assert np.array_equal(ea[k], eb[k]), (i, k)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("traj") / "bouncing"
    _collect(root, episodes=6)
    return root


# ------------------------------------------------------------------ format and round trip
def test_collect_then_load_round_trip_is_exact(dataset: Path) -> None:
    meta = read_meta(dataset)
    assert meta["episodes"] == 6 and meta["env"] == "bouncing" and meta["img_size"] == 16
    assert (meta["action_dim"], meta["proprio_dim"], meta["state_dim"], meta["channels"]) == (2, 2, 4, 3)
    assert list_episodes(dataset) == list(range(6))
    # re-record episode 3 in memory with the same seeds: the file holds exactly these arrays
    env = make_env("bouncing", img_size=16, seed=1)
    ep = record_episode(env, make_policy("random", "bouncing"), episode_seed(1, 3), STEPS)
    got = load_episode(dataset, 3)
    for k in KEYS:
        assert got[k].dtype == ep[k].dtype and np.array_equal(got[k], ep[k]), k
    assert got["frames"].shape == (STEPS + 1, 16, 16, 3) and got["frames"].dtype == np.uint8
    assert got["actions"].shape == (STEPS, 2) and np.abs(got["actions"]).max() <= 1
    assert got["rewards"].shape == got["success"].shape == (STEPS,)


def test_recorded_action_t_moves_state_t_to_t_plus_1(dataset: Path) -> None:
    ep = load_episode(dataset, 0)
    world = BouncingBalls(BouncingConfig(variant="actions", channels=3))
    states = torch.from_numpy(ep["state"])
    pred = world.rollout(states[:-1], torch.from_numpy(ep["actions"])[:, None])[:, 1]
    assert torch.allclose(pred, states[1:], atol=1e-4)
    # and the frames show the recorded positions: the rendered ball is brightest near state[:2]
    frame = torch.from_numpy(ep["frames"][5]).float().sum(-1)
    iy, ix = np.unravel_index(int(frame.argmax()), frame.shape)
    assert abs((ix + 0.5) * 4 - ep["state"][5, 0]) < 8 and abs((iy + 0.5) * 4 - ep["state"][5, 1]) < 8


def test_changed_settings_refuse_to_mix_into_a_dataset(dataset: Path) -> None:
    with pytest.raises(ConfigError, match="other settings.*policy"):
        _collect(dataset, episodes=6, policy="expert")


def test_damaged_or_missing_files_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="jepalab collect"):
        read_meta(tmp_path)
    _collect(tmp_path, episodes=1, max_steps=3)
    data = episode_path(tmp_path, 0).read_bytes()
    episode_path(tmp_path, 0).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged"):
        load_episode(tmp_path, 0)
    with pytest.raises(DataError, match="does not exist"):
        load_episode(tmp_path, 7)


# ------------------------------------------------------------------ atomic writes and resume
def test_failure_mid_write_leaves_no_partial_episode_and_resume_completes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = np.savez_compressed

    def failing(f, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # third episode: write half a file, then die
            f.write(b"PK\x03\x04 partial")
            raise OSError("disk full")
        real(f, **arrays)

    monkeypatch.setattr(np, "savez_compressed", failing)
    with pytest.raises(OSError, match="disk full"):
        _collect(tmp_path / "a", episodes=5)
    root = tmp_path / "a"
    assert list_episodes(root) == [0, 1] and read_meta(root)["episodes"] == 2
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(np, "savez_compressed", real)
    _collect(root, episodes=5)
    _collect(tmp_path / "b", episodes=5)
    _same_dataset(root, tmp_path / "b")  # the resumed dataset equals an uninterrupted one


def test_killed_collect_resumes_to_the_same_dataset(tmp_path: Path) -> None:
    root = tmp_path / "killed"
    args = ["collect", "bouncing", "--out", str(root), "--episodes", "40", "--steps", str(STEPS),
            "--img-size", "16", "--seed", "1", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "jepalab", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if root.is_dir() and len(list(root.glob("episode_*.npz"))) >= 2:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "collect finished before it could be killed"
    before = list_episodes(root)
    assert 2 <= len(before) < 40
    for i in before:  # whatever exists is complete
        load_episode(root, i)
    (root / ".episode_000039.npz.stale.tmp").write_bytes(b"half")  # as a kill during a write leaves
    assert cli_main(args) == 0
    assert list_episodes(root) == list(range(40)) and read_meta(root)["episodes"] == 40
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    full = tmp_path / "full"
    _collect(full, episodes=40)
    _same_dataset(root, full)


def test_collect_extends_a_dataset(tmp_path: Path) -> None:
    _collect(tmp_path, episodes=2, max_steps=3)
    mtime = episode_path(tmp_path, 0).stat().st_mtime_ns
    meta = _collect(tmp_path, episodes=3, max_steps=3)
    assert meta["episodes"] == 3 and episode_path(tmp_path, 0).stat().st_mtime_ns == mtime


def test_cli_collect_reports_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["collect", "bouncng", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'bouncing'" in capsys.readouterr().err
    assert cli_main(["collect", "bouncing", "--env-arg", "oops", "--out", str(tmp_path / "y")]) == 2
    assert cli_main(["collect", "bouncing", "--episodes", "1", "--steps", "2", "--no-progress",
                     "--env-arg", "num_balls=2", "--out", str(tmp_path / "z")]) == 0
    assert read_meta(tmp_path / "z")["state_dim"] == 8 and read_meta(tmp_path / "z")["env_kwargs"] == {"num_balls": 2}


# ------------------------------------------------------------------ TrajectorySource
def _source(root: Path, **kw) -> TrajectorySource:
    return TrajectorySource(TrajectoryConfig(path=str(root), **{"frames": 4, "test_every": 3, **kw}))


def test_source_batches_are_deterministic_and_match_the_files(dataset: Path) -> None:
    src = _source(dataset)
    b1, b2 = src.batch(5, 8), _source(dataset).batch(5, 8)
    for k in ("frames", "actions", "proprio", "state"):
        assert torch.equal(b1[k], b2[k]), k
    assert not torch.equal(src.batch(6, 8)["frames"], b1["frames"])
    assert b1["frames"].shape == (8, 4, 3, 16, 16) and b1["frames"].dtype == torch.float32
    assert b1["actions"].shape == (8, 3, 2) and b1["proprio"].shape == (8, 4, 2) and b1["state"].shape == (8, 4, 4)
    eps, starts = src.locate(5, 8)
    for row, (e, s) in enumerate(zip(eps.tolist(), starts.tolist())):
        ep = load_episode(dataset, e)
        assert torch.equal(b1["frames"][row], torch.from_numpy(ep["frames"][s:s + 4]).permute(0, 3, 1, 2) / 255.0)
        assert torch.equal(b1["actions"][row], torch.from_numpy(ep["actions"][s:s + 3]))
        assert torch.equal(b1["state"][row], torch.from_numpy(ep["state"][s:s + 4]))


def test_source_rank_slices_equal_the_global_batch(dataset: Path) -> None:
    src = _source(dataset)
    full = src.batch(3, 6)
    parts = [src.batch(3, 6, rank=r, world_size=3) for r in range(3)]
    for k in full:
        assert torch.equal(torch.cat([p[k] for p in parts]), full[k]), k
    with pytest.raises(DataError, match="divisible"):
        src.batch(0, 5, rank=0, world_size=2)


def test_source_splits_by_episode(dataset: Path) -> None:
    train, test = _source(dataset), _source(dataset, split="test")
    assert train.episodes == [0, 1, 3, 4] and test.episodes == [2, 5]
    seen_train = set(train.locate(0, 256)[0].tolist())
    seen_test = set(test.locate(0, 256)[0].tolist())
    assert seen_train == {0, 1, 3, 4} and seen_test == {2, 5}
    assert _source(dataset, test_every=0).episodes == list(range(6))
    with pytest.raises(DataError, match="no test episodes"):
        _source(dataset, split="test", test_every=0)


def test_source_frameskip_concatenates_action_blocks(dataset: Path) -> None:
    src = _source(dataset, frames=3, frameskip=2)
    b = src.batch(0, 4)
    assert b["frames"].shape == (4, 3, 3, 16, 16) and b["actions"].shape == (4, 2, 4)
    eps, starts = src.locate(0, 4)
    e, s = int(eps[0]), int(starts[0])
    ep = load_episode(dataset, e)
    assert torch.equal(b["state"][0], torch.from_numpy(ep["state"][s:s + 5:2]))
    assert torch.equal(b["actions"][0], torch.from_numpy(ep["actions"][s:s + 4].reshape(2, 4)))
    # every start is valid: the last clip frame stays inside its episode
    eps, starts = src.locate(1, 512)
    assert int(starts.max()) <= STEPS - 4 and int(starts.min()) == 0


def test_source_resizes_converts_and_reads_lazily(dataset: Path) -> None:
    b = _source(dataset, img_size=8, channels=1).batch(2, 4)
    assert b["frames"].shape == (4, 4, 1, 8, 8) and 0 <= float(b["frames"].min()) <= float(b["frames"].max()) <= 1
    lazy, cached = _source(dataset, cache=False).batch(2, 4), _source(dataset).batch(2, 4)
    assert all(torch.equal(lazy[k], cached[k]) for k in cached)


def test_source_via_registry_and_config_errors(dataset: Path, tmp_path: Path) -> None:
    src = build_source("trajectories", {"path": str(dataset), "frames": 2, "test_every": 0})
    assert src.batch(0, 2)["frames"].shape == (2, 2, 3, 16, 16)
    with pytest.raises(ConfigError, match="data.path"):
        TrajectorySource(TrajectoryConfig())
    with pytest.raises(ConfigError, match="split"):
        _source(dataset, split="val")
    with pytest.raises(DataError, match="no meta.json"):
        _source(tmp_path)
    with pytest.raises(DataError, match="longer episodes"):
        _source(dataset, frames=20)


# ------------------------------------------------------------------ stable-worldmodel folder datasets
def _write_swm_folder(root: Path, lengths: list[int]) -> dict[str, np.ndarray]:
    """A dataset in stable-worldmodel's folder layout (as its FolderWriter documents it)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    total = sum(lengths)
    cols = {"action": rng.uniform(0, 512, (total, 2)), "proprio": rng.normal(size=(total, 2)).astype(np.float32),
            "state": rng.normal(size=(total, 5)).astype(np.float32)}
    offsets = np.cumsum([0] + lengths[:-1])
    for ep, (n, off) in enumerate(zip(lengths, offsets)):
        cols["action"][off + n - 1] = np.nan  # the reset placeholder rotated to the end
    (root / "pixels").mkdir(parents=True)
    np.savez(root / "ep_len.npz", np.asarray(lengths, np.int32))
    np.savez(root / "ep_offset.npz", offsets.astype(np.int64))
    for k, v in cols.items():
        np.savez(root / f"{k}.npz", v)
    for ep, n in enumerate(lengths):
        for j in range(n):
            img = np.zeros((24, 24, 3), np.uint8)
            img[:, : 2 * j + 2] = 200  # a bar that grows with the step
            Image.fromarray(img).save(root / "pixels" / f"ep_{ep}_step_{j}.jpeg", quality=95)
    return cols


def test_import_stable_worldmodel_folder(tmp_path: Path) -> None:
    from jepalab.data.swm_folder import import_swm_folder

    cols = _write_swm_folder(tmp_path / "swm", [5, 7])
    meta = import_swm_folder(tmp_path / "swm", tmp_path / "out", img_size=12, action_low=0, action_high=512,
                             progress=False)
    assert meta["episodes"] == 2 and meta["action_dim"] == 2 and meta["state_dim"] == 5
    ep = load_episode(tmp_path / "out", 1)
    assert ep["frames"].shape == (7, 12, 12, 3) and ep["actions"].shape == (6, 2)
    np.testing.assert_allclose(ep["actions"], cols["action"][5:11] / 256 - 1, atol=1e-6)
    assert np.array_equal(ep["state"], cols["state"][5:12])
    bright = (ep["frames"][:, 0, :, 0] > 100).sum(1)  # step j's bar covers (2j+2)/24 of the width
    assert np.all(np.diff(bright) >= 0) and bright[-1] > bright[0]
    src = TrajectorySource(TrajectoryConfig(path=str(tmp_path / "out"), frames=3, test_every=0))
    assert src.batch(0, 4)["actions"].shape == (4, 2, 2)
    with pytest.raises(DataError, match=r"exceed \[-1, 1\]"):
        import_swm_folder(tmp_path / "swm", tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match="not a stable-worldmodel folder"):
        import_swm_folder(tmp_path / "out", tmp_path / "x", progress=False)


def test_episode_sampling_weighs_short_episodes_like_long_ones(tmp_path: Path) -> None:
    from jepalab.data.trajectories import TrajectoryConfig, TrajectorySource, save_episode, write_meta

    from jepalab.data.trajectories import FORMAT, VERSION

    write_meta(tmp_path, {"format": FORMAT, "version": VERSION, "env": "bouncing", "img_size": 8})
    for i, t in enumerate((6, 100)):  # a short episode (2 clips of 5 frames) and a long one (96 clips)
        save_episode(tmp_path, i, {"frames": np.zeros((t, 8, 8, 1), np.uint8), "actions": np.zeros((t - 1, 2)),
                                   "proprio": np.zeros((t, 1)), "state": np.arange(t, dtype=np.float32)[:, None],
                                   "rewards": np.zeros(t - 1), "success": np.zeros(t - 1, bool)})
    share = {}
    for sample in ("clips", "episodes"):
        src = TrajectorySource(TrajectoryConfig(path=str(tmp_path), frames=5, test_every=0, sample=sample))
        eps, starts = zip(*(src.locate(step, 64) for step in range(30)))
        eps, starts = torch.cat(eps), torch.cat(starts)
        assert bool((starts[eps == 0] <= 1).all()) and bool((starts[eps == 1] <= 95).all())
        share[sample] = float((eps == 0).float().mean())
        assert src.batch(0, 4)["frames"].shape == (4, 5, 1, 8, 8)
    assert share["clips"] < 0.06 and 0.4 < share["episodes"] < 0.6
    with pytest.raises(ConfigError, match="sample"):
        TrajectoryConfig(path=str(tmp_path), sample="uniform").validate()
