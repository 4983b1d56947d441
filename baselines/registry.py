"""Every method by name. Adding a method is one file plus one line here."""
from __future__ import annotations

from baselines.dsrl import DSRL
from baselines.mlp import MLP
from baselines.popsan import POPSAN
from baselines.spikerl import SPIKERL
from spikerl.method import MethodSpec

METHODS: dict[str, MethodSpec] = {
    SPIKERL.name: SPIKERL,
    POPSAN.name: POPSAN,
    DSRL.name: DSRL,
    MLP.name: MLP,
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None
