"""The from-scratch study of ``benchmarks/llmjepa.py --scratch``: LLM-JEPA (Huang, LeCun, Balestriero
2025) against plain fine-tuning with a small byte-level Llama LM trained from scratch on NL-RX.

One plan of cells, each a training run scored on a fixed test subset (the first ``N_TEST`` test
requests, greedy decoding) at chosen steps:

- ``main/<subset>/<method>/s<seed>``: both methods, several seeds, ``MAIN_EPOCHS`` epochs; seed 0
  goes on to ``CURVE_EPOCHS`` with a score after every epoch (the overfitting curve, with the test
  cross-entropy beside the training one). Plain runs also score at the step where their summed
  training FLOPs first reach those of LLM-JEPA's ``MAIN_EPOCHS`` epochs on the same batches
  (``step_flops``, exact counts), so the methods meet at equal steps and at equal FLOPs.
- ``fraction/<f>/<method>``: the first ``f`` of a fixed shuffle of the training set, same steps
  as the main runs (so more passes over less data); fraction 1 is ``main`` seed 0.
- ``sweep/lam<l>/k<k>``: LLM-JEPA's weight and predictor-token count, ``SWEEP_EPOCHS`` epochs;
  lam 1, k 1 is ``main`` seed 0 read at that epoch.

The learning rate is constant after a linear warm-up, so a run scored at epoch ``e`` of a longer
run is the run of ``e`` epochs: that is what lets the curve, the sweep and the fractions share
the main runs' cells.
"""

from __future__ import annotations

import signal
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from jepalab.data.nlrx import NLRXConfig, NLRXSource, decode_bytes, load_split
from jepalab.eval.regex_equiv import equivalent
from jepalab.objectives.llm_jepa import step_flops
from jepalab.recipes.llmjepa import LLMJEPA, LLMJEPAConfig

SHAPE = dict(dim=96, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256)
BATCH, LR, WARMUP, N_TEST = 32, 2e-3, 50, 400
EPOCH_STEPS = 250                      # 8,000 training pairs at batch 32
MAIN_EPOCHS, CURVE_EPOCHS, SWEEP_EPOCHS = 2, 4, 1
LAMS, KS = (0.5, 1.0, 2.0), (0, 1, 2)
FRACTIONS = (0.125, 0.25, 0.5)
METHODS = {"plain": 0.0, "llm-jepa": 1.0}


@dataclass(frozen=True)
class Cell:
    """One training run: what to train, for how long, and the steps at which to score it."""

    key: str
    subset: str
    lam: float
    k: int
    seed: int
    fraction: float
    eval_steps: tuple[int, ...]
    equal_flops: bool = False          # plain only: also score at LLM-JEPA's MAIN_EPOCHS FLOPs


def plan(seeds: int = 3, subsets: tuple[str, ...] = ("synth",)) -> list[Cell]:
    """Every cell of the study, most important first (an interrupted run leaves the main table)."""
    epochs = lambda n: tuple(EPOCH_STEPS * e for e in range(1, n + 1))  # noqa: E731
    cells = []
    for subset in subsets:
        for seed in range(seeds):
            # seed 0 of SYNTH carries the per-epoch curve; the other runs are scored at the end only
            at = epochs(CURVE_EPOCHS) if seed == 0 and subset == "synth" else (EPOCH_STEPS * MAIN_EPOCHS,)
            for method, lam in METHODS.items():
                cells.append(Cell(f"main/{subset}/{method}/s{seed}", subset, lam, 1, seed, 1.0, at,
                                  equal_flops=lam == 0))
        if subset != "synth":
            continue
        sweep = lambda lam, k: Cell(f"sweep/lam{lam:g}/k{k}", subset, lam, k, 0, 1.0, epochs(SWEEP_EPOCHS))  # noqa: E731
        frac = lambda f, m: Cell(f"fraction/{f:g}/{m}", subset, METHODS[m], 1, 0, f,  # noqa: E731
                                 (EPOCH_STEPS * MAIN_EPOCHS,))
        # coarse first, so that a cut-short run still has one axis of each study: the sweep's cross
        # through (1, 1), the smallest and the largest fraction; then the grid's corners and 1/4
        cells += [sweep(lam, 1) for lam in LAMS if lam != 1.0] + [sweep(1.0, k) for k in KS if k != 1]
        cells += [frac(f, m) for f in (FRACTIONS[0], FRACTIONS[-1]) for m in METHODS]
        cells += [sweep(lam, k) for lam in LAMS for k in KS if lam != 1.0 and k != 1]
        cells += [frac(f, m) for f in FRACTIONS[1:-1] for m in METHODS]
    return cells


