"""What users read: `jepalab recipes` and the report's collapse columns say something true and whole."""

from __future__ import annotations

import pytest

from jepalab.cli import _summary_line, main
from jepalab.report.html import SPREAD_NOTE, model_table


def test_recipes_prints_whole_clean_first_sentences(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and "..." not in out
    ijepa = next(line for line in out.splitlines() if line.startswith("ijepa"))
    assert ijepa.rstrip().endswith("each frame taken as an image).")  # the whole sentence, not cut at 90 chars


def test_summary_line_keeps_abbreviations_and_drops_markup() -> None:
    doc = "Uses :class:`Foo` (e.g. ``x``) from Smith et al. 2020 as the encoder. Then more.\n\nBody."
    assert _summary_line(doc) == "Uses Foo (e.g. x) from Smith et al. 2020 as the encoder."
    assert _summary_line(None) == "(no description)"


def test_report_shows_spread_relative_to_isotropic_and_explains_it() -> None:
    coll = {"rank": 20.0, "std": 0.125, "std_ref": 0.125, "collapsed": False}
    results = {"models": {"jepa": {"probe_pos_r2": 0.9, "probe_vel_r2": 0.5, "pred_r2": [0.8], "collapse": coll},
                          "pixel": {"probe_pos_r2": 0.8, "probe_vel_r2": 0.4, "centroid_r2": [0.7],
                                    "collapse": {**coll, "std": 0.0125}}}}
    table = model_table(results)
    assert "norm. std" not in table and "spread (1 = isotropic)" in table
    assert "<td>1.000</td>" in table and "<td>0.100</td>" in table  # 0.125 / (1/sqrt(64)), 0.0125 / same
    assert "1/\u221aD" in SPREAD_NOTE and "collapse" in SPREAD_NOTE
