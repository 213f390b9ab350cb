"""Recording episodes of an environment into a trajectory directory, serially or in parallel.

Why parallel: stepping and rendering a real environment costs milliseconds per frame (dm_control
renders through OpenGL, Push-T through pygame), so one core limits a dataset of thousands of
episodes. ``workers=N`` runs N copies of the env in worker processes through
``gymnasium.vector.AsyncVectorEnv`` (each copy a :class:`~jepalab.data.envs.gym_view.GymEnv`,
in a freshly spawned interpreter, which costs a few seconds of start-up per worker), and the
policies in this process. Episode ``i`` is still recorded with env seed
``episode_seed(seed, i)`` and its own policy, and each copy runs the very same wrapper code, so
the directory holds the same arrays as a serial run; only the order in which files appear differs.

See :mod:`jepalab.data.trajectories` for the on-disk format.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepalab.data.trajectories import (FORMAT, IDENTITY_KEYS, VERSION, episode_seed, list_episodes, read_meta,
                                       save_episode, write_meta)
from jepalab.errors import ConfigError, MissingDependencyError

#: how the policy's generator is seeded (``policies.policy_rng``: a stream apart from the env's)
POLICY_RNG = "independent"


def _to_episode(frames: list, proprio: list, state: list, actions: list, rewards: list, success: list,
                action_dim: int) -> dict[str, np.ndarray]:
    pix = torch.stack([torch.as_tensor(np.asarray(f)) for f in frames])  # (T, C, H, W) float in [0, 1]
    return {
        "frames": (pix.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy(),
        "actions": np.stack(actions).astype(np.float32) if actions else np.zeros((0, action_dim), np.float32),
        "proprio": np.stack([np.asarray(p, np.float32) for p in proprio]),
        "state": np.stack([np.asarray(s, np.float32) for s in state]),
        "rewards": np.asarray(rewards, np.float32), "success": np.asarray(success, bool),
    }


def record_episode(env: Any, policy: Any, seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """Run one episode of ``policy`` in a jepalab ``Env``; arrays as in the on-disk format. The
    env is reset with ``seed``; the policy gets the same number and draws from its own stream
    (``policies.policy_rng``), so its noise does not repeat the env's reset draws."""
    obs = env.reset(seed=seed)
    policy.reset(env, seed)
    info = env.last_info
    frames, proprio, state = [obs["pixels"]], [obs["proprio"]], [obs["state"]]
    actions, rewards, success = [], [], []
    for _ in range(max_steps):
        a = np.clip(np.asarray(policy.act(obs, info), np.float32).reshape(-1), -1.0, 1.0)
        obs, reward, done, info = env.step(a)
        frames.append(obs["pixels"])
        proprio.append(obs["proprio"])
        state.append(obs["state"])
        actions.append(a)
        rewards.append(reward)
        success.append(env.success(info))
        if done:
            break
    return _to_episode(frames, proprio, state, actions, rewards, success, env.action_dim)


def _worker_env(spec: dict[str, Any], factory: Any = None) -> Any:
    """Build the env of ``spec`` in a worker process (one torch thread: frames are tiny).
    ``factory``: the registered factory of ``spec["name"]``, registered again here (workers are
    fresh interpreters that never ran the user's ``register`` call)."""
    from jepalab.data.envs import make_env, register

    torch.set_num_threads(1)
    if factory is not None:
        register(spec["name"], factory, overwrite=True)
    return make_env(**spec)


def _unbatch(info: dict[str, Any], j: int) -> dict[str, Any]:
    """Copy ``j``'s entries of a gymnasium.vector info dict (values batched, ``_key`` masks)."""
    out = {}
    for k, v in info.items():
        if k.startswith("_"):
            continue
        mask = info.get(f"_{k}")
        if mask is not None and not bool(mask[j]):
            continue
        out[k] = _unbatch(v, j) if isinstance(v, dict) else v[j]
    return out


