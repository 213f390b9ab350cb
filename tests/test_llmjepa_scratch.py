"""The from-scratch study's bookkeeping (benchmarks/llmjepa_scratch.py): the plan, resuming, the
equal-FLOPs scoring step and the table drawn from stored cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import llmjepa_scratch as ls  # noqa: E402


def _chat(user: str, regex: str) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "Convert natural language to regular expression."},
                                    {"role": "user", "content": user}, {"role": "assistant", "content": regex}]})


def test_plan_keys_unique_and_shared_cells_left_out() -> None:
    cells = ls.plan(3, ("synth", "turk"))
    keys = [c.key for c in cells]
    assert len(keys) == len(set(keys))
    assert "sweep/lam1/k1" not in keys and not any(k.startswith("fraction/1/") for k in keys)
    assert len([k for k in keys if k.startswith("sweep/")]) == len(ls.LAMS) * len(ls.KS) - 1
    s0 = {c.key: c for c in cells}["main/synth/plain/s0"]
    assert s0.equal_flops and len(s0.eval_steps) == ls.CURVE_EPOCHS
    assert {c.key: c for c in cells}["main/turk/llm-jepa/s2"].eval_steps == (ls.MAIN_EPOCHS * ls.EPOCH_STEPS,)
    assert keys.index("main/synth/llm-jepa/s2") < keys.index("sweep/lam0.5/k0")  # main table first


def test_run_plan_resumes_and_saves_each_cell() -> None:
    cells = ls.plan(2)
    store = {cells[0].key: {"done": True}}
    trained, saves = [], []
    n = ls.run_plan(cells, store, lambda c: trained.append(c.key) or {"k": c.key}, lambda: saves.append(len(store)))
    assert n == len(cells) - 1 and cells[0].key not in trained
    assert saves == list(range(2, len(cells) + 1)) and store[cells[0].key] == {"done": True}
    assert ls.run_plan(cells, store, lambda c: 1 / 0, lambda: None) == 0


def test_train_cell_scores_plain_at_equal_flops_and_table(tmp_path: Path) -> None:
    rows = [_chat("lines with a vowel", "([AEIOUaeiou])"), _chat("lines with a number", "([0-9])"),
            _chat("lines with dog", ".*dog.*"), _chat("lines ending in a letter", ".*[A-Za-z]")]
    (tmp_path / "synth_train.jsonl").write_text("\n".join(rows * 2) + "\n")
    (tmp_path / "synth_test.jsonl").write_text("\n".join(rows[:2]) + "\n")
    shape = dict(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32)
    kw = dict(root=str(tmp_path), batch=4, n_test=2, epoch_steps=2, shape=shape)
    plain = ls.train_cell(ls.Cell("main/synth/plain/s0", "synth", 0.0, 1, 0, 1.0, (2, 4), True), **kw)
    jepa = ls.train_cell(ls.Cell("main/synth/llm-jepa/s0", "synth", 1.0, 1, 0, 1.0, (2, 4)), **kw)
    at = ls.score_at(plain, tag="equal-flops")
    target = plain["jepa_flops_target"]
    # LLM-JEPA's FLOPs over MAIN_EPOCHS epochs (2 steps each), counted the same way in both runs
    assert abs(ls.score_at(jepa, 2 * ls.MAIN_EPOCHS)["flops"] - target) < 1e-6 * target
    assert at["flops"] >= target and at["step"] > 2 * ls.MAIN_EPOCHS
    steps = [e["step"] for e in plain["evals"]]
    assert steps == sorted(steps) and {2, 4} <= set(steps)
    assert all(0 <= e["exact"] <= e["semantic"] <= 1 and e["test_ce"] > 0 for e in plain["evals"])
    text = "\n".join(ls.table_lines({"main/synth/plain/s0": plain, "main/synth/llm-jepa/s0": jepa}))
    assert "plain, equal FLOPs" in text and "overfitting curve" in text and "sweep" not in text


def test_missing_names_what_is_left() -> None:
    cells = ls.plan(3)
    store = {c.key: {} for c in cells if c.key != "sweep/lam2/k0"}
    assert ls.missing(store) == ["λ × k sweep cells lam2/k0"]
    assert ls.missing({c.key: {} for c in cells}) == []


def test_semantic_check_is_cut_off_by_cpu_time(monkeypatch) -> None:
    assert ls.semantic_guarded("(dog)|([0-9])", "([0-9])|(dog)") is True
    assert ls.semantic_guarded("(dog", "(dog)") is False

    def spin(a: str, b: str) -> bool:
        while True:
            pass

    monkeypatch.setattr(ls, "equivalent", spin)
    assert ls.semantic_guarded("a", "b", cpu_limit_s=0.2) is None
    assert ls.semantic_guarded("a", "a") is True
