"""NL-RX (natural language -> regular expression) as a text source for the LLM-JEPA recipe.

Each line of ``{synth,turk}_{train,test}.jsonl`` is a chat: a system line, the request (``user``)
and the target regex (``assistant``). The two *views* LLM-JEPA ties together are the request and
the regex, so an example is kept as that pair of strings.

Why the batches carry UTF-8 bytes and not token ids: the same data feeds a from-scratch LM with a
tiny tokenizer and SmolLM2 with its 49k BPE vocabulary. The recipe owns its tokenizer and turns the
bytes back into strings, so the source stays model-agnostic and ``batch(step, ...)`` stays a pure
function of ``(seed, step)`` over tensors, as the trainer expects.

The data folder is a config field; the default, ``../shared/data/nl-rx``, is looked up beside the
repository (and beside the current directory), so a checkout next to ``shared/`` finds it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from jepalab.data.source import order_seed, rank_rows
from jepalab.errors import ConfigError, DataError

SUBSETS = ("synth", "turk")
DEFAULT_ROOT = "../shared/data/nl-rx"
#: bytes kept per field; NL-RX requests are under 200 characters, regexes under 100
MAX_BYTES = 256


@dataclass(frozen=True)
class Example:
    """One NL-RX pair: the request (text view) and the regex (code view)."""

    request: str
    regex: str


def resolve_root(root: str) -> Path:
    """The NL-RX folder: ``root`` as given if it exists, else (for a relative path) relative to the
    repository checkout, so ``jepalab train`` works from any directory inside or beside it."""
    p = Path(root).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, Path(__file__).resolve().parents[2] / p]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"NL-RX folder '{root}' not found (looked at {tried}); set data.root to the folder "
                    "that holds synth_train.jsonl etc.")


def read_jsonl(path: str | Path) -> list[Example]:
    """Parse a chat-format jsonl file; a malformed line is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"NL-RX file {path} does not exist; check data.root and data.subset.")
    out: list[Example] = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                msgs = json.loads(raw.decode("utf-8"))["messages"]
                by_role = {m["role"]: m["content"] for m in msgs}
                request, regex = by_role["user"], by_role["assistant"]
                if not isinstance(request, str) or not isinstance(regex, str):
                    raise TypeError("contents must be strings")
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}, line {lineno}: not a chat example with 'user' and 'assistant' "
                                f"messages ({type(e).__name__}: {e}); fix or remove that line.") from None
            for what, s in (("request", request), ("regex", regex)):
                if len(s.encode("utf-8")) > MAX_BYTES:
                    raise DataError(f"{path}, line {lineno}: the {what} is longer than {MAX_BYTES} bytes.")
            out.append(Example(request, regex))
    if not out:
        raise DataError(f"NL-RX file {path} holds no examples.")
    return out


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> tuple[Example, ...]:
    return tuple(read_jsonl(path))


def load_split(root: str, subset: str, split: str) -> list[Example]:
    """All examples of ``{subset}_{split}.jsonl`` under ``root`` (cached per file version)."""
    if subset not in SUBSETS:
        raise ConfigError(f"data.subset={subset!r}: choose one of {SUBSETS}.")
    if split not in ("train", "test"):
        raise ConfigError(f"data.split={split!r}: choose 'train' or 'test'.")
    path = resolve_root(root) / f"{subset}_{split}.jsonl"
    if not path.is_file():
        raise DataError(f"NL-RX file {path} does not exist; check data.root and data.subset.")
    return list(_cached(str(path), path.stat().st_mtime))


def encode_bytes(texts: list[str]) -> tuple[Tensor, Tensor]:
    """``(uint8 (N, MAX_BYTES), lengths (N,))``: strings as zero-padded UTF-8 rows."""
    buf = torch.zeros(len(texts), MAX_BYTES, dtype=torch.uint8)
    lens = torch.zeros(len(texts), dtype=torch.long)
    for i, t in enumerate(texts):
        b = t.encode("utf-8")[:MAX_BYTES]
        buf[i, : len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8) if b else buf[i, :0]
        lens[i] = len(b)
    return buf, lens


def decode_bytes(buf: Tensor, lens: Tensor) -> list[str]:
    """Inverse of :func:`encode_bytes`."""
    rows = buf.to("cpu", torch.uint8)
    return [bytes(rows[i, : int(n)].tolist()).decode("utf-8", errors="replace") for i, n in enumerate(lens.tolist())]


@dataclass
class NLRXConfig:
    """Which NL-RX file to read and how much of it (``fraction``: the data-efficiency study)."""

    root: str = DEFAULT_ROOT
    subset: str = "synth"            # synth | turk
    split: str = "train"
    fraction: float = 1.0            # keep the first ceil(fraction * N) examples of a fixed shuffle
    seed: int = 0

    def validate(self) -> None:
        if self.subset not in SUBSETS:
            raise ConfigError(f"data.subset={self.subset!r}: choose one of {SUBSETS}.")
        if self.split not in ("train", "test"):
            raise ConfigError(f"data.split={self.split!r}: choose 'train' or 'test'.")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"data.fraction={self.fraction}: use a value in (0, 1], e.g. 0.125 for 1/8.")


def subsample(examples: list[Example], fraction: float) -> list[Example]:
    """The first ``ceil(fraction * N)`` examples of a shuffle fixed by the data alone (seed 0), so
    every training seed and method sees the same subset and smaller subsets nest in larger ones."""
    if fraction >= 1.0:
        return list(examples)
    perm = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    keep = max(1, math.ceil(fraction * len(examples)))
    return [examples[i] for i in sorted(perm[:keep])]


class NLRXSource:
    """Batches of ``{"request", "request_len", "regex", "regex_len"}`` (UTF-8 bytes, see module doc).

    Global positions ``step*B ... step*B+B-1`` walk an endless stream of epochs, each a fresh
    permutation seeded by ``(seed, split, epoch)``; rank ``r`` takes its rows of that global batch.
    """

    config_class = NLRXConfig

    def __init__(self, cfg: NLRXConfig | None = None, examples: list[Example] | None = None) -> None:
        self.cfg = cfg or NLRXConfig()
        self.cfg.validate()
        base = examples if examples is not None else load_split(self.cfg.root, self.cfg.subset, self.cfg.split)
        self.examples = subsample(base, self.cfg.fraction)
        self.request, self.request_len = encode_bytes([e.request for e in self.examples])
        self.regex, self.regex_len = encode_bytes([e.regex for e in self.examples])
        self._perm: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def _order(self, epoch: int) -> Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(order_seed(self.cfg.seed, self.cfg.split, epoch))
            self._perm = (epoch, torch.randperm(len(self), generator=g))
        return self._perm[1]

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, Tensor]:
        lo, hi = rank_rows(step, batch_size, rank, world_size)
        n = len(self)
        idx = []
        for pos in range(step * batch_size + lo, step * batch_size + hi):
            idx.append(int(self._order(pos // n)[pos % n]))
        ix = torch.tensor(idx, dtype=torch.long)
        # trim the padding to this batch's longest row: less to move and to decode
        w_req = max(1, int(self.request_len[ix].max()))
        w_rx = max(1, int(self.regex_len[ix].max()))
        return {"request": self.request[ix, :w_req], "request_len": self.request_len[ix],
                "regex": self.regex[ix, :w_rx], "regex_len": self.regex_len[ix]}


__all__ = ["Example", "NLRXConfig", "NLRXSource", "read_jsonl", "load_split", "resolve_root",
           "encode_bytes", "decode_bytes", "subsample", "SUBSETS"]
