"""A self-contained HTML report: findings first, then numbers, then pictures.

Why HTML and not a notebook: it opens anywhere, needs no server, and the PNGs sit next to it.
Everything the page says comes from ``results`` (the measured numbers) and the figure captions.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

from jepalab.atomic import write_text_atomic
from jepalab.errors import DataError

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em} table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} figure{margin:1.2em 0}
figcaption{color:#555;font-size:.9em;max-width:900px} img{max-width:100%;border:1px solid #eee}
ul.findings li{margin:.4em 0} .bad{color:#a33} .good{color:#272}
"""

MODEL_NAMES = {"jepa": "JEPA", "pixel": "pixel twin", "jepa_z": "JEPA + z"}


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return "n/a" if not math.isfinite(x) else f"{x:.3f}"
    if isinstance(x, (list, tuple)):
        return " / ".join(_fmt(v) for v in x)
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c) if not isinstance(c, str) else html.escape(c)}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _spread(collapse: dict[str, Any]) -> float:
    """Std of the L2-normalised embeddings relative to isotropic directions (``std * sqrt(D)``).

    Why relative: the raw std of unit vectors is about ``1/sqrt(D)`` for *any* well-spread encoder
    (0.125 at D = 64), so as a bare number it reads the same for every model; divided by that
    reference it says what it measures: 1 = as spread as random directions, 0 = one direction."""
    ref = collapse.get("std_ref")
    return float(collapse["std"]) / float(ref) if ref else float("nan")


#: printed under the model table: what the columns that are not self-explanatory mean.
SPREAD_NOTE = ("Spread: std of the L2-normalised held-out embeddings divided by 1/\u221aD, its value for "
               "random directions; about 1 for a healthy encoder, below 0.1 counts as collapse (as does a "
               "centred effective rank below 2).")


def model_table(results: dict[str, Any]) -> str:
    """Per-model numbers: parameters, probe R^2s, predicted-embedding R^2 per step, collapse."""
    m = results["models"]
    rows = []
    for k, name in MODEL_NAMES.items():
        if k not in m:
            continue
        d = m[k]
        pred = d.get("pred_r2", d.get("centroid_r2", []))
        rows.append([name, results.get("params", {}).get(k, float("nan")), d["probe_pos_r2"], d["probe_vel_r2"],
                     pred, d.get("pred_r2_robust", "-"), d["collapse"]["rank"], _spread(d["collapse"]),
                     bool(d["collapse"]["collapsed"])])
    return _table(["model", "trainable params", "position probe R\u00b2", "velocity probe R\u00b2 (2 frames)",
                   "prediction R\u00b2 at +1, +2, ... steps*", "same, probe ridge 1e-3", "effective rank",
                   "spread (1 = isotropic)", "collapsed"], rows)


def _blur_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for key, label in (("pixel_blur", "pixel twin prediction"),
                       ("decoded_jepa_blur", "JEPA prediction, decoded by a separately trained decoder"),
                       ("decoder_fidelity_blur", "that decoder on true JEPA embeddings (reference)")):
        if key in results:
            b = results[key]
            rows.append([label, b["peak_ratio"], b["spread_ratio"], b["blobs"], b["two_or_more_blobs"]])
    return rows


def write_report(path: str | os.PathLike, results: dict[str, Any], figures: dict[str, dict[str, str]],
                 title: str = "jepalab demo: do embeddings avoid the blur of an uncertain future?") -> Path:
    """Write ``report.html`` next to its PNGs (atomically); every ``<img>`` must exist there."""
    p = Path(path)
    for key, fig in figures.items():
        if not (p.parent / fig["file"]).is_file():
            raise DataError(f"figure '{key}' ({fig['file']}) is missing next to {p}; write figures before the report.")
    if "models" not in results:
        raise DataError("results has no 'models' entry: pass the dict returned by the demo's measurements.")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    meta = ", ".join(f"{k}: {results[k]}" for k in ("variant", "size", "device", "seed") if k in results)
    if "total_seconds" in results:
        meta += f", {results['total_seconds']:.0f} s in total"
    parts.append(f"<p class='meta'>{html.escape(meta)}. Measured on held-out clips (split=test).</p>")
    if results.get("findings"):
        parts.append("<h2>What was measured, and what it says about the claims</h2><ul class='findings'>")
        parts += [f"<li>{html.escape(s)}</li>" for s in results["findings"]]
        parts.append("</ul>")
    for key in [k for k in figures if k.startswith("film")][:1]:
        parts.append(_figure(figures[key]))
    parts.append("<h2>Numbers</h2>" + model_table(results))
    parts.append("<p class='meta'>* JEPAs: position probe fit on true embeddings, applied to predicted ones; "
                 "pixel twin: R\u00b2 of its predicted frame's intensity centroid. " + html.escape(SPREAD_NOTE) + "</p>")
    rows = _blur_rows(results)
    if rows:
        parts.append("<h3>Blur of one-step predictions against the true frame</h3>" + _table(
            ["prediction", "peak / true peak", "spread / true spread", "blobs (mean)", "frames with \u2265 2 blobs"], rows))
    st = results.get("stochastic")
    if st:
        rows = [[MODEL_NAMES[k], st[k]["on_mode"], st[k]["between"], st[k]["off"]] for k in ("pixel", "jepa", "jepa_z")]
        parts.append(f"<h3>Where one-step predictions land ({st['n']} clips with well-separated futures)</h3>"
                     + _table(["model", "on a possible future", "between the futures", "elsewhere"], rows))
        c = st["z_coverage"]
        parts.append(_table(["z samples per clip", "clips with both futures reached", "mean futures reached (of 2)",
                             "samples between"], [[c["samples"], c["both_covered"], c["modes_covered_mean"],
                                                   c["samples_between"]]]))
    parts.append("<h2>Pictures</h2>")
    parts += [_figure(f) for k, f in figures.items() if not k.startswith("film0")]
    parts.append("</body></html>")
    return write_text_atomic(p, "\n".join(parts))


def _figure(fig: dict[str, str]) -> str:
    return (f"<figure><img src='{html.escape(fig['file'])}' alt='{html.escape(fig['caption'][:80])}'>"
            f"<figcaption>{html.escape(fig['caption'])}</figcaption></figure>")


__all__ = ["write_report", "model_table"]
