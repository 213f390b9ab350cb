"""PNG figures for run reports (matplotlib, headless Agg backend).

Each function takes plain arrays (no models), draws one figure, writes it to ``path`` and returns
the path, so the same figures serve the demo, ``jepalab report`` and users' notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jepalab.errors import DataError, ShapeError


def _plt():
    """matplotlib's pyplot on the Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _as_image(frame: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` in [0, 1] -> something ``imshow`` draws: ``(H, W)`` or ``(H, W, 3)``."""
    f = np.asarray(frame, dtype=np.float32)
    if f.ndim == 3:
        f = f[0] if f.shape[0] == 1 else np.transpose(f, (1, 2, 0))
    if f.ndim not in (2, 3):
        raise ShapeError(f"a frame must be (C, H, W) or (H, W), got shape {f.shape}.")
    return np.clip(f, 0.0, 1.0)


def filmstrip(path: str | Path, rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
              col_titles: Sequence[str] | None = None, title: str | None = None) -> Path:
    """A grid of frames: one labelled row per source (truth, pixel twin, decoded JEPA, z samples).

    ``rows``: ``(label, frames)`` with frames ``(C, H, W)`` arrays; ``None`` leaves a cell empty,
    so predictions line up under the truth frames they predict.
    """
    if not rows:
        raise DataError("filmstrip needs at least one row of frames.")
    plt = _plt()
    ncol = max(len(fr) for _, fr in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.25 * ncol + 1.6, 1.3 * len(rows) + 0.5),
                             squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            f = frames[c] if c < len(frames) else None
            if f is None:  # empty cell: keep the axes (for the row label) but draw nothing
                for spine in ax.spines.values():
                    spine.set_visible(False)
            else:
                ax.imshow(_as_image(f), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def landing_histogram(path: str | Path, landings: Mapping[str, np.ndarray]) -> Path:
    """Where predictions land along the line mode 0 -> mode 1 (0 = mode 0, 0.5 = midway, 1 = mode 1).

    One histogram per model; a model that averages the two futures piles up at 0.5, one that
    commits to futures piles up at 0 and 1.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(landings), figsize=(3.2 * len(landings), 2.6), squeeze=False)
    bins = np.linspace(-0.5, 1.5, 41)
    for ax, (name, u) in zip(axes[0], landings.items()):
        u = np.asarray(u, dtype=np.float64)
        u = u[np.isfinite(u)]
        ax.hist(np.clip(u, -0.5, 1.5), bins=bins, color="#4477aa")
        for x, lab in ((0.0, "mode 0"), (0.5, "midway"), (1.0, "mode 1")):
            ax.axvline(x, color="#cc6677" if lab != "midway" else "#999933", ls="--", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("landing position (0 = mode 0, 1 = mode 1)", fontsize=7)
    axes[0][0].set_ylabel("test samples", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def pca_scatter(path: str | Path, embeddings: Mapping[str, np.ndarray], color: np.ndarray,
                color_label: str = "ball x (pixels)") -> Path:
    """First two principal components of each model's embeddings ``(N, D)``, coloured by ``color (N,)``.

    A smooth colour gradient across the cloud shows the embedding lays out the ball's position.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.2 * len(embeddings), 3.0), squeeze=False)
    sc = None
    for ax, (name, z) in zip(axes[0], embeddings.items()):
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != len(color):
            raise ShapeError(f"pca_scatter: embeddings of '{name}' must be (N={len(color)}, D), got {z.shape}.")
        zc = z - z.mean(0)
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        p = zc @ vt[:2].T
        sc = ax.scatter(p[:, 0], p[:, 1], c=color, s=4, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label=color_label, shrink=0.8)
    return _save(fig, path)


def training_curves(path: str | Path, logs: Mapping[str, Sequence[Mapping[str, float]]],
                    keys: Sequence[str], titles: Sequence[str] | None = None) -> Path:
    """One panel per key (e.g. loss, effective rank), one line per run, against the step."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 2.7), squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[0][i]
        for name, rows in logs.items():
            pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r
                   and isinstance(r[key], (int, float)) and np.isfinite(r[key])]
            if pts:
                s, v = zip(*pts)
                ax.plot(s, v, label=name, lw=1.2)
        ax.set_title(titles[i] if titles else key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        if key.endswith("loss"):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


__all__ = ["filmstrip", "landing_histogram", "pca_scatter", "training_curves"]
