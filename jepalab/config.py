"""Typed configs: YAML files and ``--set key=value`` overrides validated into dataclasses.

Why: a typo in a config should fail in the first second with a message that names the key and
the closest valid one, not after an hour of training with a silently ignored setting. Every part
of jepalab describes its hyper-parameters as a plain dataclass; ``jepalab.schema`` builds those
dataclasses from YAML-loaded dicts with strict type checking, and this module reads the files,
applies the overrides and assembles an ``Experiment``:

    name: tiny-ijepa          # run name (default: the file's stem)
    seed: 0                   # one seed fixes data, init and masks
    recipe: ijepa             # key of jepalab.recipes.RECIPES
    model: {...}              # fields of that recipe's config_class
    data: {source: digits, ...}   # key of jepalab.data.SOURCES + its config_class fields
    train: {steps: 200, ...}  # fields of jepalab.train.TrainConfig

Two values are filled in when the YAML leaves them out: ``data.seed`` (if the source has one)
from ``seed``, and ``model.total_steps`` (if the recipe has one, e.g. an EMA schedule) from
``train.steps``. The resolved experiment written to a run directory spells everything out.

Direction: this module sits above the parts it assembles (it looks sources up in
``jepalab.data``, recipes in ``jepalab.recipes``, reads ``TrainConfig``); those parts describe
themselves with ``jepalab.schema`` alone and never import this module back.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jepalab.atomic import write_text_atomic
from jepalab.data import SOURCES, get_source_class
from jepalab.errors import ConfigError, JepalabError
from jepalab.preflight import meta_model
from jepalab.recipes import RECIPES, get_recipe
from jepalab.schema import config_error, convert, from_dict, join_key  # noqa: F401 - from_dict is re-exported
from jepalab.train import TrainConfig

TOP_LEVEL_KEYS = ("name", "seed", "recipe", "model", "data", "train")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-safe structure of a config (dataclasses -> dicts, tuples -> lists)."""
    if isinstance(obj, Experiment):
        data = {"source": obj.source, **to_dict(obj.data)}
        return {"name": obj.name, "seed": obj.seed, "recipe": obj.recipe,
                "model": to_dict(obj.model), "data": data, "train": to_dict(obj.train)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- overrides ----------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``"train.lr=3e-4"`` into ``("train.lr", "3e-4")``; the value is read as YAML, so
    ``true``, ``[8, 8]``, ``null`` and numbers work as in a config file."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key=value, e.g. train.lr=3e-4 "
                          "or model.embed_dim=128.")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or not all(_KEY_RE.match(p) for p in parts):
        raise ConfigError(f"Override {text!r} has a malformed key '{key}': use dotted names "
                          "such as train.steps or model.predictor_depth.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"Override {text!r}: the value '{raw}' is not valid YAML ({e}).") from None
    return key, value


# An override that switches one of these keys to a new value starts that section afresh: the
# file's keys belong to the old recipe/source and would be unknown to the new one.
_SWITCHES = {"recipe": ("recipe", "model"), "data.source": ("data", "data")}


def apply_overrides(raw: dict, overrides: Iterable[str]) -> list[str]:
    """Set each ``key=value`` override into the nested dict ``raw`` (in place); returns the keys.
    Unknown keys are caught later, by ``from_dict``, with a suggestion. ``recipe=NEW`` or
    ``data.source=NEW`` (a different value) drops the file's ``model:`` or ``data:`` section, so
    the new recipe or source starts from its own defaults plus the other overrides."""
    overrides = list(overrides)
    parsed = [parse_override(text) for text in overrides]
    for key, value in parsed:
        if key in _SWITCHES:
            holder, section = _SWITCHES[key]
            node = raw.get(holder)
            old = (node.get("source") if isinstance(node, dict) else None) if key == "data.source" else node
            if value != old:
                raw[section] = {}
    keys = []
    for text, (key, value) in zip(overrides, parsed):
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise config_error(prefix, f"Override {text!r}: '{prefix}' is a value ({child!r}), "
                                   "not a section with sub-keys.")
            node = child
        node[parts[-1]] = value
        keys.append(key)
    return keys


# --- experiments --------------------------------------------------------------------------------
@dataclasses.dataclass
class Experiment:
    """One runnable experiment: which recipe, on which data, trained how, from which seed.

    ``model`` is the recipe's ``config_class`` instance, ``data`` the source's ``config_class``
    instance (``source`` names the source; in YAML it sits inside ``data:``), ``train`` a
    ``jepalab.train.TrainConfig``.
    """

    name: str
    seed: int
    recipe: str
    model: Any
    source: str
    data: Any
    train: Any


def experiment_from_dict(raw: Any, name: str | None = None) -> Experiment:
    """Validate a YAML-loaded experiment mapping into an ``Experiment`` (``name`` is the default
    run name when the mapping has none)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"An experiment config must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}; "
                          f"got {raw!r}.")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise config_error(str(key), f"Unknown top-level key '{key}'.{hint} Valid keys: "
                               f"{', '.join(TOP_LEVEL_KEYS)}.")
    if "recipe" not in raw:
        raise config_error("recipe", "Missing required key 'recipe' (one of: "
                           f"{', '.join(RECIPES)}).")
    recipe = convert(str, raw["recipe"], "recipe")
    try:
        recipe_cls = get_recipe(recipe)
    except ConfigError as e:
        raise config_error("recipe", str(e)) from None
    if name is None and "name" not in raw:
        raise config_error("name", "Missing required key 'name' (the run's name, e.g. name: tiny-ijepa).")
    exp_name = convert(str, raw.get("name", name), "name")
    seed = convert(int, raw.get("seed", 0), "seed")
    train = from_dict(TrainConfig, raw.get("train") or {}, "train")
    model_raw = raw.get("model") or {}
    model_fields = {f.name for f in dataclasses.fields(recipe_cls.config_class)}
    if isinstance(model_raw, Mapping) and "total_steps" in model_fields and "total_steps" not in model_raw:
        model_raw = {**model_raw, "total_steps": train.steps}  # EMA schedules span the whole run
    model = from_dict(recipe_cls.config_class, model_raw, "model")

    data = raw.get("data")
    if not isinstance(data, Mapping) or "source" not in data:
        raise config_error("data.source", "Missing 'data.source': the config needs 'data: {source: NAME, ...}' "
                           f"naming a data source (one of: {', '.join(SOURCES)}).")
    source = convert(str, data["source"], "data.source")
    try:
        source_cls = get_source_class(source)
    except ConfigError as e:
        raise config_error("data.source", str(e)) from None
    data_fields = {f.name for f in dataclasses.fields(source_cls.config_class)}
    rest = {k: v for k, v in data.items() if k != "source" or "source" in data_fields}
    if "seed" not in rest and "seed" in data_fields:
        rest["seed"] = seed  # one seed fixes data, init and masks unless data.seed is explicit
    data_cfg = from_dict(source_cls.config_class, rest, "data")
    exp = Experiment(name=exp_name, seed=seed, recipe=recipe, model=model, source=source,
                     data=data_cfg, train=train)
    validate_experiment(exp)
    return exp


# --- checks that span fields or sections ---------------------------------------------------------
# Each constraint is declared once. A single field's range or choices belong to its own dataclass
# (``__post_init__`` or ``validate()``, e.g. ``TrainConfig`` checks train.steps and train.lr > 0);
# what is declared here holds across dataclasses: size fields that must be positive, and pairs
# that must tile, wherever they appear, plus agreements between model and data.

#: integer fields that must be positive wherever they appear in model/train configs (data: 0 = native)
POSITIVE_INTS = ("img_size", "patch_size", "embed_dim", "num_heads", "num_frames", "tubelet", "in_chans")
#: learning rates above this only overflow the optimizer's float32 arithmetic or blow the weights up
MAX_LR = 1e6
#: (a, b) pairs where a must be a multiple of b inside the same config dataclass
DIVISIBLE = (("img_size", "patch_size"), ("embed_dim", "num_heads"), ("num_frames", "tubelet"))


def _nested(obj: Any, where: str) -> Iterable[tuple[str, Any]]:
    """Yield ``(dotted_path, dataclass_instance)`` for ``obj`` and every nested dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield where, obj
        for f in dataclasses.fields(obj):
            yield from _nested(getattr(obj, f.name), f"{where}.{f.name}")


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise config_error(key, message)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_experiment(exp: Experiment) -> None:
    """Checks that types cannot express: positive sizes, a patch grid that tiles the image, heads
    that divide the width, a finite learning rate, model and data agreeing on the image size, the
    channels and the clip length (model.num_frames = data.frames). Config classes with their own
    ``validate()`` method are asked too; their ValueErrors become ConfigErrors naming the section. Last, the recipe is built on the meta
    device, so every constructor check runs without allocating weights."""
    _require(bool(exp.name) and "/" not in exp.name and exp.name not in (".", ".."), "name",
             f"'name' must be a non-empty name without '/', got {exp.name!r}.")
    _require(0 <= exp.seed < 2**63, "seed", f"'seed' must be in [0, 2**63), got {exp.seed}.")
    for section in ("model", "data", "train"):
        for where, obj in _nested(getattr(exp, section), section):
            vals = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            for k in POSITIVE_INTS if section != "data" else ():
                v = vals.get(k)
                _require(not _is_num(v) or v > 0, f"{where}.{k}", f"'{where}.{k}' must be positive, got {v}.")
            for big, small in DIVISIBLE:
                a, b = vals.get(big), vals.get(small)
                if isinstance(a, int) and isinstance(b, int) and b > 0:
                    _require(a % b == 0, f"{where}.{small}",
                             f"'{where}.{big}'={a} must be divisible by '{where}.{small}'={b}.")
        cfg = getattr(exp, section)
        if callable(getattr(cfg, "validate", None)):
            try:
                cfg.validate()
            except ConfigError as e:
                raise config_error(section, f"{section}: {e}") from None
            except (ValueError, TypeError) as e:
                raise config_error(section, f"Invalid {section} config: {e}") from None
    lr = getattr(exp.train, "lr", None)
    if _is_num(lr):
        _require(math.isfinite(lr) and 0 < lr <= MAX_LR, "train.lr",
                 f"'train.lr' must be a finite number in (0, {MAX_LR:g}], got {lr} (typical: 1e-4 to 1e-2).")
    for mk, dk, what in (("img_size", "img_size", "images of the wrong size"),
                         ("in_chans", "channels", "the wrong number of channels"),
                         ("num_frames", "frames", "clips of the wrong length")):
        mv, dv = getattr(exp.model, mk, None), getattr(exp.data, dk, None)
        if _is_num(mv) and _is_num(dv) and dv > 0:  # data: 0 = the dataset's native value
            _require(mv == dv, f"data.{dk}", f"'data.{dk}'={dv} differs from 'model.{mk}'={mv}: the "
                     f"model would receive {what}; make them equal.")
    _check_history(exp)
    try:
        meta_model(get_recipe(exp.recipe), exp.model)  # every constructor check, without allocating
    except ConfigError as e:
        raise config_error(getattr(e, "key", "") or "model", f"model: {e}") from None
    except JepalabError as e:
        raise config_error("model", f"Invalid model config: {e}") from None


def _check_history(exp: Experiment) -> None:
    """A predictor over ``model.history`` frames must see clips with a full window plus the frame
    it predicts; shorter clips would train it on windows it never sees when planning."""
    hist, frames = getattr(exp.model, "history", None), getattr(exp.data, "frames", None)
    if not (_is_num(hist) and _is_num(frames)) or hist < 1 or frames < 1:
        return
    skip = getattr(exp.model, "frameskip", 1)
    blocked = hasattr(exp.data, "frameskip")  # the source itself keeps every f-th frame
    model_frames = frames if blocked or not _is_num(skip) or skip < 1 else (frames - 1) // skip + 1
    _require(model_frames >= hist + 1, "model.history",
             f"'model.history'={hist} needs clips of at least {hist + 1} model frames, but 'data.frames'={frames}"
             + ("" if model_frames == frames else f" with frameskip {skip} gives {model_frames}")
             + f": raise data.frames or lower model.history to {max(1, model_frames - 1)}.")


def _yaml_lines(text: str) -> dict[str, int]:
    """Map each dotted key in a YAML document to its 1-based line; reject duplicate keys (which
    PyYAML would otherwise resolve silently by keeping the last)."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                path = join_key(prefix, k.value)
                if k.value in seen:
                    raise config_error(path, f"line {k.start_mark.line + 1}: key '{path}' appears twice.")
                seen.add(k.value)
                lines[path] = k.start_mark.line + 1
                walk(v, path)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, "")
    return lines


def load_experiment(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Experiment:
    """Read an experiment YAML file, apply ``key=value`` overrides, validate everything.

    All problems are ConfigErrors that name the file and, where known, the line.
    """
    overrides = list(overrides)
    p = Path(path)
    if p.is_dir() and (p / "experiment.yaml").is_file():
        p = p / "experiment.yaml"
    if not p.is_file():
        raise ConfigError(f"Config file '{p}' does not exist (see configs/ for examples).")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}): save the "
                          "config as UTF-8 YAML (a run's experiment.yaml in this state is corrupt).") from None
    except OSError as e:
        raise ConfigError(f"Cannot read config file '{p}' ({e.strerror}); check that it is a readable file.") from None
    try:
        raw = yaml.safe_load(text)
        lines = _yaml_lines(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML: {e.problem or e.context}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}.") from None
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    if raw is None:
        raise ConfigError(f"{p} is empty; an experiment needs at least 'recipe' and 'data: {{source: ...}}'.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping (key: value lines), got {type(raw).__name__}.")
    override_keys = apply_overrides(raw, overrides)
    try:
        return experiment_from_dict(raw, name=p.stem)
    except ConfigError as e:
        key = getattr(e, "key", "")
        for ok, text in zip(override_keys, overrides):
            if key and (ok == key or ok.startswith(key + ".") or key.startswith(ok + ".")):
                raise config_error(key, f"{e} (from override '{text}')") from None
        parts = key.split(".") if key else []
        while parts and ".".join(parts) not in lines:
            parts.pop()
        loc = f"{p}:{lines['.'.join(parts)]}" if parts else str(p)
        raise config_error(key, f"{loc}: {e}") from None


def save_experiment(exp: Experiment, path: str | os.PathLike) -> Path:
    """Write the fully resolved experiment (every default spelled out) as YAML, atomically."""
    p = Path(path)
    write_text_atomic(p, yaml.safe_dump(to_dict(exp), sort_keys=False, default_flow_style=None))
    return p
