"""The documents describe the product, not the story of its making, and name only things that exist.

A user reads README.md, benchmarks/*.md and docs/*.md to learn what jepalab does, how to run it and
what it measured with which command. Notes on how the work went (which session, which helper, a
figure from a driver that was thrown away, "Added (as built)" changelog labels, dates, commit
hashes) do not help them and go stale silently, as do paths to modules that have since moved. The
markers below are phrases that only such notes use; the path checks catch a renamed file the
moment it is renamed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "benchmarks").glob("*.md"), *(ROOT / "docs").glob("*.md")])

#: (pattern, why a user-facing document has no use for it). Case-insensitive.
NARRATION = [
    (r"\bthis session\b", "who did the work, not what the product does"),
    (r"\ba helper\b|\bthe lead\b|\bother engineers?\b", "who ran what is not a property of the product"),
    (r"\bnot kept\b|\bad-hoc (?:driver|figures?|script)", "a figure needs a command the reader can run"),
    (r"\bAdded(?: \([^)]*\)| in [^:\n]*)?:", "a changelog label: describe the interface as it is"),
    (r"\b(?:19|20)\d\d-\d\d-\d\d\b", "a date: the document says what holds now"),
    (r"\bwent from\b|\bsuperseded\b|\btried and dropped\b", "the history of a figure, not the figure"),
    (r"\b(?:an? |the )?(?:earlier|previous) (?:runs?|sweep|defaults|commit|row)\b", "an older state of the work"),
    (r"\b(?:before|after) (?:the|these) (?:changes|speed-ups|optimizations)\b", "an older state of the work"),
    (r"\bhas not been run yet\b|\btime was left\b", "the state of a work plan"),
    (r"\bdevelopment machine\b", "say what the machine is, not whose it was"),
    (r"\(issue\b|\bissue \d+\b", "the tracker's history; say what the code does"),
    (r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", "a commit hash"),
]


def narration(text: str) -> list[str]:
    """Every line of ``text`` that carries a marker, as ``"line N: 'match' (why)"``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        for pattern, why in NARRATION:
            m = re.search(pattern, line, flags=re.I)
            if m:
                out.append(f"line {n}: {m.group(0)!r} ({why})")
    return out


@pytest.mark.parametrize("text", [
    "Two-Room went from 10% to 75% this session, mostly through SIGReg per time step.",
    "`benchmarks/ijepa_screen.py` (a helper's screen, every run logged)",
    "Exploratory screens (drivers not kept in the repo)",
    "  Added (as built): `Planner(model, horizon)`",
    "about 1 for Gaussian input. Added: `SIGReg(..., seed=0)`",
    "- Added in the planning diagnosis (backwards-compatible): `Planner(..., chunks=1)`",
    "### Results after the CPU step optimizations (2026-11-26; full tables)",
    "| c234146 | q, k, v as `unbind` views |",
    "it has not been run yet (no GPU time was left).",
    "with 2 threads the trained V-JEPA scored 0.703 in an earlier run",
    "(The previous sweep, measured with the old per-dim sum, is superseded)",
    "## World models and planning (issue: action-conditioned world models)",
    "All figures below were measured on the 2-core CPU development machine",
])
def test_the_markers_catch_narration(text):
    assert narration(text), f"no marker catches: {text}"


@pytest.mark.parametrize("text", [
    "`OMP_NUM_THREADS=1 jepalab demo` wrote `benchmarks/results/demo_stochastic.json`.",
    "checkpoints are written atomically; `state.json` holds the SHA-256 of both tensor files",
    "| LeJEPA | 0.911 | 0.939 | 0.907 / 0.944 | 3.31x / 3.00x |",
    "`--set train.lr=1e-3` overrides one value; a resume adds a `not_bit_exact` event.",
    "The decoder adds the bias after the GEMM, as in the 4096x192x768 MLP.",
])
def test_the_markers_leave_product_text_alone(text):
    assert not narration(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_do_not_narrate_the_work(doc):
    found = narration(doc.read_text())
    assert not found, f"{doc.relative_to(ROOT)} narrates the work instead of describing the product:\n" + \
        "\n".join(found)


#: Repository paths a document may name; each must exist (a glob such as results/ssl_*.md must match).
PATH = re.compile(r"(?<![\w./-])((?:jepalab|benchmarks|configs|scripts|tests|docs)/[\w./*-]*[\w*])")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_files_that_exist(doc):
    missing = []
    for path in sorted(set(PATH.findall(doc.read_text()))):
        if not any(ROOT.glob(path)) and not (ROOT / path).exists():
            missing.append(path)
    # results files are named relative to benchmarks/ inside benchmarks/*.md
    for path in sorted(set(re.findall(r"(?<![\w/])(results/[\w.*-]+\.(?:md|json))", doc.read_text()))):
        if not any((ROOT / "benchmarks").glob(path)):
            missing.append(path)
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_readme_lists_every_recipe():
    from jepalab.recipes import RECIPES

    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("jepalab recipes"))
    listed = line.split("#", 1)[1].split(":", 1)[1].split()
    assert sorted(listed) == sorted(RECIPES), f"README lists {listed}, the registry has {sorted(RECIPES)}"
