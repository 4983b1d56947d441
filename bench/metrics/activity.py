"""Spike activity of a trained actor and its estimated inference energy on neuromorphic hardware
(DESIGN §5.6).

Measured off the hot path: given an actor and normalised observations, `trace_actor` recomputes
every layer's spikes with the pure-torch functions of `spikerl` (the population encoder,
`spikerl.lif.popsan_lif_trace`, `spikerl.lif.dsrl_lif_trace`) from the actor's own weights, and
returns the actions they give (a test checks that they are the actor's actions, exactly). The
actor's own forward (native kernels or torch) is never touched.

Counts per action (one forward = T timesteps), actor only (critics are training-time only):
- SynOps (accumulates, AC): for every spiking layer's output and every timestep, its spikes times
  the fan-out of the synapses they drive. PopSAN/SpikeRL: the encoder's spikes drive hidden layer
  1, hidden 1 drives hidden 2, hidden 2 drives the output population. DSRL: hidden 1 drives
  hidden 2, hidden 2 drives the non-spiking output integrator.
- MACs: operations on real-valued inputs. PopSAN: one Gaussian receptive field per encoder neuron
  (obs_dim·pop_dim; the exponential is not counted) and the decoder's weighted sum of the output
  rates (act_dim·pop_dim). DSRL: the analog first layer, 2·obs_dim × hidden 1, once per action
  (its current is the same at every timestep). MLP: every Linear layer, fan-in × fan-out.
  Biases, neuron state updates and the final tanh are not counted (as in the SNN literature).
- Firing rate of a layer = spikes / (neurons × T); `spike_rate` = all spikes of all spiking
  layers (encoder included) / all their neuron-timesteps.
- E_inference ≈ AC × 0.9 pJ + MAC × 4.6 pJ: 32-bit floating point at 45 nm (Horowitz, ISSCC 2014),
  the constants SNN papers use. An ESTIMATE of a neuromorphic chip, not a measurement.

`measure_checkpoint` runs this at the end of a run on evaluation episodes of the final actor
(the run's last checkpoint): it plays `episodes` deterministic episodes with the actor's own
forward on the evaluation seeds, then traces every observation it saw in one batch, in fp32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np
import torch
import torch.nn as nn

if TYPE_CHECKING:  # the actors are imported where traced, so that reading results never loads them
    from baselines.dsrl import DSRLActor
    from spikerl.lif import PopSANLIFLayer
    from spikerl.popspike_actor import PopSpikingActor

AC_ENERGY_J = 0.9e-12
"""One 32-bit floating-point add at 45 nm (Horowitz, ISSCC 2014)."""
MAC_ENERGY_J = 4.6e-12
"""One 32-bit floating-point multiply (3.7 pJ) plus add (0.9 pJ) at 45 nm (Horowitz, ISSCC 2014)."""
ENERGY_MODEL = ("estimate: AC × 0.9 pJ + MAC × 4.6 pJ (32-bit float, 45 nm; Horowitz, ISSCC 2014)")
ACTIVITY_EPISODES = 2
"""Evaluation episodes traced at the end of a run."""
MAX_ACTIONS = 2000
"""At most this many actions are traced (a long episode is cut short here)."""


@dataclass(frozen=True)
class LayerActivity:
    """One layer of an actor, per action (averaged over the traced actions)."""

    name: str
    kind: str
    """'spiking' (its neurons spike), 'analog' (real-valued, no spikes) or 'readout'."""
    neurons: int
    timesteps: int
    spikes_per_action: float | None
    """None for a layer that does not spike."""
    rate: float | None
    """spikes / (neurons × timesteps); None for a layer that does not spike."""
    fan_out: int
    """Synapses each of its outputs drives (0 for the last layer)."""
    synops_per_action: float
    """AC its spikes cause downstream."""
    macs_per_action: float
    """MAC this layer's real-valued computation costs."""