def missing(store: dict, seeds: int = 3, subsets: tuple[str, ...] = ("synth",)) -> list[str]:
    """The planned cells that ``store`` lacks, one phrase per study part (empty when complete)."""
    keys = [c.key for c in plan(seeds, subsets) if c.key not in store]
    parts = {"main": "seeds of the main comparison", "sweep": "λ × k sweep cells",
             "fraction": "data-fraction cells"}
    out = []
    for part, what in parts.items():
        names = [k.split("/", 1)[1] for k in keys if k.startswith(part + "/")]
        if names:
            out.append(f"{what} {', '.join(names)}")
    return out


def run_plan(cells: list[Cell], store: dict, train: Callable[[Cell], dict], save: Callable[[], None]) -> int:
    """Train the cells missing from ``store`` (key -> record), saving after each; returns how many ran."""
    ran = 0
    for cell in cells:
        if cell.key in store:
            continue  # finished in an earlier, possibly interrupted, invocation
        store[cell.key] = train(cell)
        ran += 1
        save()
    return ran


def _views(model: LLMJEPA, batch: dict) -> object:
    return model.views(decode_bytes(batch["request"], batch["request_len"]),
                       decode_bytes(batch["regex"], batch["regex_len"]))


def jepa_flops(model: LLMJEPA, src: NLRXSource, steps: int, batch: int, k: int = 1) -> float:
    """Summed training FLOPs of LLM-JEPA (single pass, ``k`` predictor tokens) over ``src``'s first
    ``steps`` batches: the budget at which the plain run is scored a second time."""
    return sum(step_flops(model.lm.cfg, _views(model, src.batch(s, batch)), k, True, True) for s in range(steps))


class _CheckTimeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _CheckTimeout


def semantic_guarded(pred: str, target: str, cpu_limit_s: float = 2.0) -> bool | None:
    """``equivalent(pred, target)``, or None when building the automata takes more than
    ``cpu_limit_s`` of CPU time (a generated regex such as nested bounded repeats under ``~`` can
    make the subset construction blow up before its size is checked); None counts as wrong."""
    if pred == target:
        return True
    old = signal.signal(signal.SIGPROF, _raise_timeout)
    signal.setitimer(signal.ITIMER_PROF, cpu_limit_s)
    try:
        return equivalent(pred, target)
    except _CheckTimeout:
        return None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def evaluate(model: LLMJEPA, examples: list) -> dict:
    """Greedy decoding, exact and semantic accuracy, and how many semantic checks timed out."""
    preds = model.generate([e.request for e in examples])
    sem = [semantic_guarded(p, e.regex) for p, e in zip(preds, examples)]
    n = len(examples)
    return {"exact": sum(p == e.regex for p, e in zip(preds, examples)) / n, "semantic": sum(x is True for x in sem) / n,
            "semantic_timeouts": sum(x is None for x in sem),
            "samples": [{"request": e.request, "target": e.regex, "output": p} for e, p in zip(examples, preds)]}


@torch.no_grad()
def test_ce(model: LLMJEPA, examples: list, batch: int = 64) -> float:
    """Mean next-token cross-entropy of the target regexes on held-out requests."""
    model.eval()
    tot, n = 0.0, 0
    for i in range(0, len(examples), batch):
        ex = examples[i:i + batch]
        v = model.views([e.request for e in ex], [e.regex for e in ex])
        tot += float(model.loss(v, jepa=False)[1]) * len(ex)
        n += len(ex)
    return tot / n


