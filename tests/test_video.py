"""VideoFolder: frame folders, .npy/.npz arrays and GIFs load with the right frame order and
values; clips are deterministic in (seed, step), split across DDP ranks exactly, strided, split
by video; corrupt or too-short files are named; codecs without imageio say what to install."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jepalab.data import build_source
from jepalab.data.video import VideoConfig, VideoFolder, find_videos, read_video
from jepalab.errors import ConfigError, DataError, MissingDependencyError

torch.set_num_threads(1)
SIZE = 8


def ramp(t: int, c: int = 3, base: int = 0) -> np.ndarray:
    """Video whose frame i is filled with ``base + 10 * i`` (uint8, (T, H, W, C))."""
    v = (base + 10 * np.arange(t, dtype=np.uint8))[:, None, None, None]
    return np.broadcast_to(v, (t, SIZE, SIZE, c)).copy()


def write_frames(folder: Path, video: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(video, start=1):  # frame_1 .. frame_12: natural order != string order
        Image.fromarray(f).save(folder / f"frame_{i}.png")


@pytest.fixture
def video_root(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    write_frames(root / "cats" / "clip_a", ramp(12))
    np.save(root / "cats" / "b.npy", ramp(10, base=100))
    (root / "dogs").mkdir()
    np.savez(root / "dogs" / "c.npz", frames=ramp(9, c=1, base=50))
    np.save(root / "dogs" / "d.npy", ramp(14, base=5)[..., 0])  # (T, H, W) gray
    frames = [Image.fromarray(f) for f in ramp(6, base=20)]
    frames[0].save(root / "e.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return root


def levels(v: torch.Tensor) -> list[int]:
    """Per-frame value of a constant-frame video (T, C, H, W) uint8."""
    return [int(f.float().mean().round()) for f in v]


def test_reads_each_format_in_order(video_root: Path) -> None:
    entries = find_videos(video_root)
    names = [e.name for e in entries]
    assert names == ["b.npy", "clip_a", "c.npz", "d.npy", "e.gif"]
    clip_a = read_video(video_root / "cats" / "clip_a", SIZE, 3)
    assert clip_a.shape == (12, 3, SIZE, SIZE) and clip_a.dtype == torch.uint8
    assert levels(clip_a) == [10 * i for i in range(12)]  # frame_10 after frame_9, not after frame_1
    assert levels(read_video(video_root / "cats" / "b.npy", SIZE, 3)) == [100 + 10 * i for i in range(10)]
    npz = read_video(video_root / "dogs" / "c.npz", SIZE, 3)  # gray -> RGB
    assert npz.shape == (9, 3, SIZE, SIZE) and levels(npz) == [50 + 10 * i for i in range(9)]
    gray = read_video(video_root / "dogs" / "d.npy", SIZE, 1)
    assert gray.shape == (14, 1, SIZE, SIZE) and levels(gray) == [5 + 10 * i for i in range(14)]
    gif = read_video(video_root / "e.gif", 4, 3)  # resized
    assert gif.shape == (6, 3, 4, 4) and levels(gif) == [20 + 10 * i for i in range(6)]


def test_source_batches_are_strided_clips_with_labels(video_root: Path) -> None:
    src = VideoFolder(VideoConfig(root=str(video_root), frames=3, stride=2, img_size=SIZE, test_fraction=0.2))
    assert len(src) == 4 and set(src.class_names) <= {"", "cats", "dogs"}
    for f, lab in zip(src.files, src.labels):  # label = first-level sub-folder ("" for root)
        top = f.relative_to(video_root).parts
        assert src.class_names[int(lab)] == (top[0] if len(top) > 1 else "")
    b = src.batch(0, 16)
    assert b["frames"].shape == (16, 3, 3, SIZE, SIZE)
    assert b["frames"].min() >= 0 and b["frames"].max() <= 1
    for clip, v, s, lab in zip(b["frames"], b["video"], b["start"], b["labels"]):
        vid = src.videos[int(v)]
        assert 0 <= s <= vid.shape[0] - 5
        torch.testing.assert_close(clip, vid[[int(s), int(s) + 2, int(s) + 4]].float() / 255)
        assert lab == src.labels[v]
    # every video appears once per epoch of len(src) clips
    assert sorted(src.batch(0, 4)["video"].tolist()) == [0, 1, 2, 3]


def test_deterministic_and_rank_slices(video_root: Path) -> None:
    cfg = VideoConfig(root=str(video_root), frames=4, img_size=SIZE, seed=3)
    a, b = VideoFolder(cfg), VideoFolder(cfg)
    for step in (0, 5):
        full = a.batch(step, 8)
        torch.testing.assert_close(full["frames"], b.batch(step, 8)["frames"])
        parts = [a.batch(step, 8, rank=r, world_size=2) for r in range(2)]
        torch.testing.assert_close(torch.cat([p["frames"] for p in parts]), full["frames"])
        assert torch.equal(torch.cat([p["start"] for p in parts]), full["start"])
    assert not torch.equal(a.batch(0, 8)["start"], a.batch(1, 8)["start"])
    other = VideoFolder(VideoConfig(root=str(video_root), frames=4, img_size=SIZE, seed=4))
    assert not torch.equal(other.batch(0, 8)["start"], a.batch(0, 8)["start"])
    with pytest.raises(DataError, match="divisible|evenly"):
        a.batch(0, 7, rank=0, world_size=2)


def test_train_test_split_by_video(video_root: Path) -> None:
    kw = dict(root=str(video_root), frames=2, img_size=SIZE, test_fraction=0.4)
    tr = VideoFolder(VideoConfig(split="train", **kw))
    te = VideoFolder(VideoConfig(split="test", **kw))
    assert len(tr) + len(te) == 5 and not set(tr.files) & set(te.files)


def test_registered_and_buildable_from_dict(video_root: Path) -> None:
    src = build_source("video", {"root": str(video_root), "frames": 2, "img_size": SIZE})
    assert isinstance(src, VideoFolder) and src.batch(0, 2)["frames"].shape == (2, 2, 3, SIZE, SIZE)
    with pytest.raises(ConfigError):
        VideoFolder(VideoConfig(root=str(video_root), frames=0))


def both_splits(root: Path) -> None:
    """Build train and test splits (each reads only its own videos)."""
    for split in ("train", "test"):
        VideoFolder(VideoConfig(root=str(root), frames=2, img_size=SIZE, split=split))


def test_corrupt_and_short_files_are_named(tmp_path: Path, video_root: Path) -> None:
    bad = video_root / "dogs" / "broken.npy"
    bad.write_bytes(b"this is not numpy")
    with pytest.raises(DataError, match="broken.npy"):
        both_splits(video_root)
    bad.unlink()
    (video_root / "cats" / "clip_a" / "frame_5.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="frame_5.png"):
        both_splits(video_root)
    short = tmp_path / "short"
    short.mkdir()
    np.save(short / "tiny.npy", ramp(3))
    np.save(short / "ok.npy", ramp(10))
    with pytest.raises(DataError, match="tiny.npy"):
        VideoFolder(VideoConfig(root=str(short), frames=4, img_size=SIZE))
    np.save(short / "tiny.npy", np.zeros((3, SIZE, SIZE, 3), dtype=np.int64))
    with pytest.raises(DataError, match="dtype"):
        read_video(short / "tiny.npy", SIZE, 3)
    with pytest.raises(DataError, match="not a directory"):
        VideoFolder(VideoConfig(root=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No videos"):
        VideoFolder(VideoConfig(root=str(empty)))


def test_mp4_without_imageio_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jepalab.data.video as video

    real = video.importlib.util.find_spec
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name, *a: None if name == "imageio" else real(name, *a))
    (tmp_path / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(MissingDependencyError, match="pip install imageio"):
        read_video(tmp_path / "a.mp4", SIZE, 3)


def test_a_recipe_trains_on_a_video_folder(video_root: Path, tmp_path: Path) -> None:
    from jepalab.config import experiment_from_dict
    from jepalab.experiment import run

    exp = experiment_from_dict({
        "name": "vid", "seed": 0, "recipe": "vjepa",
        "model": {"img_size": 16, "in_chans": 3, "num_frames": 4, "tubelet": 2, "patch_size": 4, "embed_dim": 16,
                  "depth": 1, "heads": 2, "pred_dim": 8, "pred_depth": 1, "pred_heads": 2},
        "data": {"source": "video", "root": str(video_root), "frames": 4, "img_size": 16},
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "monitor_every": 0,
                  "checkpoint_every": 0, "device": "cpu", "progress": False},
    })
    out = run(exp, tmp_path / "run")
    assert torch.isfinite(torch.tensor(float(out["loss"])))
    assert (tmp_path / "run" / "model.safetensors").is_file()
