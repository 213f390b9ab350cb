"""Environments behind one wrapper: ``make_env(name, img_size=64, seed=0) -> Env``.

Names: ``"bouncing"`` (our bouncing-ball world with actions; no extra package), ``"pusht"``
(``pip install gym-pusht``), ``"tworoom"`` (stable-worldmodel, optional extra), any gymnasium id
that renders ``rgb_array`` frames and has a bounded Box action space (e.g. ``"Pendulum-v1"``,
``"dm_control/reacher-easy-v0"`` through shimmy), a name given to :func:`register`, or a
``"module:function"`` reference to a factory of yours.

An env *factory* is ``factory(**env_kwargs) -> (raw_env, Adapter)``: the raw env speaks
gymnasium's ``reset``/``step``/``render`` API, the :class:`Adapter` says where its pixels, state
and success live and, for goal-reaching evaluation, how to restore a recorded state
(``reset_to``) and when a goal state is reached (``goal_success``). Recordings store the factory's
``module:function`` so ``plan`` and ``evaluate-planning`` rebuild the same env in a new process.
See :class:`jepalab.data.envs.base.Env` for the observation/action conventions.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from jepalab.data.envs.base import Adapter, Env, distance_success, resize_frame
from jepalab.errors import ConfigError

#: short names jepalab knows (anything else is tried as a registered name, module:function or gymnasium id).
ENVS = ("bouncing", "pusht", "tworoom")
Factory = Callable[..., tuple[Any, Adapter]]
_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory, overwrite: bool = False) -> None:
    """Make ``make_env(name, ...)`` (and ``jepalab collect name`` in this process) build your env:
    ``factory(**env_kwargs) -> (raw gymnasium-style env, Adapter)``.

    A recording made from a registered name also stores the factory's ``module:function`` (when
    it is importable: defined at module level, not in ``__main__``), so ``plan`` and
    ``evaluate-planning`` can rebuild the env in a process where ``register`` was never called.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"register: env name {name!r} must be a non-empty string without ':' "
                          "(':' marks a module:function reference).")
    if name in ENVS:
        raise ConfigError(f"register: '{name}' is a built-in env; choose another name.")
    if not callable(factory):
        raise ConfigError(f"register('{name}', ...): the factory must be callable, got {type(factory).__name__}.")
    if name in _REGISTRY and _REGISTRY[name] is not factory and not overwrite:
        raise ConfigError(f"env '{name}' is already registered to another factory; pass overwrite=True to replace it.")
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    """Names added with :func:`register` in this process."""
    return tuple(sorted(_REGISTRY))


def registered_factory(name: str) -> Factory | None:
    """The factory :func:`register` stored under ``name`` in this process, or ``None`` (worker
    processes receive it by value: they never ran the user's ``register`` call)."""
    return _REGISTRY.get(name)


def factory_reference(name: str) -> str | None:
    """``"module:function"`` that rebuilds env ``name`` in another process, or ``None`` when it
    needs no reference (built-in names, gymnasium ids) or has none (a factory defined in a
    function or in ``__main__``)."""
    if ":" in name and "-v" not in name.split(":", 1)[1]:
        return name
    factory = _REGISTRY.get(name)
    if factory is None:
        return None
    module, qual = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in qual:
        return None
    return f"{module}:{qual}"


