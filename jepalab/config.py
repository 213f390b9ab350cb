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
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jepalab.atomic import write_text_atomic
from jepalab.errors import ConfigError
from jepalab.schema import config_error, convert, from_dict, join_key  # noqa: F401 - from_dict is re-exported

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
    from jepalab.data import get_source_class
    from jepalab.recipes import RECIPES, get_recipe
    from jepalab.train import TrainConfig

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
        from jepalab.data import SOURCES

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
    from jepalab.experiment import validate_experiment

    validate_experiment(exp)
    return exp


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
