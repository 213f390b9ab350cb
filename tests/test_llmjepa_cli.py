"""`jepalab train` / `generate` / `eval` on an llmjepa run built from a tiny NL-RX folder."""

from __future__ import annotations

import json
from pathlib import Path

from jepalab.cli import main


def _chat(user: str, regex: str) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "Convert natural language to regular expression."},
                                    {"role": "user", "content": user}, {"role": "assistant", "content": regex}]})


def test_train_generate_eval(tmp_path: Path, capsys) -> None:
    data = tmp_path / "nl-rx"
    data.mkdir()
    rows = [_chat("lines with a vowel", "([AEIOUaeiou])"), _chat("lines with a number", "([0-9])")]
    (data / "synth_train.jsonl").write_text("\n".join(rows * 4) + "\n")
    (data / "synth_test.jsonl").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    sets = ["model.dim=32", "model.n_layers=2", "model.n_heads=4", "model.ffn_dim=64", "train.steps=120",
            "train.batch_size=4", "train.warmup_steps=5", "train.lr=0.003", "train.checkpoint_every=0",
            "train.progress=false", f"data.root={data}"]
    args = ["train", "configs/llmjepa_scratch.yaml", "--run-dir", str(run)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["generate", str(run), "lines with a vowel"]) == 0
    assert capsys.readouterr().out.strip() == "([AEIOUaeiou])"
    assert main(["eval", str(run), "--json"]) == 0
    res = json.loads((run / "eval_nlrx.json").read_text())
    assert res["n"] == 2 and res["exact"] == 1.0 and res["semantic"] == 1.0


def test_malformed_data_line_exits_2(tmp_path: Path, capsys) -> None:
    data = tmp_path / "nl-rx"
    data.mkdir()
    (data / "synth_train.jsonl").write_text(_chat("a", "b") + "\n{not json\n")
    rc = main(["train", "configs/llmjepa_scratch.yaml", "--run-dir", str(tmp_path / "r"), "--set", f"data.root={data}"])
    assert rc == 2
    assert "synth_train.jsonl, line 2" in capsys.readouterr().err
    assert not (tmp_path / "r" / "experiment.yaml").exists()