def load_factory(ref: str) -> Factory:
    """The callable named by ``"module:function"`` (``function`` may be dotted: ``Class.method``).
    A module in the current directory is found even when it is not on ``sys.path``."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"env reference {ref!r}: write module:function, e.g. mypkg.envs:make_reacher.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise ConfigError(f"env '{ref}': cannot import module '{module_name}' ({e}); make it importable "
                              "(pip install your package, or set PYTHONPATH).") from e
        sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e2:
            raise ConfigError(f"env '{ref}': cannot import module '{module_name}' ({e2}); make it importable "
                              "(pip install your package, or set PYTHONPATH).") from e2
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"env '{ref}': '{module_name}' has no '{attr}'.{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"env '{ref}': {attr} is a {type(obj).__name__}, not a function returning (env, Adapter).")
    return obj


def _call_factory(name: str, factory: Factory, env_kwargs: dict[str, Any]) -> tuple[Any, Adapter]:
    out = factory(**env_kwargs)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Adapter)):
        got = type(out).__name__ if not isinstance(out, tuple) else f"a tuple of {len(out)}"
        raise ConfigError(f"env factory of '{name}' returned {got}; it must return (raw_env, Adapter) "
                          "(see docs/environments.md).")
    raw, adapter = out
    for attr in ("reset", "step"):
        if not callable(getattr(raw, attr, None)):
            raise ConfigError(f"env factory of '{name}' returned a {type(raw).__name__} without {attr}(); the raw env "
                              "must speak gymnasium's reset/step API.")
    return raw, adapter


def _is_reference(name: str) -> bool:
    """``module:function`` (a gymnasium id may also contain ':' as ``module:Name-v0``)."""
    return ":" in name and "-v" not in name.split(":", 1)[1]


def make_env(name: str, img_size: int = 64, seed: int | None = 0, frameskip: int = 1,
             frameskip_mode: str = "repeat", env_factory: str | None = None, **env_kwargs: Any) -> Env:
    """Build env ``name`` wrapped as an :class:`Env` (pixels resized to ``img_size``).

    ``env_kwargs`` go to the env's factory (for "bouncing": :class:`BouncingConfig` fields and
    ``max_steps``). ``env_factory`` (``"module:function"``) builds a name that is not registered
    in this process (recordings store it). A missing package raises ``MissingDependencyError``
    naming the pip command; an unknown name raises ``ConfigError``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"env name must be a non-empty string; got {name!r}. Known: {', '.join(ENVS)}.")
    from jepalab.data.envs import external
    from jepalab.data.envs.bouncing import make_bouncing

    try:
        if name == "bouncing":
            raw, adapter = make_bouncing(**env_kwargs)
        elif name == "pusht":
            raw, adapter = external.make_pusht(**env_kwargs)
        elif name == "tworoom":
            raw, adapter = external.make_tworoom(**env_kwargs)
        elif name in _REGISTRY:
            raw, adapter = _call_factory(name, _REGISTRY[name], env_kwargs)
        elif _is_reference(name) or env_factory:
            raw, adapter = _call_factory(name, load_factory(name if _is_reference(name) else env_factory), env_kwargs)
        elif "-v" in name or "/" in name:
            raw, adapter = external.make_gym(name, **env_kwargs)
        else:
            close = difflib.get_close_matches(name.lower(), ENVS + registered(), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown environment '{name}'. Use one of {', '.join(ENVS + registered())}, a "
                              f"gymnasium id such as 'Pendulum-v1', or module:function of your own env factory.{hint}")
    except TypeError as e:  # an option the constructor does not take (e.g. --env-arg nonsense=3)
        if not env_kwargs or "argument" not in str(e):
            raise
        raise ConfigError(f"env '{name}' does not accept the option(s) {', '.join(sorted(env_kwargs))} ({e}); fix or "
                          "drop the --env-arg.") from None
    return Env(raw, adapter, name, img_size=img_size, frameskip=frameskip, frameskip_mode=frameskip_mode,
               seed=seed)


def make_env_from_meta(meta: dict[str, Any], seed: int | None = 0, **overrides: Any) -> Env:
    """The env a recording was made in, from its ``meta.json`` dict (name, factory reference,
    constructor options, image size, frameskip); ``overrides`` replace constructor options."""
    return make_env(str(meta.get("env")), img_size=int(meta.get("img_size", 64)), seed=seed,
                    frameskip=int(meta.get("frameskip", 1)), frameskip_mode=meta.get("frameskip_mode", "repeat"),
                    env_factory=meta.get("env_factory"), **{**dict(meta.get("env_kwargs") or {}), **overrides})


def wrap_env(raw: Any, img_size: int = 64, seed: int | None = 0, frameskip: int = 1,
             frameskip_mode: str = "repeat", name: str = "custom") -> Env:
    """Wrap your own gymnasium env instance (created with ``render_mode="rgb_array"``, bounded Box
    actions) as an :class:`Env`, exactly as a gymnasium id given to :func:`make_env` would be."""
    from jepalab.data.envs.external import gym_adapter

    for attr in ("reset", "step", "action_space"):
        if not hasattr(raw, attr):
            raise ConfigError(f"wrap_env needs a gymnasium-style env with reset/step/action_space; "
                              f"{type(raw).__name__} has no '{attr}'.")
    return Env(raw, gym_adapter(raw, name), name, img_size=img_size, frameskip=frameskip,
               frameskip_mode=frameskip_mode, seed=seed)


__all__ = ["ENVS", "Adapter", "Env", "make_env", "make_env_from_meta", "wrap_env", "register", "registered",
           "registered_factory",
           "factory_reference", "load_factory", "resize_frame", "distance_success"]
