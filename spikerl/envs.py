"""Environment construction, validation and exact state capture for checkpoints."""
from __future__ import annotations

import json
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

SUPPORTED_FAMILIES = ("HalfCheetah", "Hopper", "Walker2d", "Ant")


class EnvError(ValueError):
    """An env id that is unknown or unusable for this harness."""


def check_env_id(env_id: str) -> None:
    """Raise EnvError with a one-line reason if env_id is not a registered continuous-control env."""
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}")
    if env_id not in gym.registry:
        family = env_id.split("-")[0]
        hint = f"; known versions: {', '.join(k for k in gym.registry if k.split('-')[0] == family)}" \
            if any(k.split("-")[0] == family for k in gym.registry) else \
            f"; try one of {', '.join(f + '-v4' for f in SUPPORTED_FAMILIES)}"
        raise EnvError(f"unknown env {env_id!r}{hint}")


_MUJOCO_WARNINGS_ROUTED = False


def _route_mujoco_warnings() -> None:
    """MuJoCo 4 prints a deprecation warning about the v4/v5 model files on every make and
    appends it to MUJOCO_LOG.TXT in the working directory; route it to Python's logging once."""
    global _MUJOCO_WARNINGS_ROUTED
    if _MUJOCO_WARNINGS_ROUTED:
        return
    try:
        import logging

        import mujoco

        log = logging.getLogger("spikerl.mujoco")
        mujoco.set_mju_user_warning(lambda msg: log.debug("MuJoCo: %s", msg))
    except (ImportError, AttributeError):
        pass
    _MUJOCO_WARNINGS_ROUTED = True


def make_env(env_id: str, max_ep_len: int | None = None) -> gym.Env:
    check_env_id(env_id)
    _route_mujoco_warnings()
    kwargs: dict[str, Any] = {}
    if max_ep_len is not None:
        kwargs["max_episode_steps"] = int(max_ep_len)
    with warnings.catch_warnings():
        # v4 ids are the paper's; gymnasium 1.x warns that v5 exists on every make.
        warnings.simplefilter("ignore")
        env = gym.make(env_id, **kwargs)
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise EnvError(f"{env_id} has a {type(space).__name__} action space; TD3 needs a continuous Box")
    if not (np.allclose(space.low, -space.high) and np.allclose(space.high, space.high.flat[0])):
        raise EnvError(f"{env_id}: action bounds must be symmetric and equal in every dimension")
    return env


def check_checkpointable(env: gym.Env, env_id: str) -> None:
    """EnvError unless `capture_env_state` can save the env exactly: a MuJoCo env. Other envs
    keep their state in attributes of their own (Box2D worlds cannot be saved at all), so a
    resume could not continue them bit for bit; they are refused before a run starts rather
    than failing at its first checkpoint."""
    base = env.unwrapped
    if not (hasattr(base, "model") and hasattr(base, "data")):
        raise EnvError(f"{env_id} is not a MuJoCo env; runs are checkpointed and resumed exactly, which this "
                       f"harness can do for MuJoCo envs only (e.g. {', '.join(f + '-v4' for f in SUPPORTED_FAMILIES)})")


def act_limit_of(env: gym.Env) -> float:
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise EnvError(f"{env.spec.id if env.spec else env} has a {type(space).__name__} action space, not a Box")
    return float(space.high.flat[0])


def space_dim(space: gym.Space) -> int:
    """The flat size of an observation or action space (a Box's)."""
    if space.shape is None:
        raise EnvError(f"a {type(space).__name__} space has no shape")
    return int(np.prod(space.shape))


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.TimeLimit):
            return e
        e = e.env
    return None


def _json_tensor(obj: Any) -> torch.Tensor:
    return torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).clone()


def _from_json_tensor(t: torch.Tensor) -> Any:
    return json.loads(bytes(t.tolist()).decode())


def capture_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue an episode bit for bit: MuJoCo's full integration state
    (qpos, qvel, act, warm-start accelerations, time), the env's RNG, the action space's RNG
    and the time-limit counter. qpos/qvel alone would not do: the solver warm start changes
    the next step's result in the last bits."""
    import mujoco

    base: Any = env.unwrapped  # a MuJoCo env (check_checkpointable): model and data are its own attributes
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
    mujoco.mj_getState(base.model, base.data, physics, spec)
    tl = _time_limit(env)
    return {
        "physics": torch.from_numpy(physics),
        "np_random": _json_tensor(base.np_random.bit_generator.state),
        "action_space_rng": _json_tensor(env.action_space.np_random.bit_generator.state),
        "elapsed_steps": -1 if tl is None or tl._elapsed_steps is None else int(tl._elapsed_steps),
    }


def restore_env_state(env: gym.Env, state: dict[str, Any], seed: int) -> None:
    import mujoco

    env.reset(seed=seed)  # builds the wrappers' bookkeeping; everything below overwrites it
    base: Any = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(base.model, base.data, state["physics"].numpy().copy(), spec)
    base.np_random.bit_generator.state = _from_json_tensor(state["np_random"])
    env.action_space.np_random.bit_generator.state = _from_json_tensor(state["action_space_rng"])
    tl = _time_limit(env)
    if tl is not None and state["elapsed_steps"] >= 0:
        tl._elapsed_steps = int(state["elapsed_steps"])  # type: ignore[assignment]  # gymnasium types it None
