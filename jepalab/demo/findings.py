"""Sentences derived from the measured numbers, never written in advance.

Every sentence is built from ``results`` with explicit thresholds (stated in the sentence), so a
different run can reach the opposite conclusion and the report will say so.
"""

from __future__ import annotations

from typing import Any

POS_TARGET, PRED_TARGET = 0.95, 0.9
BLUR_PEAK = 0.75        # predicted peak below 75% of the true one counts as dimmed / blurred
SPLIT_FRAC = 0.3        # two or more blobs in 30% of frames counts as ghosting
NAMES = {"jepa": "JEPA", "pixel": "pixel twin", "jepa_z": "JEPA + z"}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _met(x: float, target: float) -> str:
    return f"target >= {target}: {'met' if x >= target else 'NOT met'}"


def findings(r: dict[str, Any]) -> list[str]:
    """Plain-language findings, each carrying the numbers it rests on."""
    m, out = r["models"], []
    if r.get("size") == "quick":
        out.append("This is a --quick run: the models trained for a few dozen steps only, so the numbers below are "
                   "a smoke test of the pipeline, not evidence about the claims (run `jepalab demo` for that).")
    for key in ("jepa", "jepa_z", "pixel"):
        out.append(f"{NAMES[key]} encoder: a linear probe reads the ball position from one frame's embedding "
                   f"with R^2 = {m[key]['probe_pos_r2']:.3f} ({_met(m[key]['probe_pos_r2'], POS_TARGET)}), and the "
                   f"velocity from two consecutive embeddings with R^2 = {m[key]['probe_vel_r2']:.3f}.")
    p1 = m["jepa"]["pred_r2"][0]
    sto = r.get("variant") == "stochastic"
    s = (f"JEPA predictions: the same position probe (fit on true embeddings) applied to *predicted* embeddings "
         f"gives R^2 = {p1:.3f} one step ahead ({_met(p1, PRED_TARGET)}) and "
         f"{m['jepa']['pred_r2'][-1]:.3f} after {len(m['jepa']['pred_r2'])} steps.")
    if "pred_r2_robust" in m["jepa"]:
        rb = m["jepa"]["pred_r2_robust"][0]
        s += (f" With a fixed ridge of 1e-3 instead of the GCV choice (which can lean on directions a predictor "
              f"does not reproduce) it is {rb:.3f} one step ahead ({_met(rb, PRED_TARGET)}).")
    if sto:
        s += (f" In this stochastic world the horizontal future is a coin flip, so R^2 against the realized future "
              f"is capped; for the vertical coordinate alone (no kicks) it is {m['jepa']['pred_r2_y'][0]:.3f}.")
    out.append(s)
    pr = r["params"]
    gap = abs(pr["pixel"] - pr["jepa"]) / pr["jepa"]
    out.append(f"Model sizes: JEPA {pr['jepa']:,}, pixel twin {pr['pixel']:,} trainable parameters "
               f"({_pct(gap)} apart; same encoder and predictor, the twin adds a decoder).")
    pb = r["pixel_blur"]
    blurred = pb["peak_ratio"] < BLUR_PEAK or pb["two_or_more_blobs"] >= SPLIT_FRAC
    verdict = ("its predicted frames are mostly empty: the ball fades out." if pb.get("dark_frames", 0.0) > 0.5
               else "its predictions are visibly dimmed, blurred or split." if blurred
               else "no marked blur by these thresholds (peak < 75% or >= 2 blobs in 30% of frames).")
    out.append(f"Pixel twin, one step ahead: predicted peak intensity is {_pct(pb['peak_ratio'])} of the true frame's, "
               f"spread x{pb['spread_ratio']:.2f}, two or more blobs in {_pct(pb['two_or_more_blobs'])} of frames: "
               + verdict)
    if sto:
        st = r["stochastic"]
        j, px, z, cov = st["jepa"], st["pixel"], st["jepa_z"], st["z_coverage"]
        out.append(f"Claim 'predicting pixels of an uncertain future averages the futures': on {st['n']} test clips "
                   f"whose two futures are at least a ball diameter apart, the pixel twin's centroid lands between the "
                   f"futures in {_pct(px['between'])} and on one of them in {_pct(px['on_mode'])}: "
                   + ("supported." if px["between"] > px["on_mode"] else "not supported by this run."))
        verdict = ("it averages the two futures as well, so predicting embeddings alone does NOT remove the "
                   "averaging (as the small public experiment found)." if j["between"] > j["on_mode"]
                   else "it commits to one future more often than it averages.")
        out.append(f"Claim 'predicting embeddings keeps what matters instead of averaging': the deterministic JEPA's "
                   f"probed prediction lands between the futures in {_pct(j['between'])} and on one of them in "
                   f"{_pct(j['on_mode'])}: {verdict}")
        covered = cov["both_covered"] >= 0.5
        out.append(f"With a latent z ({cov['samples']} samples per clip), {_pct(z['on_mode'])} of samples land on a "
                   f"future and {_pct(z['between'])} between; both futures are reached in {_pct(cov['both_covered'])} "
                   f"of clips (mean {cov['modes_covered_mean']:.2f} of 2 modes"
                   + (f"; {_pct(cov['both_covered_along'])} counting only the position along the line between the "
                      "futures" if "both_covered_along" in cov else "")
                   + (f"; the probe places the true next frames of both futures on them in "
                      f"{_pct(cov['both_covered_true_futures'])}, the most a perfect predictor could score"
                      if "both_covered_true_futures" in cov else "") + "): "
                   + ("a latent variable, not the embedding space, is what removes the ambiguity here." if covered
                      else "z did not reliably cover both futures in this run."))
        sep = st.get("z_separation")
        if sep:
            out.append(f"Can a latent separate the futures at all? In the z model's embedding space the two possible "
                       f"next frames are {sep['separation']:.2f} apart, {sep['ratio']:.1f}x its best-sample prediction "
                       f"error ({sep['noise']:.2f}): " + (
                           "the encoder keeps the futures apart, so the limit is the predictor, not the embedding."
                           if sep["ratio"] > 2 else "the futures are barely further apart than the prediction error, "
                           "so no latent could reliably tell them apart in this embedding."))
    collapsed = [NAMES[k] for k in m if m[k]["collapse"].get("collapsed")]
    out.append("Collapse monitor: " + (f"flagged {', '.join(collapsed)}." if collapsed else
               "no model collapsed (effective ranks " + ", ".join(
                   f"{NAMES[k]} {m[k]['collapse']['rank']:.1f}" for k in m) + ")."))
    return out


def summary_text(r: dict[str, Any]) -> str:
    """The terminal summary: a small table and the findings."""
    m = r["models"]
    lines = [f"\n=== jepalab demo: {r['variant']} world, size {r['size']}, {r['device']}, "
             f"{r['total_seconds']:.0f} s ===",
             f"{'model':<12}{'params':>9}{'pos R2':>9}{'vel R2':>9}{'pred R2 +1':>12}"]
    for k in ("jepa", "pixel", "jepa_z"):
        pred = m[k].get("pred_r2", m[k].get("centroid_r2", [float("nan")]))[0]
        lines.append(f"{NAMES[k]:<12}{r['params'][k]:>9,}{m[k]['probe_pos_r2']:>9.3f}{m[k]['probe_vel_r2']:>9.3f}"
                     f"{pred:>12.3f}")
    lines.append("(pixel twin 'pred R2' = R^2 of its predicted frame's centroid)")
    lines += ["", *[f"- {s}" for s in r["findings"]]]
    return "\n".join(lines)


__all__ = ["findings", "summary_text"]