def _record_parallel(spec: dict[str, Any], env: Any, policy: str, policy_kwargs: dict[str, Any], todo: list[int],
                     seed: int, steps: int, workers: int, on_episode: Any) -> None:
    """Record episodes ``todo`` with ``workers`` env copies in worker processes; ``on_episode(i, ep)``
    is called as each finishes. ``env`` (this process) only gives the policies the action bounds."""
    try:
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode
    except ImportError as e:
        raise MissingDependencyError(f"collect --workers needs gymnasium ({e}); pip install gymnasium, or use "
                                     "--workers 1.") from e
    from jepalab.data.envs.gym_view import GymEnv
    from jepalab.data.policies import make_policy

    from jepalab.data.envs import registered_factory

    n = min(workers, len(todo))
    make = functools.partial(_worker_env, spec, registered_factory(spec["name"]))
    # "spawn": fresh workers. Forked ones inherit the locks of this process's threads (MuJoCo,
    # OpenMP) and can hang on the first render; a factory travels by cloudpickle.
    venv = AsyncVectorEnv([functools.partial(GymEnv, make) for _ in range(n)], context="spawn",
                          autoreset_mode=AutoresetMode.DISABLED)
    queue, slots = list(todo), [None] * n
    obs_b: dict[str, np.ndarray] = {}
    info_b: dict[str, Any] = {}

    def start(free: list[int]) -> None:
        nonlocal obs_b, info_b
        seeds, mask = [None] * n, np.zeros(n, bool)
        for j in free:
            i = queue.pop(0)
            seeds[j], mask[j] = episode_seed(seed, i), True
            slots[j] = {"index": i, "policy": make_policy(policy, spec["name"], **policy_kwargs), "frames": [],
                        "proprio": [], "state": [], "actions": [], "rewards": [], "success": []}
        obs_b, info_b = venv.reset(seed=seeds, options={"reset_mask": mask})
        for j in free:
            slots[j]["policy"].reset(env, seeds[j])
            _append(slots[j], {k: v[j] for k, v in obs_b.items()})
            slots[j]["info"] = _unbatch(info_b, j)

    def _append(slot: dict[str, Any], obs: dict[str, np.ndarray]) -> None:
        slot["obs"] = obs
        for k in ("pixels", "proprio", "state"):
            slot["frames" if k == "pixels" else k].append(obs[k])

    try:
        start([j for j in range(n) if queue])
        while any(s is not None for s in slots):
            actions = np.full((n, env.action_dim), np.nan, np.float32)
            for j, slot in enumerate(slots):
                if slot is not None:
                    actions[j] = np.clip(np.asarray(slot["policy"].act(slot["obs"], slot["info"]), np.float32)
                                         .reshape(-1), -1.0, 1.0)
            obs_b, rewards, terminated, truncated, info_b = venv.step(actions)
            free = []
            for j, slot in enumerate(slots):
                if slot is None:
                    continue
                _append(slot, {k: v[j] for k, v in obs_b.items()})
                slot["info"] = _unbatch(info_b, j)
                slot["actions"].append(actions[j].copy())
                slot["rewards"].append(float(rewards[j]))
                slot["success"].append(bool(slot["info"].get("is_success", False)))
                if terminated[j] or truncated[j] or len(slot["actions"]) >= steps:
                    on_episode(slot["index"], _to_episode(slot["frames"], slot["proprio"], slot["state"],
                                                          slot["actions"], slot["rewards"], slot["success"],
                                                          env.action_dim))
                    slots[j] = None
                    free.append(j)
            if free and queue:
                start(free[:len(queue)])
    finally:
        venv.close()


