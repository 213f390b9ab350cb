"""The demo's figures: which arrays go into which ``jepalab.report.figures`` plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jepalab.report import figures


def make_figures(out: Path, arrays: dict[str, Any], logs: dict[str, list[dict[str, Any]]],
                 results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Write the PNGs into ``out`` and return ``{key: {"file": name, "caption": text}}``."""
    k = int(results.get("context_frames", 3))
    figs: dict[str, dict[str, str]] = {}
    for n, film in enumerate(arrays["film"]):
        ncol = max(len(r) for _, r in film["rows"])
        cols = [f"context t{t}" if t < k else f"+{t - k + 1} step" for t in range(ncol)]
        name = f"filmstrip_{n}.png"
        figures.filmstrip(out / name, film["rows"], cols, title=f"test clip {film['clip']}")
        figs[f"film{n}"] = {"file": name, "caption": (
            f"Test clip {film['clip']}: {k} context frames, then predictions fed back step by step. "
            "Rows marked * are decoded by a separately trained decoder (trained on frozen JEPA "
            "embeddings of true frames; the JEPA itself never predicts pixels).")}
    if "landing" in arrays:
        figures.landing_histogram(out / "landing.png", arrays["landing"])
        figs["landing"] = {"file": "landing.png", "caption": (
            "Where one-step predictions land on the line between the two possible next positions "
            "(0: no kick, 1: kick). JEPA positions are read by the linear position probe; the pixel "
            "twin's by the intensity centroid of its predicted frame.")}
    figures.pca_scatter(out / "pca.png", arrays["pca"], arrays["pca_color"])
    figs["pca"] = {"file": "pca.png", "caption": (
        "First two principal components of each encoder's embeddings of held-out frames, "
        "coloured by the true horizontal ball position.")}
    figures.training_curves(out / "curves.png", logs, ["loss", "monitor/rank", "monitor/std"],
                            ["training loss", "effective rank (RankMe)", "std of normalized embeddings (1/\u221aD if spread)"])
    figs["curves"] = {"file": "curves.png", "caption": (
        "Training curves from each run's log.jsonl; the rank and std panels are the collapse "
        "monitors. The std of L2-normalised embeddings sits at about 1/\u221aD (0.125 for D = 64) for any "
        "encoder whose embeddings point in varied directions, so a flat line there means no collapse; a "
        "collapsing encoder drops toward rank ~1 and std ~0.")}
    return figs


__all__ = ["make_figures"]
