"""Seeding and whole-process RNG capture (so a resumed run continues bit for bit)."""
from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps(_np_state_to_jsonable(_np_legacy_state())),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_np_state_from_jsonable(json.loads(state["numpy"])))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _np_legacy_state() -> tuple:
    """NumPy's global MT19937 state as get_state() returns it by default: ('MT19937', keys, pos, ...)."""
    st = np.random.get_state(legacy=True)
    assert isinstance(st, tuple), "the global RandomState is MT19937"
    return st


def _np_state_to_jsonable(st: tuple) -> list:
    return [st[0], st[1].tolist(), int(st[2]), int(st[3]), float(st[4])]


def _np_state_from_jsonable(st: list) -> tuple:
    return (st[0], np.asarray(st[1], dtype=np.uint32), st[2], st[3], st[4])