def collect(env_name: str, out_dir: str | os.PathLike, episodes: int, policy: str = "random",
            img_size: int = 64, max_steps: int | None = None, seed: int = 0, frameskip: int = 1,
            frameskip_mode: str = "repeat", env_kwargs: dict[str, Any] | None = None,
            policy_kwargs: dict[str, Any] | None = None, progress: bool = True, workers: int = 1) -> dict[str, Any]:
    """Record episodes ``0 .. episodes-1`` into ``out_dir``, skipping those already complete.

    Rerunning with the same settings resumes (or extends, with a larger ``episodes``); different
    settings for an existing directory raise ``ConfigError``. ``workers > 1`` steps that many env
    copies in worker processes (``gymnasium.vector``); the episodes are the same as with 1.
    ``env_name`` may be a registered name or ``module:function`` (see :func:`jepalab.data.envs.make_env`);
    the meta records the factory reference that rebuilds it. Returns the final meta dict.
    """
    from jepalab.data.envs import factory_reference, make_env
    from jepalab.data.policies import make_policy

    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes={episodes!r}: record at least 1 episode.")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigError(f"max_steps={max_steps!r}: use an int >= 1 (steps per episode).")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r}: use an int >= 1 (1 = record in this process).")
    env_kwargs, policy_kwargs = dict(env_kwargs or {}), dict(policy_kwargs or {})
    pol = make_policy(policy, env_name, **policy_kwargs)  # bad policy options fail before any env starts
    factory = factory_reference(env_name) if isinstance(env_name, str) else None
    spec = {"name": env_name, "img_size": img_size, "seed": seed, "frameskip": frameskip,
            "frameskip_mode": frameskip_mode, **({"env_factory": factory} if factory else {}), **env_kwargs}
    env = make_env(**spec)
    root = Path(out_dir)
    try:
        steps = int(max_steps or env.max_steps)
        meta = {"format": FORMAT, "version": VERSION, "env": env_name, "env_kwargs": env_kwargs,
                "env_factory": factory, "img_size": img_size, "action_dim": env.action_dim, "frameskip": frameskip,
                "frameskip_mode": frameskip_mode, "policy": policy, "policy_kwargs": policy_kwargs,
                "policy_rng": POLICY_RNG, "seed": seed, "max_steps": steps}
        if (root / "meta.json").is_file():
            old = read_meta(root)
            if old.get("policy_rng") != POLICY_RNG:
                raise ConfigError(f"{root} was recorded by an older jepalab whose random policies shared the env's "
                                  "seed; resuming would mix two kinds of episodes. Use another --out directory.")
            diff = [k for k in IDENTITY_KEYS if old.get(k) != meta[k]]
            if diff:
                raise ConfigError(f"{root} already holds episodes recorded with other settings "
                                  f"({', '.join(f'{k}: {old.get(k)!r} != {meta[k]!r}' for k in diff)}); "
                                  "use another --out directory or the same settings to resume.")
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        done = set(list_episodes(root))
        todo = [i for i in range(episodes) if i not in done]
        meta["episodes"] = len(done)
        write_meta(root, meta)
        bar, threads = None, torch.get_num_threads()
        torch.set_num_threads(1)  # per-frame tensors are tiny: extra intra-op threads only add wake-up latency
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=episodes, initial=episodes - len(todo), desc=f"collect {env_name}", unit="ep")

        def finished(i: int, ep: dict[str, np.ndarray]) -> None:
            save_episode(root, i, ep)
            done.add(i)
            meta.update(episodes=len(done), channels=int(ep["frames"].shape[-1]),
                        proprio_dim=int(ep["proprio"].shape[1]), state_dim=int(ep["state"].shape[1]))
            write_meta(root, meta)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=f"{bool(ep['success'].any())}", T=ep["frames"].shape[0])

        try:
            if workers > 1 and len(todo) > 1:
                _record_parallel(spec, env, policy, policy_kwargs, todo, seed, steps, workers, finished)
            else:
                for i in todo:
                    finished(i, record_episode(env, pol, episode_seed(seed, i), steps))
        finally:
            if bar is not None:
                bar.close()
            torch.set_num_threads(threads)
    finally:
        env.close()
    return meta


__all__ = ["collect", "record_episode", "POLICY_RNG"]
