"""Every command and snippet the README and ``jepalab --help`` show runs, as written.

The README's fenced ``bash`` blocks (each line, each ``&&`` part), its ``python`` blocks and the
examples in every ``--help`` epilog are run in order in one scratch directory, the way a reader
would paste them. Two kinds of command are not run, and ``NOT_RUN`` says why; any other program
fails the test rather than being skipped. To keep this under a minute, ``BUDGET`` appends flags
that only shorten a command (fewer steps, episodes or probes; argparse keeps the last value of a
repeated flag, so the command as written is still what is parsed first); commands that parse to
the same arguments run once. Afterwards the scratch directory must hold nothing but ``runs/``:
every default output lives under that one ignored folder.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import torch

from jepalab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands not run, with the reason.
NOT_RUN = {
    "bash scripts/setup.sh": "it made the environment this test runs in",
    ".venv/bin/python -m pytest tests": "it is the test suite this test belongs to",
}

#: Per sub-command: flags appended to shorten it (each only lowers a budget).
BUDGET = {
    "train": ["--set", "train.steps=4", "--set", "train.warmup_steps=1"],
    "demo": ["--quick", "--set", "train.steps=50"],  # --quick is 0.1x the config's steps: 5
    "resume": ["--set", "train.steps=8"],  # continue or extend a 4-step run to 8 steps at most
    "eval": ["--probes", "linear", "knn", "--max-train", "256", "--max-test", "128"],
    "collect": ["--episodes", "2", "--steps", "30"],
    "plan": ["--budget", "2", "--samples", "16", "--iterations", "2", "--test-every", "2"],
    "evaluate-planning": ["--episodes", "1", "--budget", "2", "--samples", "16", "--iterations", "2",
                          "--test-every", "2", "--no-baseline"],
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in document order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def bash_commands(block: str) -> list[list[str]]:
    """Each command of a bash block as an argv (comments dropped, ``&&`` chains split)."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1:]
    return out


def readme_commands(text: str) -> list[list[str]]:
    return [c for lang, body in fenced_blocks(text) if lang == "bash" for c in bash_commands(body)]


def help_examples(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The example commands in the epilogs of ``jepalab --help`` and every sub-command's help: an
    indented line starting with ``jepalab``; text after two or more spaces is its description."""
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(dict.fromkeys(action.choices.values()))
    out = []
    for p in parsers:
        for line in (p.epilog or "").splitlines():
            m = re.match(r"^\s+(jepalab\s.*?)(?:\s{2,}.*)?$", line)
            if m:
                out.append(shlex.split(m.group(1)))
    return out


def _all_help(parser: argparse.ArgumentParser) -> str:
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            text += "".join(p.format_help() for p in action.choices.values())
    return text


def test_the_extractors_find_every_command():
    """Guards the test itself: a README or epilog reformatted out of the extractors' reach would
    otherwise leave nothing to run."""
    text = README.read_text()
    cmds = readme_commands(text)
    assert len(cmds) >= 12 and [lang for lang, _ in fenced_blocks(text)].count("python") >= 1
    assert ["jepalab", "recipes"] in cmds and ["bash", "scripts/setup.sh"] in cmds
    examples = help_examples(build_parser())
    assert len(examples) >= 15
    assert {e[1] for e in examples} >= {"train", "info", "resume", "eval", "demo", "collect", "plan",
                                        "evaluate-planning"}


def test_every_config_the_docs_name_exists():
    for where, text in (("README.md", README.read_text()), ("--help", _all_help(build_parser()))):
        for name in sorted(set(re.findall(r"configs/[\w.-]+\.yaml", text))):
            assert (ROOT / name).is_file(), f"{where} names {name}, which does not exist"


def _run(argv: list[str], parser: argparse.ArgumentParser, seen: list[dict]) -> None:
    prog, args = Path(argv[0]).name, argv[1:]
    if prog != "jepalab":
        raise AssertionError(f"the docs show `{shlex.join(argv)}`, which this test cannot run: run it here, "
                             "or list it in NOT_RUN with the reason")
    args = args + BUDGET.get(args[0] if args else "", [])
    try:
        parsed = {k: v for k, v in vars(parser.parse_args(args)).items() if k != "func"}
    except SystemExit:
        raise AssertionError(f"`{shlex.join(argv)}` is not a valid jepalab command line") from None
    if parsed in seen:
        return
    seen.append(parsed)
    threads, t0 = torch.get_num_threads(), time.perf_counter()
    try:
        rc = main(args)
    finally:
        torch.set_num_threads(threads)
    print(f"[docs] {time.perf_counter() - t0:5.1f} s  jepalab {shlex.join(args)}")
    assert rc == 0, f"`{shlex.join(argv)}` (run as `jepalab {shlex.join(args)}`) exited with {rc}"


def test_readme_and_help_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    parser, seen = build_parser(), []
    text = README.read_text()
    skipped = set()
    for n, (lang, body) in enumerate(fenced_blocks(text)):
        if lang == "python":
            t0 = time.perf_counter()
            exec(compile(body, f"README.md, fenced block {n}", "exec"), {"__name__": f"readme_block_{n}"})
            print(f"[docs] {time.perf_counter() - t0:5.1f} s  README python block {n}")
        elif lang == "bash":
            for argv in bash_commands(body):
                if shlex.join(argv) in NOT_RUN:
                    skipped.add(shlex.join(argv))
                else:
                    _run(argv, parser, seen)
    assert skipped == set(NOT_RUN), "a NOT_RUN entry matches no README command"
    for argv in help_examples(parser):
        _run(argv, parser, seen)
    assert sorted(os.listdir(tmp_path)) == ["configs", "runs"], "a command wrote outside runs/"


def test_runs_folder_is_ignored_by_git():
    paths = ["runs/data/pusht/meta.json", "runs/plans/episode.json", "runs/demo-stochastic/results.json"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    if "not a git repository" in proc.stderr:
        pytest.skip("not a git checkout")
    assert proc.stdout.split() == paths, f".gitignore must ignore runs/ ({proc.stderr.strip()})"


def _defaults(path: Path) -> list[tuple[str, str]]:
    """``(flag, default)`` of each benchmark argument that names an output location; the default's
    source text, followed by the module-level assignments of the names it uses."""
    src = path.read_text()
    tree = ast.parse(src)
    assigned = {t.id: ast.get_source_segment(src, node) or "" for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
            flag = node.args[0]
            if isinstance(flag, ast.Constant) and flag.value in ("--out", "--work", "--data", "--run-dir", "--md"):
                for kw in node.keywords:
                    if kw.arg == "default":
                        names = {n.id for n in ast.walk(kw.value) if isinstance(n, ast.Name)}
                        text = " ".join([ast.get_source_segment(src, kw.value) or ""] +
                                        [assigned[n] for n in sorted(names) if n in assigned])
                        out.append((flag.value, text))
    return out


def test_benchmark_outputs_default_to_runs_or_results():
    """Benchmarks keep scratch work under the ignored runs/ and their reports in benchmarks/results."""
    checked = 0
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for flag, default in _defaults(path):
            checked += 1
            assert default == "None" or re.search(r"[\"'/](runs|results)[\"'/]|\bRESULTS\b", default), \
                f"{path.name} {flag} defaults to {default!r}: keep scratch output under runs/"
    assert checked >= 10