def train_cell(cell: Cell, root: str, device: str = "cpu", batch: int = BATCH, n_test: int = N_TEST,
               epoch_steps: int = EPOCH_STEPS, shape: dict | None = None, lr: float = LR,
               log: Callable[[str], None] | None = None) -> dict:
    """Train ``cell`` with the recipe's own ``training_step`` and score it at its eval steps
    (``log`` receives a line per score as it is made)."""
    torch.manual_seed(cell.seed)
    model = LLMJEPA(LLMJEPAConfig(**(shape or SHAPE), lam=cell.lam, k=cell.k, single_pass=True,
                                  max_new_tokens=80)).to(device)
    src = NLRXSource(NLRXConfig(root=root, subset=cell.subset, split="train", seed=cell.seed, fraction=cell.fraction))
    test = load_split(root, cell.subset, "test")[:n_test]
    target = None
    if cell.equal_flops:
        main_steps = epoch_steps * MAIN_EPOCHS
        target = jepa_flops(model, NLRXSource(NLRXConfig(root=root, subset=cell.subset, seed=cell.seed)),
                            main_steps, batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    flops, cpu, wall, ces, evals = 0.0, 0.0, 0.0, [], []
    step, last = 0, max(cell.eval_steps)
    while step < last or (target is not None and flops < target):
        c0, w0 = time.process_time(), time.perf_counter()
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / WARMUP)
        torch.manual_seed(cell.seed * 100_003 + step)
        out = model.training_step({k: v.to(device) for k, v in src.batch(step, batch).items()}, step)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        before, flops, step = flops, flops + float(out["flops"]), step + 1
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        ces.append(float(out["ce"]))
        tags = ["epoch"] if step in cell.eval_steps else []
        if target is not None and before < target <= flops:
            tags.append("equal-flops")
        if tags:
            ev = evaluate(model, test)
            evals.append({"step": step, "epoch": step / epoch_steps, "tags": tags, "exact": ev["exact"],
                          "semantic": ev["semantic"], "semantic_timeouts": ev["semantic_timeouts"], "train_ce": statistics.mean(ces[-epoch_steps:]),
                          "test_ce": test_ce(model, test), "flops": flops, "train_cpu_s": cpu,
                          "train_wall_s": wall, "samples": ev["samples"][:2]})
            if log:
                log(f"{cell.key} step {step} {'+'.join(tags)}: exact {ev['exact']:.3f} semantic "
                    f"{ev['semantic']:.3f} test CE {evals[-1]['test_ce']:.3f}, train CPU {cpu:.0f} s")
    return {"cell": asdict(cell), "evals": evals, "n_test": len(test), "n_train": len(src), "batch": batch,
            "lr": lr, "shape": shape or SHAPE, "jepa_flops_target": target,
            "params": sum(p.numel() for p in model.parameters())}


def score_at(rec: dict | None, step: int | None = None, tag: str = "epoch") -> dict | None:
    """The evaluation of a cell record at ``step`` (or the first one tagged ``tag``)."""
    for ev in (rec or {}).get("evals", []):
        if tag in ev["tags"] and (step is None or ev["step"] == step):
            return ev
    return None


def _ms(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{100 * xs[0]:.1f}" if xs else "-"
    return f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}"


def _interval(xs: list[float]) -> tuple[float, float]:
    m, s = statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m - s, m + s