@dataclass(frozen=True)
class Activity:
    layers: list[LayerActivity]
    actions: int
    """How many actions were traced."""
    timesteps: int
    episodes: int = 0
    note: str = ""
    actions_out: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """The actions the traced spikes give (for the reproduction test)."""

    @property
    def synops_per_action(self) -> float | None:
        if not any(layer.kind == "spiking" for layer in self.layers):
            return None
        return float(sum(layer.synops_per_action for layer in self.layers))

    @property
    def macs_per_action(self) -> float:
        return float(sum(layer.macs_per_action for layer in self.layers))

    @property
    def spike_rate(self) -> float | None:
        spiking = [layer for layer in self.layers if layer.kind == "spiking"]
        slots = sum(layer.neurons * layer.timesteps for layer in spiking)
        if not slots:
            return None
        return float(sum(layer.spikes_per_action or 0.0 for layer in spiking) / slots)

    @property
    def inference_energy_j_per_action_est(self) -> float:
        return (self.synops_per_action or 0.0) * AC_ENERGY_J + self.macs_per_action * MAC_ENERGY_J

    def result_fields(self) -> dict[str, Any]:
        """The summary columns (bench.schema.ACTIVITY_FIELDS) and result.json's per-layer detail."""
        return {
            "spike_rate": self.spike_rate,
            "synops_per_action": self.synops_per_action,
            "macs_per_action": self.macs_per_action,
            "inference_energy_j_per_action_est": self.inference_energy_j_per_action_est,
            "activity": {
                "layers": [asdict(layer) for layer in self.layers],
                "actions": self.actions, "episodes": self.episodes, "timesteps": self.timesteps,
                "energy_model": ENERGY_MODEL, "ac_energy_j": AC_ENERGY_J, "mac_energy_j": MAC_ENERGY_J,
                "note": self.note,
            },
        }


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _trace_popsan(actor: PopSpikingActor, obs_norm: torch.Tensor) -> Activity:
    from spikerl.lif import popsan_lif_trace

    enc, dec, T = actor.encoder, actor.decoder, actor.timesteps
    B = obs_norm.shape[0]
    x = enc(obs_norm)  # pure torch under no_grad: regular or Poisson spikes [T, B, N]
    spikes = [x]
    fcs = [cast("PopSANLIFLayer", layer).fc for layer in actor.layers]  # (a ModuleList yields plain Modules)
    for fc in fcs:
        i = fc(x.reshape(T * B, x.shape[-1])).view(T, B, -1)
        x = popsan_lif_trace(i).o
        spikes.append(x)
    actions = dec(x)
    names = ["encoder", *[f"hidden {k + 1}" for k in range(len(fcs) - 1)], "output"]
    fan_outs = [fc.out_features for fc in fcs] + [0]
    layers = []
    for k, (name, s, fan_out) in enumerate(zip(names, spikes, fan_outs, strict=True)):
        n = float(s.sum()) / B
        macs = 0.0
        if k == 0:
            macs = float(enc.obs_dim * enc.pop_dim)  # one receptive field per encoder neuron
        elif k == len(spikes) - 1:
            macs = float(dec.act_dim * dec.pop_dim)  # the decoder's weighted sum of output rates
        layers.append(LayerActivity(name, "spiking", int(s.shape[-1]), T, n, n / (s.shape[-1] * T),
                                    fan_out, n * fan_out, macs))
    return Activity(layers, B, T, actions_out=actions)


@torch.no_grad()
def _trace_dsrl(actor: DSRLActor, obs_norm: torch.Tensor) -> Activity:
    from baselines.dsrl import sign_split
    from spikerl.lif import dsrl_lif_trace

    T, theta = actor.timesteps, actor.threshold
    B = obs_norm.shape[0]
    s0 = dsrl_lif_trace(actor.fc0(sign_split(obs_norm)), theta, T).s
    i1 = actor.fc1(s0.reshape(T * B, -1)).view(T, B, -1)
    s1 = dsrl_lif_trace(i1, theta).s
    u = actor.fc2(s1.reshape(T * B, -1)).view(T, B, -1).sum(0)
    actions = actor.act_limit * torch.tanh(u)
    n_in = actor.fc0.in_features
    layers = [LayerActivity("input (analog, sign split)", "analog", n_in, T, None, None, actor.fc0.out_features,
                            0.0, float(n_in * actor.fc0.out_features))]
    for name, s, fan_out in (("hidden 1", s0, actor.fc1.out_features), ("hidden 2", s1, actor.fc2.out_features)):
        n = float(s.sum()) / B
        layers.append(LayerActivity(name, "spiking", int(s.shape[-1]), T, n, n / (s.shape[-1] * T), fan_out,
                                    n * fan_out, 0.0))
    layers.append(LayerActivity("output (integrator)", "readout", actor.fc2.out_features, T, None, None, 0, 0.0, 0.0))
    return Activity(layers, B, T, actions_out=actions)


