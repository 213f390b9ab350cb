"""Training-state checkpoints: everything needed to continue a run bit-exactly after a crash.

Why a separate format from ``Recipe.save_pretrained``: a pretrained model needs only weights and
config, but resuming also needs the optimizer moments, the step, the RNG states and the data
position. Layout (one directory per checkpoint, written to a temp dir and renamed into place, so
a killed process leaves either a complete checkpoint or none)::

    run_dir/checkpoints/step_0000100/model.safetensors      all model state (incl. EMA teacher
                                                            and non-persistent buffers)
                                    /optimizer.safetensors  optimizer state tensors
                                    /state.json             step, config, RNG, sizes + sha256
    run_dir/checkpoints/latest                               name of the newest checkpoint
    run_dir/checkpoints/diverged-step_0000200/               set aside after a divergence (kept,
                                                            never listed or resumed from)

``state.json`` records the size and SHA-256 of both tensor files, so truncation or bit rot is
reported as a ``CheckpointError`` that names the file instead of silently loading bad weights.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from jepalab.errors import CheckpointError
from jepalab.atomic import write_bytes_atomic

CHECKPOINT_DIR = "checkpoints"
LATEST_FILE = "latest"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT_VERSION = 1
NONPERSISTENT_PREFIX = "__nonpersistent__."
_NAME_RE = re.compile(r"^step_(\d{7,})$")


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` completed steps."""
    return f"step_{step:07d}"


