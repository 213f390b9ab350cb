"""``jepalab demo``: CLI wiring, findings derived from numbers, the report, and a --quick run end to end."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest
import torch

from jepalab.demo import register, run_demo, run_demo_from_args
from jepalab.demo.findings import findings
from jepalab.errors import ConfigError, DataError
from jepalab.report.html import write_report

torch.set_num_threads(1)


def _numbers(obj, path="results"):
    """Yield (path, value) for every number in a nested JSON-able structure."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")


def test_register_adds_the_demo_subcommand():
    parser = argparse.ArgumentParser(prog="jepalab")
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["demo", "--quick", "--variant", "deterministic", "--seed", "3", "--out", "x"])
    assert args.func is run_demo_from_args
    assert (args.quick, args.variant, args.seed, args.out_dir, args.device) == (True, "deterministic", 3, "x", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--variant", "nope"])


def test_bad_arguments_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="variant"):
        run_demo(variant="pixels", out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="size"):
        run_demo(size="huge", out_dir=str(tmp_path))


def _fake_results(jepa_between: float, z_both: float) -> dict:
    model = {"probe_pos_r2": 0.97, "probe_vel_r2": 0.8, "pred_r2": [0.5, 0.2], "pred_r2_y": [0.95, 0.9],
             "collapse": {"rank": 10.0, "std": 0.1, "collapsed": False}}
    return {
        "variant": "stochastic", "models": {"jepa": dict(model), "pixel": dict(model), "jepa_z": dict(model)},
        "params": {"jepa": 100, "pixel": 110, "jepa_z": 101},
        "pixel_blur": {"peak_ratio": 0.5, "spread_ratio": 2.0, "blobs": 2.0, "true_blobs": 1.0, "two_or_more_blobs": 0.8},
        "stochastic": {
            "n": 50, "pixel": {"on_mode": 0.1, "between": 0.9, "off": 0.0},
            "jepa": {"on_mode": 1 - jepa_between, "between": jepa_between, "off": 0.0},
            "jepa_z": {"on_mode": 0.8, "between": 0.2, "off": 0.0},
            "z_coverage": {"modes_covered_mean": 1 + z_both, "both_covered": z_both, "samples_between": 0.2, "samples": 8},
        },
    }


def test_findings_follow_the_numbers_not_a_script():
    averaging = " ".join(findings(_fake_results(jepa_between=0.9, z_both=0.9)))
    committing = " ".join(findings(_fake_results(jepa_between=0.1, z_both=0.1)))
    assert "does NOT remove the averaging" in averaging and "90%" in averaging
    assert "commits to one future" in committing and "does NOT remove" not in committing
    assert "removes the ambiguity" in averaging and "did not reliably cover" in committing
    assert "target >= 0.9: NOT met" in averaging  # pred R^2 0.5


def test_report_refuses_missing_figures(tmp_path):
    with pytest.raises(DataError, match="missing"):
        write_report(tmp_path / "report.html", _fake_results(0.5, 0.5), {"pca": {"file": "pca.png", "caption": "c"}})


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(quick=True, out_dir=str(out), seed=0)
    report = Path(res["report"])
    assert report == out / "report.html" and report.is_file()
    text = report.read_text()
    imgs = re.findall(r"<img src='([^']+)'", text)
    assert len(imgs) >= 4
    for src in imgs:
        assert (out / src).is_file() and (out / src).stat().st_size > 1000, src
    assert "decoded by a separately trained decoder" in text
    saved = json.loads((out / "results.json").read_text())
    nums = list(_numbers(saved))
    assert len(nums) > 30
    bad = [p for p, v in nums if not math.isfinite(v)]
    assert not bad, bad
    for key in ("jepa", "pixel", "jepa_z"):
        assert -1.0 <= saved["models"][key]["probe_pos_r2"] <= 1.0
        assert (out / key / "log.jsonl").is_file()
    st = saved["stochastic"]
    for key in ("jepa", "pixel", "jepa_z"):
        assert abs(sum(st[key].values()) - 1.0) < 1e-6
    assert 0.0 <= st["z_coverage"]["modes_covered_mean"] <= 2.0
    # parameter counts are the trainable ones, measured before anything was frozen
    assert abs(saved["params"]["pixel"] - saved["params"]["jepa"]) / saved["params"]["jepa"] < 0.2
    printed = capsys.readouterr().out
    assert "=== jepalab demo" in printed and "pos R2" in printed  # the terminal summary