def table_lines(cells: dict) -> list[str]:
    """Markdown for the study from the stored cell records alone (absent cells are left out)."""
    if not cells:
        return []
    main_step = EPOCH_STEPS * MAIN_EPOCHS
    lines = ["## From-scratch study (`--scratch`)", "",
             f"A byte-level Llama LM ({SHAPE['dim']} wide, {SHAPE['n_layers']} layers, "
             f"{next(iter(cells.values()))['params']:,} parameters) trained from scratch at batch {BATCH}, "
             f"AdamW lr {LR:g} (constant after {WARMUP} warm-up steps); one epoch = {EPOCH_STEPS} steps. "
             f"Scored on the first {N_TEST} test requests of each subset. Percent."]
    cut = sum(ev.get("semantic_timeouts", 0) for c in cells.values() for ev in c["evals"])
    lines += [f"Semantic checks cut off after 2 s of CPU (counted wrong): {cut} over all scores.", ""] if cut else [""]
    for subset in ("synth", "turk"):
        rows = {m: [c for k, c in cells.items() if k.startswith(f"main/{subset}/{m}/")] for m in METHODS}
        if not any(rows.values()):
            continue
        lines += [f"### {subset.upper()}: {MAIN_EPOCHS} epochs, equal steps and equal FLOPs", "",
                  "| method | steps | seeds | exact % | semantic % | per seed exact % | train TFLOP | train CPU s |",
                  "|---|---:|---:|---:|---:|---|---:|---:|"]
        got = {}
        for label, m, tag in (("plain", "plain", "epoch"), ("plain, equal FLOPs", "plain", "equal-flops"),
                              ("llm-jepa (λ 1, k 1)", "llm-jepa", "epoch")):
            evs = [e for e in (score_at(c, main_step if tag == "epoch" else None, tag) for c in rows[m]) if e]
            if not evs:
                continue
            got[label] = evs
            steps = sorted({e["step"] for e in evs})
            lines.append(f"| {label} | {steps[0]}{'–' + str(steps[-1]) if len(steps) > 1 else ''} | {len(evs)} | "
                         f"{_ms([e['exact'] for e in evs])} | {_ms([e['semantic'] for e in evs])} | "
                         f"{', '.join('%.1f' % (100 * e['exact']) for e in evs)} | "
                         f"{statistics.mean(e['flops'] for e in evs) / 1e12:.1f} | "
                         f"{statistics.mean(e['train_cpu_s'] for e in evs):.0f} |")
        lines.append("")
        j = got.get("llm-jepa (λ 1, k 1)")
        for ref in ("plain", "plain, equal FLOPs"):
            if j and got.get(ref) and len(j) > 1:
                for what in ("exact", "semantic"):
                    a, b = _interval([e[what] for e in j]), _interval([e[what] for e in got[ref]])
                    d = 100 * (statistics.mean(e[what] for e in j) - statistics.mean(e[what] for e in got[ref]))
                    apart = a[0] > b[1] or b[0] > a[1]
                    lines.append(f"- LLM-JEPA − {ref}, {what}: {d:+.1f} points; the mean ± std intervals "
                                 f"{'do not overlap' if apart else 'overlap'}.")
        lines.append("")
    curve = {m: cells.get(f"main/synth/{m}/s0") for m in METHODS}
    if any(curve.values()):
        lines += ["### SYNTH overfitting curve (seed 0): test score after each epoch", "",
                  "| epoch | method | exact % | semantic % | train CE | test CE |", "|---:|---|---:|---:|---:|---:|"]
        for e in range(1, CURVE_EPOCHS + 1):
            for m, rec in curve.items():
                ev = score_at(rec, EPOCH_STEPS * e)
                if ev:
                    lines.append(f"| {e} | {m} | {100 * ev['exact']:.1f} | {100 * ev['semantic']:.1f} | "
                                 f"{ev['train_ce']:.3f} | {ev['test_ce']:.3f} |")
        lines += ["", "Train CE: mean next-token loss over the epoch's training steps; test CE: on the scored "
                  "test requests.", ""]
    fr = [(f, m, cells.get(f"fraction/{f:g}/{m}")) for f in FRACTIONS for m in METHODS]
    if any(r for _, _, r in fr):
        lines += [f"### SYNTH data fractions (seed 0, {main_step} steps each: more passes over less data)", "",
                  "| fraction | pairs | method | exact % | semantic % |", "|---:|---:|---|---:|---:|"]
        for f, m, rec in fr + [(1.0, m, cells.get(f"main/synth/{m}/s0")) for m in METHODS]:
            ev = score_at(rec, main_step)
            if ev:
                lines.append(f"| {f:g} | {rec['n_train']} | {m} | {100 * ev['exact']:.1f} | {100 * ev['semantic']:.1f} |")
        lines.append("")
    sweep_step = EPOCH_STEPS * SWEEP_EPOCHS
    grid = {(lam, k): (cells.get("main/synth/llm-jepa/s0") if (lam, k) == (1.0, 1)
                       else cells.get(f"sweep/lam{lam:g}/k{k}")) for lam in LAMS for k in KS}
    if any(grid[c] for c in grid if c != (1.0, 1)):
        plain = score_at(cells.get("main/synth/plain/s0"), sweep_step)
        lines += [f"### SYNTH λ × k sweep (seed 0, {sweep_step} steps): exact % / semantic %", "",
                  "| λ | " + " | ".join(f"k = {k}" for k in KS) + " |", "|---:|" + "---:|" * len(KS)]
        for lam in LAMS:
            vals = [score_at(grid[(lam, k)], sweep_step) for k in KS]
            lines.append(f"| {lam:g} | " + " | ".join(f"{100 * v['exact']:.1f} / {100 * v['semantic']:.1f}" if v else "-"
                                                   for v in vals) + " |")
        if plain:
            lines += ["", f"Plain fine-tuning, same seed and steps: {100 * plain['exact']:.1f} / "
                      f"{100 * plain['semantic']:.1f}."]
        lines.append("")
    return lines


__all__ = ["Cell", "plan", "missing", "run_plan", "train_cell", "jepa_flops", "test_ce", "score_at", "table_lines"]
