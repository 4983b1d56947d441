"""DSRL (Akl, Ergene, Walter, Knoll, Frontiers in Neurorobotics 2023): a deep spiking TD3 actor.

Actor (DESIGN §3.3), on max-abs-normalised obs x ∈ [−1, 1]^obs_dim (MaxAbsNormalizer):
- Encoder, nothing learnable: "two-neuron" sign split x → [max(x, 0), max(−x, 0)] (all positive
  parts, then all negative parts: 2·obs_dim inputs), injected as an analog current at every
  timestep. The current W₀·x is therefore the same every step: it is computed once on B rows.
- Layers 2·obs_dim → 400 → 300 → act_dim, weights only (no biases), LIF neurons with
  α = β = 0.5 and a same-step reset whose gradient is detached (`spikerl.lif`); the original
  code zeroes U in place after computing the spikes, which autograd treats the same way.
- Output: a non-spiking, non-leaky integrator U_t = U_{t−1} + W₂·S¹_t, so U_T = Σ_t W₂·S¹_t
  (one matmul on all T·B rows, then a sum over t); action = act_limit · tanh(U_T).
- Engine: fp32 on a CPU (outside autocast, or under CPU bf16 autocast in the bf16 recipe of
  `spikerl.lif`) runs the native kernels (`spikerl.native`), as the PopSAN actor does: LIF
  recurrences and BPTT in C, layer 2's currents as sums over spike lists, the integrator as
  W₂·(Σ_t S¹_t), and acting at batch 1 in fp32 in one kernel call (`dsrl_act`). Anything else runs
  the pure-torch path. The two agree to fp32 rounding (tests/test_native.py), and in bf16 to the
  tolerances of tests/test_native_bf16.py.

Choices where the paper leaves room:
- Initial weights N(0, 1/sqrt(fan_in)) are read as std = 1/sqrt(fan_in) (variance 1/fan_in),
  as in the original code (normal_ with std = weight_scale/sqrt(fan_in), weight_scale 1). With
  it, θ = 2.0 or 2.5 leaves the network nearly silent at initialisation; the fast-sigmoid
  surrogate is non-zero everywhere, so gradients still reach every weight.
- T = 4: the original integrates 5 simulation steps but skips the first, so 4 take effect; we
  simulate exactly those 4.
- Threshold θ per env family: HalfCheetah 0.8, Hopper 2.0, Ant 2.5 (published); Walker2d 2.0 has
  no published value (we reuse Hopper's); any other env falls back to 2.0 (documented, no error).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn

from spikerl import native
from spikerl.config import check_layer_sizes, check_number
from spikerl.lif import dsrl_lif, native_dsrl_layer, native_dsrl_lif
from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import MaxAbsNormalizer, ObsNormalizer
from spikerl.precision import state_precision

THRESHOLDS = {"HalfCheetah": 0.8, "Hopper": 2.0, "Ant": 2.5, "Walker2d": 2.0}
"""θ per env family. Walker2d: no published value, 2.0 by our choice."""
DEFAULT_THRESHOLD = 2.0
"""θ for env families without a value above (our choice, the median of the published ones)."""


def env_family(env_id: str) -> str:
    return env_id.split("-")[0]


def threshold_for(env_id: str) -> float:
    return THRESHOLDS.get(env_family(env_id), DEFAULT_THRESHOLD)


def sign_split(x: torch.Tensor) -> torch.Tensor:
    """[B, d] → [B, 2d] = [max(x, 0), max(−x, 0)]: two non-negative input neurons per dimension."""
    return torch.cat([x.clamp(min=0), (-x).clamp(min=0)], dim=-1)


class DSRLActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, act_limit: float, threshold: float = DEFAULT_THRESHOLD,
                 hidden: Sequence[int] = (400, 300), timesteps: int = 4):
        super().__init__()
        h0, h1 = (int(h) for h in hidden)
        self.act_limit, self.timesteps = float(act_limit), int(timesteps)
        self.threshold = float(threshold)
        self.fc0 = nn.Linear(2 * obs_dim, h0, bias=False)
        self.fc1 = nn.Linear(h0, h1, bias=False)
        self.fc2 = nn.Linear(h1, act_dim, bias=False)
        for fc in (self.fc0, self.fc1, self.fc2):
            nn.init.normal_(fc.weight, mean=0.0, std=1.0 / math.sqrt(fc.in_features))

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """Max-abs-normalised obs [B, obs_dim] → action [B, act_dim] in [−act_limit, act_limit]."""
        T = self.timesteps
        if native.usable(obs_norm, self.fc0.weight):
            if obs_norm.shape[0] * T < native.SPARSE_MIN_ROWS and not torch.is_grad_enabled() \
                    and not native.bf16_autocast():  # (the acting kernel has no bf16 recipe)
                # acting: the whole net in one kernel call
                return native.dsrl_act(obs_norm, self.fc0.weight, self.fc1.weight, self.fc2.weight, self.threshold,
                                       self.act_limit, T)
            # the analog input stays one BLAS matmul on B rows; each kernel hands its spikes on as bit masks too
            s0, bits = native_dsrl_lif(state_precision(self.fc0(sign_split(obs_norm))), self.threshold, T)
            s1 = native_dsrl_layer(s0, self.fc1.weight, self.threshold, bits)
            # the integrator's U_T = Σ_t W₂·S¹_t as W₂·(Σ_t S¹_t): spike counts are exact, and one matmul
            # on B rows costs half of T·B rows through the spike lists (measured)
            if native.bf16_autocast():  # bf16 rounds each timestep's W₂·S¹_t, as the torch path does
                B = s1.shape[1]
                u = state_precision(self.fc2(s1.reshape(T * B, -1))).view(T, B, -1).sum(0)
                return self.act_limit * torch.tanh(u)
            return self.act_limit * torch.tanh(self.fc2(s1.sum(0)))
        i0 = state_precision(self.fc0(sign_split(obs_norm)))
        s0 = dsrl_lif(i0, self.threshold, T)
        B = s0.shape[1]
        i1 = state_precision(self.fc1(s0.reshape(T * B, -1))).view(T, B, -1)
        s1 = dsrl_lif(i1, self.threshold)
        # the integrator's sum over t after one matmul on all T·B rows, as the step-by-step loop adds them
        u = state_precision(self.fc2(s1.reshape(T * B, -1))).view(T, B, -1).sum(0)
        return self.act_limit * torch.tanh(u)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, timesteps={self.timesteps}"


def actor_params(env_id: str) -> dict[str, Any]:
    return {"threshold": threshold_for(env_id), "hidden": (400, 300), "timesteps": 4}


def td3_params(env_id: str) -> dict[str, Any]:
    """The original code's TD3 settings. Its warm-up is 1,000 steps of N(0, 0.1) actions (not
    TD3's 10,000 uniform ones), after which it learns at once; all four MuJoCo tasks have
    act_limit 1, so N(0, 0.1·act_limit) is the same draw."""
    return {
        "lr_actor": 1e-3,
        "lr_critic": 1e-3,
        "critic_hidden": (400, 300),
        "replay_size": 200_000 if env_family(env_id) == "HalfCheetah" else 1_000_000,
        "start_steps": 1_000,
        "start_actions": "gaussian",
        "start_noise": 0.1,
        "update_after": 1_000,
        "precision": "fp32",
    }


def check_actor_params(p: dict[str, Any]) -> None:
    check_number("actor.threshold", p["threshold"], 0.0, 1e3, open_lo=True)
    check_layer_sizes("actor.hidden", p["hidden"], layers=2)
    check_number("actor.timesteps", p["timesteps"], 1, 1_000, integer=True)


def build_actor(ctx: ActorContext) -> nn.Module:
    return DSRLActor(ctx.obs_dim, ctx.act_dim, ctx.act_limit, **ctx.params)


def build_normalizer(ctx: ActorContext) -> ObsNormalizer:
    return MaxAbsNormalizer(ctx.obs_dim)


DSRL = MethodSpec(
    name="dsrl",
    summary="DSRL (Akl et al., Front. Neurorobot. 2023): deep LIF actor with sign-split analog input, "
            "max-abs normalisation, per-env threshold; TD3 lr 1e-3, critics 400-300, fp32, "
            "warm-up 1,000 steps of N(0, 0.1) actions (original code)",
    build_actor=build_actor,
    build_normalizer=build_normalizer,
    actor_params=actor_params,
    td3_params=td3_params,
    check_actor=check_actor_params,
)
