"""Measure this machine's fp32 matrix-multiply throughput: the roofline a training step is judged by.

Why: "GFLOP/s achieved" means little without the ceiling. A transformer training step on a CPU is
almost all GEMMs, so the best fp32 GEMM rate of the BLAS torch uses, with the same thread count,
is the practical peak; the fraction of it a step reaches tells how much time goes to everything
that is not a large matmul (softmax, layer norm, gathers, optimizer, Python overhead).

Two figures:
- ``peak``: the best median rate over square GEMMs ``(n, n) @ (n, n)`` of a few sizes.
- ``shaped``: rates at the GEMM shapes a small ViT actually runs (tokens x width x 4*width), the
  ceiling a step of that model could reach even with zero overhead.

Run alone: ``python benchmarks/matmul_peak.py --threads 2``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import torch


@dataclass
class MatmulPeak:
    """Result of :func:`measure_matmul_peak` (rates in GFLOP/s, medians over repeats)."""

    threads: int
    peak_gflops: float
    by_size: dict[int, float] = field(default_factory=dict)
    shaped: dict[str, float] = field(default_factory=dict)


def _gemm_rate(m: int, k: int, n: int, repeats: int, min_time: float, gen: torch.Generator) -> float:
    """Median GFLOP/s of ``(m, k) @ (k, n)`` in fp32; each sample runs long enough to time."""
    a = torch.randn(m, k, generator=gen)
    b = torch.randn(k, n, generator=gen)
    out = torch.empty(m, n)
    flops = 2.0 * m * k * n
    # Warm up and pick an inner loop count that makes one sample last at least min_time.
    torch.mm(a, b, out=out)
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        dt = time.perf_counter() - t0
        rates.append(flops * inner / dt / 1e9)
    return statistics.median(rates)


def measure_matmul_peak(
    threads: int = 2,
    sizes: tuple[int, ...] = (512, 1024, 2048),
    shapes: dict[str, tuple[int, int, int]] | None = None,
    repeats: int = 7,
    min_time: float = 0.05,
    seed: int = 0,
) -> MatmulPeak:
    """Best fp32 GEMM rate on this machine with ``threads`` intra-op threads.

    ``shapes`` maps a label to ``(m, k, n)`` for model-shaped GEMMs (reported, not part of the
    peak). The previous thread count is restored on return.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not sizes:
        raise ValueError("sizes must name at least one square GEMM size, e.g. (512, 1024).")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            by_size = {n: _gemm_rate(n, n, n, repeats, min_time, gen) for n in sizes}
            shaped = {k: _gemm_rate(*mkn, repeats, min_time, gen) for k, mkn in (shapes or {}).items()}
    finally:
        torch.set_num_threads(prev)
    return MatmulPeak(threads=threads, peak_gflops=max(by_size.values()), by_size=by_size, shaped=shaped)


def vit_gemm_shapes(tokens: int, dim: int, mlp_ratio: float = 4.0) -> dict[str, tuple[int, int, int]]:
    """The main GEMM shapes of one ViT block over ``tokens`` rows (batch x sequence) of width ``dim``."""
    hid = int(dim * mlp_ratio)
    return {
        f"qkv {tokens}x{dim}x{3 * dim}": (tokens, dim, 3 * dim),
        f"mlp1 {tokens}x{dim}x{hid}": (tokens, dim, hid),
        f"mlp2 {tokens}x{hid}x{dim}": (tokens, hid, dim),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    args = p.parse_args()
    r = measure_matmul_peak(args.threads, tuple(args.sizes), vit_gemm_shapes(64 * 64, 192))
    print(f"torch {torch.__version__}, {r.threads} threads")
    for n, g in r.by_size.items():
        print(f"  fp32 GEMM {n}^3: {g:8.1f} GFLOP/s")
    for k, g in r.shaped.items():
        print(f"  {k}: {g:8.1f} GFLOP/s")
    print(f"peak: {r.peak_gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