@torch.no_grad()
def _trace_dense(actor: nn.Module, obs_norm: torch.Tensor) -> Activity:
    """A non-spiking actor: MACs of its Linear layers (fan-in × fan-out each)."""
    layers = [LayerActivity(f"linear {k + 1}", "analog", fc.in_features, 1, None, None, fc.out_features, 0.0,
                            float(fc.in_features * fc.out_features)) for k, fc in enumerate(_linears(actor))]
    return Activity(layers, obs_norm.shape[0], 1, actions_out=actor(obs_norm))


def trace_actor(actor: nn.Module, obs_norm: torch.Tensor) -> Activity | None:
    """The activity of `actor` on normalised observations [B, obs_dim] (fp32), or None for an actor
    this module does not know (a plug-in method with spiking layers of its own)."""
    from baselines.dsrl import DSRLActor
    from baselines.mlp import MLPActor
    from spikerl.popspike_actor import PopSpikingActor

    obs_norm = obs_norm.float()
    if isinstance(actor, PopSpikingActor):
        return _trace_popsan(actor, obs_norm)
    if isinstance(actor, DSRLActor):
        return _trace_dsrl(actor, obs_norm)
    if isinstance(actor, MLPActor):
        return _trace_dense(actor, obs_norm)
    return None


def _final_checkpoint(folder: Path) -> Path | None:
    from spikerl.checkpoint import CHECKPOINT_NAME, checkpoint_steps

    if (folder / CHECKPOINT_NAME).is_file():
        return folder / CHECKPOINT_NAME
    steps = checkpoint_steps(folder, 0, 2)  # data parallel: rank 0's latest file (ranks hold equal weights)
    return folder / f"checkpoint.step{max(steps)}.rank0.pt" if steps else None


@torch.no_grad()
def measure_checkpoint(folder: Path, spec: Any, env_id: str, seed: int, td3: Any, actor_params: dict[str, Any],
                       episodes: int = ACTIVITY_EPISODES, max_actions: int = MAX_ACTIONS) -> Activity | None:
    """Trace the final actor of a finished run on `episodes` evaluation episodes (CPU, fp32).

    Returns None when the run left no checkpoint or its actor is not one this module knows."""
    from spikerl.checkpoint import load_checkpoint
    from spikerl.envs import act_limit_of, make_env
    from spikerl.evaluation import eval_episode_seeds
    from spikerl.loop import build_agent

    path = _final_checkpoint(Path(folder))
    if path is None:
        return None
    state = load_checkpoint(path)
    env = make_env(env_id, td3.max_ep_len)
    try:
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
        assert obs_shape is not None and act_shape is not None, f"{env_id}: observation and action spaces need a shape"
        obs_dim, act_dim = int(np.prod(obs_shape)), int(np.prod(act_shape))
        agent = build_agent(spec, env_id, td3, dict(actor_params), obs_dim, act_dim, act_limit_of(env),
                            torch.device("cpu"))
        agent.actor.load_state_dict(state["td3"]["actor"])
        agent.normalizer.load_state_dict(state["normalizer"])
        agent.actor.eval()
        seen: list[np.ndarray] = []
        played = 0
        for s in eval_episode_seeds(seed, episodes):
            obs, _ = env.reset(seed=s)
            played += 1
            done = False
            while not done and len(seen) < max_actions:
                x = agent.normalizer(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
                seen.append(x.squeeze(0).numpy())
                obs, _, terminated, truncated, _ = env.step(agent.actor(x).squeeze(0).numpy())
                done = terminated or truncated
            if len(seen) >= max_actions:
                break
    finally:
        env.close()
    if not seen:
        return None
    act = trace_actor(agent.actor, torch.as_tensor(np.stack(seen)))
    if act is None:
        return None
    note = (f"{len(seen)} actions of {played} evaluation episode(s) of the final actor "
            f"({path.name}), recomputed in fp32 with the pure-torch layers")
    return Activity(act.layers, act.actions, act.timesteps, played, note)


def empty_fields() -> dict[str, Any]:
    """The activity columns of a run that has none (not finished, no checkpoint, unknown actor)."""
    return {"spike_rate": None, "synops_per_action": None, "macs_per_action": None,
            "inference_energy_j_per_action_est": None}


def layer_rates(result: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """The per-layer records of a result.json, [] when it has none."""
    act = result.get("activity") if isinstance(result, dict) else None
    layers = act.get("layers") if isinstance(act, dict) else None
    return [x for x in layers if isinstance(x, dict)] if isinstance(layers, list) else []
