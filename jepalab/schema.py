"""The YAML -> dataclass converter under every jepalab config: strict types, named keys, hints.

Why on its own: every part of jepalab (encoders, sources, recipes, the trainer) describes its
settings as a plain dataclass, and each is validated the same way -- an unknown key names the
closest valid one, a wrong type names the key, the expected type and the value. This module knows
nothing about experiments, recipes or files, so anything may import it and it imports nothing of
jepalab's but its errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from jepalab.errors import ConfigError


def config_error(key: str, message: str) -> ConfigError:
    """A ConfigError that remembers the dotted ``key`` it is about (used to add file:line)."""
    err = ConfigError(message)
    err.key = key  # type: ignore[attr-defined]
    return err


def join_key(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def type_name(tp: Any) -> str:
    """Readable name of a type annotation, for error messages."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        kind = "list" if origin is list else "tuple"
        if not args:
            return kind
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"{kind} of {len(args)} ({', '.join(type_name(a) for a in args)})"
        return f"{kind} of {type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return f"mapping of {tp.__name__} fields"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it converted (lists->tuples, ...)."""
    origin, args = get_origin(tp), get_args(tp)

    def bad() -> ConfigError:
        return config_error(key, f"'{key}' must be {type_name(tp)}, got {value!r} ({type(value).__name__}).")

    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is not None:
            raise bad()
        return None
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise bad()
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, key)
            except ConfigError:
                continue
        raise bad()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, key)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad()
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise config_error(key, f"'{key}' must be a list of exactly {len(args)} values "
                                   f"({type_name(tp)}), got {len(value)}: {value!r}.")
            items = [convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        elif args:
            items = [convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            items = list(value)
        return list(items) if (origin is list or tp is list) else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad()
        vt = args[1] if len(args) == 2 else Any
        return {str(k): convert(vt, v, join_key(key, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise bad()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a YAML-loaded mapping, checking every key and type.

    Unknown key -> ConfigError naming ``where.key`` and the closest valid key; missing required
    field -> ConfigError naming it; wrong type -> ConfigError naming key, expected type and value.
    Errors from the dataclass's own ``__post_init__`` (ValueError/TypeError) become ConfigErrors.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    label = where or "the config"
    if not isinstance(data, Mapping):
        raise config_error(where, f"'{label}' must be a mapping of {cls.__name__} fields "
                           f"(key: value lines), got {data!r}.")
    try:
        hints = get_type_hints(cls)
    except Exception:  # unresolved forward references: fall back to the raw annotations
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = join_key(where, key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" Did you mean '{join_key(where, close[0])}'?" if close else ""
            raise config_error(full, f"Unknown key '{full}'.{hint} Valid keys in {label}: "
                               f"{', '.join(fields) or '(none)'}.")
        tp = hints.get(key, fields[key].type)
        if isinstance(tp, str):  # a programming error in the config class, not a user error
            raise TypeError(f"{cls.__name__}.{key}: cannot resolve the annotation {tp!r}; define "
                            "config dataclasses and the types they name at module level.")
        kwargs[key] = convert(tp, value, full)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            full = join_key(where, name)
            raise config_error(full, f"Missing required key '{full}' ({type_name(hints.get(name, f.type))}).")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise config_error(where, f"Invalid {label}: {e}") from e


__all__ = ["config_error", "join_key", "type_name", "convert", "from_dict"]