def is_complete(path: str | os.PathLike) -> bool:
    """Whether checkpoint directory ``path`` still has all three of its files.

    A checkpoint appears in one ``os.replace``, so it is complete or absent; an incomplete
    ``step_*`` directory is one whose deletion was cut short (e.g. by a run killed while pruning
    with an older jepalab) or that was damaged by hand, and it cannot be resumed from.
    """
    p = Path(path)
    return all((p / f).is_file() for f in (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE))


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first (temp, trash and incomplete
    directories are ignored)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir()
             if p.is_dir() and (m := _NAME_RE.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint the ``latest`` pointer names, else the newest directory, else ``None``."""
    d = Path(run_dir) / CHECKPOINT_DIR
    pointer = d / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text(errors="replace").strip()
        target = d / name
        if _NAME_RE.match(name) and target.is_dir():
            return target
        raise CheckpointError(
            f"{pointer} names '{name[:60]}', which is not a checkpoint directory in {d}. Delete "
            f"{pointer} to resume from the newest step_* directory, or start a new run."
        )
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# --- RNG state --------------------------------------------------------------------------------
def _b64(t: Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (CPU and, if in use, CUDA) RNG states as JSON-able values."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> list[str]:
    """Inverse of :func:`capture_rng`; returns what could not be restored, in words (empty when
    everything was), so that the caller can say that the continuation is not bit-exact.

    CUDA states are restored for the GPUs present both in the checkpoint and here; a checkpoint
    written with more (or any) GPUs than this machine shows is reported, not silently skipped.
    """
    v, keys, gauss = state["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    cuda = state.get("cuda") or []
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda and here:
        for i, s in enumerate(cuda[:here]):
            torch.cuda.set_rng_state(_unb64(s), i)
    if len(cuda) > here:
        return [f"the CUDA generator states of {len(cuda)} GPU(s) were saved but {here} GPU(s) are visible here, "
                f"so {len(cuda) - here} could not be restored"]
    return []


# --- optimizer state <-> flat tensors -----------------------------------------------------------
def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into safetensors-able tensors ``"{idx}.{key}"`` and JSON meta."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().clone().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# --- save -------------------------------------------------------------------------------------
def _model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """``state_dict()`` plus non-persistent buffers (prefixed), cloned to CPU.

    Non-persistent buffers are saved too because training can change them (e.g. an EMA teacher
    that averages every buffer, fixed positions included, drifts them by rounding); rebuilding
    them from scratch on resume would break bit-exactness.
    """
    sd = model.state_dict()
    out = {k: v.detach().cpu().clone().contiguous() for k, v in sd.items()}  # clone: no shared storage
    for name, buf in model.named_buffers():
        if name not in sd and buf is not None:
            out[NONPERSISTENT_PREFIX + name] = buf.detach().cpu().clone().contiguous()
    return out


def _load_model_tensors(model: nn.Module, weights: dict[str, Tensor]) -> None:
    extra = {k[len(NONPERSISTENT_PREFIX):]: v for k, v in weights.items() if k.startswith(NONPERSISTENT_PREFIX)}
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(NONPERSISTENT_PREFIX)}, strict=True)
    buffers = dict(model.named_buffers())
    unknown = sorted(set(extra) - set(buffers))
    if unknown:
        raise RuntimeError(f"Unexpected non-persistent buffer(s) {unknown[:5]}")
    with torch.no_grad():
        for name, value in extra.items():
            if buffers[name].shape != value.shape:
                raise RuntimeError(f"size mismatch for buffer {name}: {tuple(value.shape)} vs {tuple(buffers[name].shape)}")
            buffers[name].copy_(value)


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXX/`` atomically, point ``latest`` at it and delete
    all but the newest ``keep_last`` checkpoints. ``state`` is extra JSON (step, config, ...)."""
    from safetensors.torch import save

    if keep_last < 1:
        raise CheckpointError(f"keep_last must be >= 1 (got {keep_last}), or the new checkpoint would be deleted.")
    ckdir = Path(run_dir) / CHECKPOINT_DIR
    ckdir.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    final = ckdir / name
    tmp = Path(tempfile.mkdtemp(dir=ckdir, prefix=f".tmp-{name}-"))
    try:
        opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
        files = {MODEL_FILE: save(_model_tensors(model)), OPTIMIZER_FILE: save(opt_tensors)}
        record = dict(state)
        record.update(
            format=FORMAT_VERSION,
            step=int(step),
            optimizer=opt_meta,
            files={n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()},
        )
        for fname, data in files.items():
            write_bytes_atomic(tmp / fname, data)
        write_bytes_atomic(tmp / STATE_FILE, json.dumps(record, indent=1).encode())
        if final.exists():  # re-saving a step (e.g. after resume): move the old one out of the way
            old = ckdir / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(ckdir)
        write_bytes_atomic(ckdir / LATEST_FILE, name.encode())
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        _delete_dir(old)
    return final


def _delete_dir(path: Path) -> None:
    """Delete a checkpoint directory so that no kill leaves a half-deleted ``step_*`` behind: it
    is first renamed (atomically) to a ``.trash-*`` name that nothing lists, then removed; a
    leftover ``.trash-*`` is cleared by :func:`remove_stale_temp_dirs`."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def set_aside(run_dir: str | os.PathLike, from_step: int, label: str = "diverged") -> list[Path]:
    """Rename every checkpoint of ``step >= from_step`` to ``{label}-step_XXXXXXX`` (kept for
    inspection, but no longer listed, counted or resumed from) and point ``latest`` at the newest
    checkpoint left, or remove the pointer if none is left. Returns the new paths.

    Why: after a divergence at step ``s``, checkpoint ``step_s`` holds exactly the weights whose
    forward pass diverged; resuming from it, whatever the new settings, repeats the divergence.
    """
    ckdir = Path(run_dir) / CHECKPOINT_DIR
    moved = []
    for p in list_checkpoints(run_dir):
        if int(_NAME_RE.match(p.name).group(1)) < from_step:
            continue
        dest, n = ckdir / f"{label}-{p.name}", 1
        while dest.exists():
            n += 1
            dest = ckdir / f"{label}-{p.name}.{n}"
        os.replace(p, dest)
        moved.append(dest)
    if moved:
        left = list_checkpoints(run_dir)
        if left:
            write_bytes_atomic(ckdir / LATEST_FILE, left[-1].name.encode())
        else:
            (ckdir / LATEST_FILE).unlink(missing_ok=True)
        _fsync_dir(ckdir)
    return moved


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_dirs(run_dir: str | os.PathLike) -> int:
    """Delete half-written ``.tmp-*`` and half-deleted ``.old-*``/``.trash-*`` checkpoint dirs left
    by a killed process; return how many."""
    d = Path(run_dir) / CHECKPOINT_DIR
    stale = [p for pat in (".tmp-*", ".old-*", ".trash-*") for p in d.glob(pat) if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


# --- load -------------------------------------------------------------------------------------
def _advice(path: Path) -> str:
    return (
        f"Delete {path} to resume from the previous checkpoint, or start a new run (resume=False "
        "with a new run directory)."
    )


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and sanity-check ``state.json`` of checkpoint directory ``path``."""
    path = Path(path)
    sp = path / STATE_FILE
    try:
        state = json.loads(sp.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{sp} is missing, so {path} is not a complete checkpoint. {_advice(path)}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{sp} is not valid JSON ({e}); the file is truncated or overwritten. {_advice(path)}") from e
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or not isinstance(state.get("files"), dict):
        raise CheckpointError(f"{sp} lacks the 'step'/'files' entries of a jepalab checkpoint. {_advice(path)}")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{sp} has format {state.get('format')!r}; this jepalab reads format {FORMAT_VERSION}.")
    return state


def _read_verified(path: Path, fname: str, state: dict[str, Any]) -> bytes:
    fp = path / fname
    expect = state["files"].get(fname)
    try:
        data = fp.read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(f"{fp} is missing from the checkpoint. {_advice(path)}") from e
    if not isinstance(expect, dict):
        raise CheckpointError(f"{path / STATE_FILE} has no size/checksum entry for {fname}. {_advice(path)}")
    if len(data) != expect.get("bytes"):
        raise CheckpointError(
            f"{fp} is truncated or padded: {len(data)} bytes, expected {expect.get('bytes')}. {_advice(path)}"
        )
    if hashlib.sha256(data).hexdigest() != expect.get("sha256"):
        raise CheckpointError(f"{fp} is corrupt: its SHA-256 does not match state.json. {_advice(path)}")
    return data


def _load_tensors(path: Path, fname: str, data: bytes, device: torch.device | str) -> dict[str, Tensor]:
    from safetensors.torch import load

    try:
        return {k: v.to(device) for k, v in load(data).items()}
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"{path / fname} is not a readable safetensors file ({e}). {_advice(path)}") from e


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Verify checkpoint ``path`` and load it into ``model`` (and ``optimizer``); return the
    parsed ``state.json``. RNG states are returned, not applied (see :func:`restore_rng`)."""
    path = Path(path)
    state = read_state(path)
    weights = _load_tensors(path, MODEL_FILE, _read_verified(path, MODEL_FILE, state), device)
    try:
        _load_model_tensors(model, weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path / MODEL_FILE} does not fit this model ({str(e).splitlines()[0]} ...): build the model "
            "with the same config as the run that wrote the checkpoint."
        ) from e
    if optimizer is not None:
        opt_tensors = _load_tensors(path, OPTIMIZER_FILE, _read_verified(path, OPTIMIZER_FILE, state), device)
        try:
            _optimizer_from_flat(optimizer, opt_tensors, state["optimizer"])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(
                f"{path / OPTIMIZER_FILE} does not match this optimizer ({e}): the trainable parameters "
                "differ from the run that wrote it."
            ) from e
    return state
