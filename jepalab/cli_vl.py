"""``jepalab answer`` and ``jepalab describe``: ask a trained VL-JEPA about a clip, or describe a
long video with selective decoding (text only when the predicted meaning moves).

``jepalab eval RUN`` of a vljepa run reports zero-shot classification and text<->video retrieval
(``jepalab.eval.vl_eval``) instead of probes: ``register`` routes it here (``jepalab.cli_route``).

Why a module of its own: the VL commands need the text encoder wheel and the VL-JEPA recipe;
keeping them here keeps ``jepalab.cli`` small and its import fast.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jepalab.errors import CheckpointError, DataError

if TYPE_CHECKING:
    import torch

ANSWER_EXAMPLES = """examples:
  jepalab train configs/vljepa_shapes.yaml --run-dir runs/vljepa_shapes
  jepalab answer runs/vljepa_shapes --clip shapes:3 "how many objects are there?"
Your own clip: --clip my_clip.npy. A clip is a .npy array (T, H, W, 3) or (T, 3, H, W), floats in [0, 1] or uint8, with the model's
frame count and size, or shapes:INDEX for clip INDEX of the shapes world's test split."""

DESCRIBE_EXAMPLES = """examples:
  jepalab describe runs/vljepa_shapes --stream shapes-stream:0 --out runs/describe.html
Your own video with a fixed drift threshold: --stream long_video.npy --threshold 0.1. A stream is a .npy array (N, H, W, 3) or (N, 3, H, W), or shapes-stream:SEED (a generated stream
of shapes scenes). Without --threshold it is calibrated on a generated stream for 90% recall of
its scene cuts."""


def load_vl_model(run_dir: str) -> Any:
    """The VL-JEPA model saved in ``run_dir`` (the final one of a training run)."""
    from jepalab.recipes.base import Recipe
    from jepalab.recipes.vljepa import VLJEPA

    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; pass a run trained with configs/vljepa_shapes.yaml.")
    model = Recipe.from_pretrained(run_dir)
    if not isinstance(model, VLJEPA):
        raise CheckpointError(f"{run_dir} holds a '{model.name}' model; answer and describe need a 'vljepa' run.")
    return model.eval()


def _as_frames(arr: np.ndarray, what: str, size: int) -> "torch.Tensor":
    """``(N, H, W, 3)`` or ``(N, 3, H, W)``, uint8 or floats in [0, 1] -> float ``(N, 3, size, size)``."""
    import torch

    if arr.ndim != 4 or 3 not in (arr.shape[1], arr.shape[-1]):
        raise DataError(f"{what} must be an array (N, H, W, 3) or (N, 3, H, W); got shape {arr.shape}.")
    x = torch.as_tensor(np.asarray(arr))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[-1] != size or x.shape[-2] != size:
        raise DataError(f"{what} has {x.shape[-2]}x{x.shape[-1]} frames; this model reads {size}x{size}: resize it.")
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise DataError(f"{what} must hold floats in [0, 1] (or uint8); got values in [{float(x.min())}, {float(x.max())}].")
    return x.contiguous()


def _load_array(spec: str, what: str) -> np.ndarray:
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise DataError(f"{what} '{spec}' is not a .npy file; save the frames with numpy.save or use the examples' forms.")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{what} '{spec}' could not be read ({e}).") from e


def check_spec(spec: str, prefix: str, what: str) -> None:
    """Refuse a malformed ``PREFIX:INT`` or a missing .npy before anything is loaded."""
    if spec.startswith(prefix):
        tail = spec[len(prefix):]
        if not tail.isdigit():
            raise DataError(f"{what} {spec}: write {prefix}N with an integer N >= 0.")
    elif Path(spec).suffix != ".npy" or not Path(spec).is_file():
        raise DataError(f"{what} '{spec}' is not a .npy file; save the frames with numpy.save or write {prefix}N.")


def read_clip(spec: str, frames: int, size: int) -> tuple["torch.Tensor", str]:
    """A clip ``(1, T, 3, S, S)`` and, for a shapes clip, its caption (else "")."""
    import torch

    if spec.startswith("shapes:"):
        from jepalab.data.shapes_world import ShapesWorld, ShapesWorldConfig

        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise DataError(f"--clip {spec}: write shapes:INDEX with an integer INDEX >= 0.") from None
        if index < 0:
            raise DataError(f"--clip {spec}: INDEX must be >= 0.")
        clip = ShapesWorld(ShapesWorldConfig(split="test", frames=frames, img_size=size)).clip(index)
        return torch.from_numpy(clip.frames)[None], clip.caption
    x = _as_frames(_load_array(spec, "--clip"), "--clip", size)
    if x.shape[0] != frames:
        raise DataError(f"--clip has {x.shape[0]} frames; this model reads clips of {frames}.")
    return x[None], ""


def cmd_answer(args: argparse.Namespace) -> int:
    from jepalab.data.shapes_text import answer_candidates

    if not args.question.strip():
        raise DataError("The question is empty; ask e.g. \"how many objects are there?\".")
    check_spec(args.clip, "shapes:", "--clip")
    model = load_vl_model(args.run_dir)
    c = model.config
    clip, caption = read_clip(args.clip, c.num_frames, c.img_size)
    cands = [s.strip() for s in args.candidates.split(",") if s.strip()] if args.candidates else answer_candidates()
    emb = model.answer_embedding(clip, [args.question])
    idx, dist = model.retrieve(emb, cands)
    if caption:
        print(f"clip: {caption}")
    print(f"answer (decoded): {model.decode(emb)[0]}")
    print(f"answer (nearest of {len(cands)} candidates): {cands[int(idx[0])]}  (cosine distance {float(dist[0]):.3f})")
    return 0


