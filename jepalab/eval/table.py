"""The text table ``jepalab eval`` prints from an :func:`jepalab.eval.evaluate.evaluate_run` result.

Why apart from the evaluation: the numbers live in ``eval.json``; this only lays them out for a
reader (scores per model, gains over the random-init twin, rows per class, warnings).
"""

from __future__ import annotations

from typing import Any


def _signed(g: float) -> str:
    """``+0.123``; a gain that rounds to zero prints as ``0.000`` rather than ``-0.000``."""
    text = f"{g:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def format_table(result: dict[str, Any]) -> str:
    """A small text table of an :func:`evaluate_run` result (what ``jepalab eval`` prints)."""
    names = list(result["models"])
    head = (f"{result['recipe']} on {result['source']}: {result['n_train']} train / {result['n_test']} held-out "
            f"('{result['split']}'), metric {result['metric']}, chance {result['chance']:.3g}")
    cols = ["probe", *names] + (["gain"] if "gain" in result else [])
    rows = []
    for p in result["probes"]:
        row = [p]
        for n in names:
            s = result["models"][n]["scores"].get(p)
            row.append(f"{s:.3f}" if isinstance(s, (int, float)) else "skipped")
        if "gain" in result:
            g = result["gain"].get(p)
            row.append(_signed(g) if isinstance(g, (int, float)) else "-")
        rows.append(row)
    rows.append(["eff. rank", *[f"{result['models'][n]['rank']:.2f}" for n in names]]
                + ([f"{result['gain']['rank']:+.2f}"] if "gain" in result else []))
    rows.append(["collapsed", *["YES" if result["models"][n]["collapse"]["collapsed"] else "no" for n in names]]
                + (["-"] if "gain" in result else []))
    widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    col_names = result.get("state_names") or [f"col{c}" for c in result.get("state_columns", [])]
    for n in names if result["task"] == "regression" else ():
        for p, d in result["models"][n]["details"].items():
            if "r2_per_target" in d:
                per = ", ".join(f"{c} {v:.2f}" for c, v in zip(col_names, d["r2_per_target"]))
                lines.append(f"R^2 per state column ({p}, {n}): {per}")
    for n in names:
        for p, why in result["models"][n].get("skipped", {}).items():
            lines.append(f"({n}: {p} skipped: {why})")
    cc = result.get("class_counts")
    if cc:
        per = ", ".join(f"{c}: {a}/{b}" for c, (a, b) in enumerate(zip(cc["train"], cc["test"])) if a or b)
        lines.append(f"images per class (probe train / held-out): {per}")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


__all__ = ["format_table"]
