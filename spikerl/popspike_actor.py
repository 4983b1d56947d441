"""The PopSAN actor (used by SpikeRL and PopSAN): population encoder → spiking MLP → population decoder.

    obs_norm [B, obs_dim] → encoder spikes [T, B, obs_dim·pop]
      → PopSAN LIF layers obs_dim·pop → 256 → 256 → act_dim·pop (all spiking, all with biases)
      → decoder rates → action [B, act_dim] = act_limit · tanh(·)

All spiking state starts at zero on every forward call (nothing carries over between env
steps). Each layer is one matmul over all T·B rows plus a fused recurrence (`spikerl.lif`).
"""
from __future__ import annotations

import math
from typing import Sequence, cast

import torch
import torch.nn as nn

from spikerl import native
from spikerl.lif import PopSANLIFLayer, native_encoded_popsan_layer, native_popsan_layer
from spikerl.population import Encoding, PopulationDecoder, PopulationEncoder


class PopSpikingActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, act_limit: float, pop_dim: int = 10,
                 hidden: Sequence[int] = (256, 256), timesteps: int = 5,
                 encoding: Encoding | str = Encoding.DETERMINISTIC,
                 mean_range: tuple[float, float] = (-3.0, 3.0), std: float = math.sqrt(0.15)):
        super().__init__()
        self.obs_dim, self.act_dim, self.act_limit = obs_dim, act_dim, float(act_limit)
        self.timesteps = int(timesteps)
        self.encoder = PopulationEncoder(obs_dim, pop_dim, self.timesteps, encoding, mean_range, std)
        sizes = [obs_dim * pop_dim, *(int(h) for h in hidden), act_dim * pop_dim]
        self.layers = nn.ModuleList(PopSANLIFLayer(n_in, n_out)
                                    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.decoder = PopulationDecoder(act_dim, act_limit, pop_dim)

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """Normalised obs [B, obs_dim] → action [B, act_dim] in [−act_limit, act_limit]."""
        # (slicing a ModuleList builds a new module on every call; the cast only names the type)
        first, *rest = cast("list[PopSANLIFLayer]", self.layers)
        if (obs_norm.shape[0] * self.timesteps < native.SPARSE_MIN_ROWS and not torch.is_grad_enabled()
                and self.encoder.encoding is Encoding.DETERMINISTIC and native.usable(obs_norm, first.fc.weight)
                and not native.bf16_autocast()):  # (the acting kernel has no bf16 recipe: layer by layer then)
            # acting: the whole net in one kernel call
            fcs = [m.fc for m in (first, *rest)]
            enc, dec = self.encoder, self.decoder
            return native.popsan_act(obs_norm, enc.mean, enc.std, [f.weight for f in fcs], [f.bias for f in fcs],
                                     dec.weight, dec.bias, self.act_limit, self.timesteps)
        if native.usable(obs_norm, first.fc.weight):
            # the encoder's gradient is folded into the first layer (one matmul, not T)
            a = self.encoder.stimulation(obs_norm)
            s = self.encoder.spike_trains(a)
            o, bits = native_encoded_popsan_layer(a, s, self.encoder.spike_gains(a.dtype, a.device),
                                                  first.fc.weight, first.fc.bias)
            for layer in rest:  # each kernel hands its spikes to the next as bit masks too
                o, bits = native_popsan_layer(o, layer.fc.weight, layer.fc.bias, bits)
            return self.decoder(o)
        o = first(self.encoder(obs_norm))
        for layer in rest:
            o = layer(o)
        return self.decoder(o)