def _png(frame: "torch.Tensor") -> str:
    import matplotlib.image as mpimg

    buf = io.BytesIO()
    img = frame.permute(1, 2, 0).clamp(0, 1).numpy()
    img = np.repeat(np.repeat(img, 3, axis=0), 3, axis=1)  # 3x nearest-neighbour upscaling
    mpimg.imsave(buf, img, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def cmd_describe(args: argparse.Namespace) -> int:
    import torch

    from jepalab.atomic import write_text_atomic
    from jepalab.data.vl_pairs import make_stream
    from jepalab.eval.selective import calibrate_threshold, selective_points

    if args.threshold is not None and not 0 < args.threshold < 2:
        raise DataError(f"--threshold {args.threshold}: use a cosine distance in (0, 2), e.g. 0.1.")
    if args.fps <= 0 or args.scenes < 1:
        raise DataError("--fps must be > 0 and --scenes >= 1.")
    check_spec(args.stream, "shapes-stream:", "--stream")
    model = load_vl_model(args.run_dir)
    c = model.config
    if args.stream.startswith("shapes-stream:"):
        try:
            seed = int(args.stream.split(":", 1)[1])
        except ValueError:
            raise DataError(f"--stream {args.stream}: write shapes-stream:SEED with an integer SEED.") from None
        frames = torch.from_numpy(make_stream(seed, scenes=args.scenes, size=c.img_size).frames)
    else:
        frames = _as_frames(_load_array(args.stream, "--stream"), "--stream", c.img_size)
    if frames.shape[0] < c.num_frames:
        raise DataError(f"--stream has {frames.shape[0]} frames; it needs at least the model's {c.num_frames}.")
    th = args.threshold
    if th is None:
        cal = make_stream(10_000, scenes=8, size=c.img_size)
        emb_cal = model.encode_stream(torch.from_numpy(cal.frames))
        th = calibrate_threshold(emb_cal, [t - (c.num_frames - 1) for t in cal.cuts], tolerance=8, recall=0.9)
    emb = model.encode_stream(frames)
    points = selective_points(emb, th)
    texts = model.decode(emb[points])
    rows = []
    for p, text in zip(points, texts):
        end = p + c.num_frames - 1  # the window's last frame: when the description is written
        rows.append(f"<tr><td>{end}</td><td>{end / args.fps:.1f} s</td><td><img src='{_png(frames[end])}'></td>"
                    f"<td>{html.escape(text)}</td></tr>")
    minutes = max(frames.shape[0] / args.fps / 60, 1e-9)
    page = (f"<!doctype html><meta charset='utf-8'><title>VL-JEPA stream description</title>"
            f"<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto}}td{{padding:.3em .8em;"
            f"border-bottom:1px solid #ddd}}img{{image-rendering:pixelated}}</style>"
            f"<h1>Stream description</h1><p>{html.escape(args.stream)}: {frames.shape[0]} frames at {args.fps} fps; "
            f"{len(points)} decodes ({len(points) / minutes:.1f} per minute) with drift threshold {th:.4f} "
            f"(cosine distance to the last decoded embedding).</p>"
            f"<table><tr><th>frame</th><th>time</th><th>frame shown</th><th>decoded text</th></tr>{''.join(rows)}</table>")
    out = Path(args.out)
    write_text_atomic(out, page)
    print(f"{len(points)} decodes over {frames.shape[0]} frames; wrote {out}")
    return 0


def cmd_eval_vl(args: argparse.Namespace) -> int:
    """Zero-shot MNIST and text<->video R@1 / R@5 of a vljepa run; writes RUN_DIR/eval_vl.json."""
    import json

    from jepalab.eval.vl_eval import VL_EVAL_FILE, evaluate_vl_run, format_vl
    from jepalab.trainer.lock import RunLock

    with RunLock(args.run_dir, "eval"):  # not while a train/resume is still writing the run
        result = evaluate_vl_run(args.run_dir, max_test=args.max_test)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_vl(result))
        print(f"wrote {Path(args.run_dir) / VL_EVAL_FILE}")
    return 0


def register(sub: Any) -> None:
    """Add ``answer`` and ``describe`` to the ``jepalab`` sub-command parser; route ``eval`` of a
    vljepa run to :func:`cmd_eval_vl`."""
    from jepalab.cli_route import route_eval

    route_eval(sub, "vljepa", cmd_eval_vl)
    p = sub.add_parser("answer", help="answer a question about a clip with a trained VL-JEPA",
                       description="Predict the answer's embedding for CLIP and QUESTION, print the decoded text and "
                                   "the nearest candidate answer.",
                       epilog=ANSWER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run trained with recipe vljepa")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--clip", required=True, help="a .npy clip or shapes:INDEX")
    p.add_argument("--candidates", default=None, help="comma-separated candidate answers (default: the shapes world's)")
    p.set_defaults(func=cmd_answer)
    p = sub.add_parser("describe", help="describe a long video with selective decoding; writes an HTML page",
                       description="Embed every window of the stream, decode text only when the predicted embedding "
                                   "has drifted past a threshold since the last decode, and write an HTML page with "
                                   "the frames, the decode moments and the text.",
                       epilog=DESCRIBE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run trained with recipe vljepa")
    p.add_argument("--stream", required=True, help="a .npy video or shapes-stream:SEED")
    p.add_argument("--out", default="runs/describe.html", help="HTML page to write (default runs/describe.html)")
    p.add_argument("--threshold", type=float, default=None, help="drift threshold (cosine distance); default calibrated")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the stream (default 10)")
    p.add_argument("--scenes", type=int, default=8, help="scenes of a generated shapes-stream (default 8)")
    p.set_defaults(func=cmd_describe)


__all__ = ["register", "cmd_answer", "cmd_describe", "cmd_eval_vl", "load_vl_model", "read_clip"]
