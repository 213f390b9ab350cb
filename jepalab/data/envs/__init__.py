"""Environments behind one wrapper: ``make_env(name, img_size=64, seed=0) -> Env``.

Names: ``"bouncing"`` (our bouncing-ball world with actions; no extra package), ``"pusht"``
(``pip install gym-pusht``), ``"tworoom"`` (stable-worldmodel, optional extra), or any gymnasium id
that renders ``rgb_array`` frames and has a bounded Box action space (e.g. ``"Pendulum-v1"``).
See :class:`jepalab.data.envs.base.Env` for the observation/action conventions.
"""

from __future__ import annotations

import difflib
from typing import Any

from jepalab.data.envs.base import Adapter, Env, resize_frame
from jepalab.errors import ConfigError

#: short names jepalab knows (anything else is tried as a gymnasium id).
ENVS = ("bouncing", "pusht", "tworoom")


def _make_bouncing(**kwargs: Any) -> tuple[Any, Adapter]:
    import numpy as np

    from jepalab.data.bouncing import BouncingConfig
    from jepalab.data.envs.bouncing import BouncingEnv

    max_steps = int(kwargs.pop("max_steps", 100))
    cfg = BouncingConfig(**{"variant": "actions", "channels": 3, **kwargs})
    if cfg.variant != "actions":
        raise ConfigError("the 'bouncing' env is the actions variant; drop the 'variant' option.")
    raw = BouncingEnv(cfg, max_steps=max_steps)
    k = cfg.num_balls
    adapter = Adapter(pixels=lambda env, obs: env.render(),
                      proprio=lambda env, obs, info: np.asarray(obs[: 2 * k], np.float32),
                      state=lambda env, obs, info: np.asarray(obs, np.float32),
                      success=lambda info: bool(info.get("is_success", False)),
                      low=-np.ones(2), high=np.ones(2), max_steps=max_steps, goal=lambda env, info: env.goal_view(),
                      reset_to=lambda env, state, goal: env.set_state(state, goal))
    return raw, adapter


def make_env(name: str, img_size: int = 64, seed: int | None = 0, frameskip: int = 1,
             frameskip_mode: str = "repeat", **env_kwargs: Any) -> Env:
    """Build env ``name`` wrapped as an :class:`Env` (pixels resized to ``img_size``).

    ``env_kwargs`` go to the raw env (for "bouncing": :class:`BouncingConfig` fields and
    ``max_steps``). A missing package raises ``MissingDependencyError`` naming the pip command;
    an unknown name raises ``ConfigError``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"env name must be a non-empty string; got {name!r}. Known: {', '.join(ENVS)}.")
    from jepalab.data.envs import external

    if name == "bouncing":
        raw, adapter = _make_bouncing(**env_kwargs)
    elif name == "pusht":
        raw, adapter = external.make_pusht(**env_kwargs)
    elif name == "tworoom":
        raw, adapter = external.make_tworoom(**env_kwargs)
    elif "-v" in name or "/" in name:
        raw, adapter = external.make_gym(name, **env_kwargs)
    else:
        close = difflib.get_close_matches(name.lower(), ENVS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown environment '{name}'. Use one of {', '.join(ENVS)} or a gymnasium id "
                          f"such as 'Pendulum-v1'.{hint}")
    return Env(raw, adapter, name, img_size=img_size, frameskip=frameskip, frameskip_mode=frameskip_mode,
               seed=seed)


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


__all__ = ["ENVS", "Adapter", "Env", "make_env", "wrap_env", "resize_frame"]
