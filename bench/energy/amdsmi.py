"""AMD GPUs through AMD's `amdsmi` Python binding (the optional extra spikerl-bench[amd]).

Energy comes from the device's energy accumulator where it has one
(`amdsmi_get_energy_count`: ticks in 'energy_accumulator', called 'power' by older releases,
times 'counter_resolution' microjoules per tick), else from integrating
`amdsmi_get_power_info` (watts: 'socket_power' on ROCm 7, else 'current_socket_power', else
'average_socket_power'; 'N/A' where a part does not report one). One source per GPU, keyed
gpu<amdsmi index> and carrying its UUID, so coverage, backoff and the per-rank de-duplication
work as for NVML (bench.energy.nvml).
"""
from __future__ import annotations

import importlib
import logging
import time
from typing import Any, Sequence

from bench.energy.base import Clock, EnergySource, EnergySourceError, PowerIntegrator

log = logging.getLogger(__name__)

_POWER_KEYS = ("socket_power", "current_socket_power", "average_socket_power")


def load() -> Any:
    """The amdsmi module (tests replace this function with a fake at the library boundary)."""
    return importlib.import_module("amdsmi")


def _call(lib: Any, fn_name: str, *args: Any) -> Any:
    fn = getattr(lib, fn_name, None)
    if fn is None:
        raise EnergySourceError(f"amdsmi has no {fn_name}: an old amdsmi; install a newer one (ROCm 6.1+)")
    try:
        return fn(*args)
    except Exception as exc:  # amdsmi raises AmdSmiException and subclasses; translate them all here
        raise EnergySourceError(f"amdsmi {fn_name} failed: {exc}") from exc


def energy_j(info: dict[str, Any]) -> float:
    ticks = info.get("energy_accumulator", info.get("power"))
    if ticks is None:
        raise TypeError("amdsmi energy count without a counter value")  # as float(None) did
    return float(ticks) * float(info["counter_resolution"]) * 1e-6


def power_w(info: dict) -> float:
    for key in _POWER_KEYS:
        v = info.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    raise EnergySourceError(f"amdsmi power info has no power reading ({info})")


class _AmdSource(EnergySource):
    name = "amdsmi"

    def __init__(self, lib: Any, key: str, handle: Any, uuid: str | None):
        _call(lib, "amdsmi_init")
        self._lib = lib
        self._key = key
        self._handle = handle
        self.devices = [key]
        self.uuids = {key: uuid} if uuid else {}
        self._closed = False

    def recover(self) -> None:
        """Find the GPU again by UUID among the processor handles."""
        uuid = self.uuids.get(self._key)
        if not uuid:
            return
        for h in _call(self._lib, "amdsmi_get_processor_handles"):
            if str(_call(self._lib, "amdsmi_get_gpu_device_uuid", h)) == uuid:
                self._handle = h
                return
        raise EnergySourceError(f"{self._key} ({uuid}) is no longer listed by amdsmi")

    def _power_w(self) -> dict[str, float]:
        return {self._key: power_w(_call(self._lib, "amdsmi_get_power_info", self._handle))}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                _call(self._lib, "amdsmi_shut_down")
            except EnergySourceError as exc:
                log.debug("amdsmi_shut_down: %s", exc)


class AmdsmiCounterSource(_AmdSource):
    source = "amdsmi-counter"
    counter = True

    def __init__(self, lib: Any, key: str, handle: Any, uuid: str | None):
        super().__init__(lib, key, handle, uuid)
        try:
            self._base_j = energy_j(_call(lib, "amdsmi_get_energy_count", handle))
        except EnergySourceError:
            self.close()  # give back this source's amdsmi_init
            raise

    def read_energy_j(self) -> dict[str, float]:
        return {self._key: energy_j(_call(self._lib, "amdsmi_get_energy_count", self._handle)) - self._base_j}

    def read_power_w(self) -> dict[str, float]:
        try:
            return self._power_w()
        except EnergySourceError:
            return {}


class AmdsmiPowerSource(_AmdSource):
    source = "amdsmi-power"

    def __init__(self, lib: Any, key: str, handle: Any, uuid: str | None, clock: Clock = time.monotonic):
        super().__init__(lib, key, handle, uuid)
        self._integrator = PowerIntegrator(self.devices, mode="trapezoid", clock=clock)
        try:
            self._integrator.add(self._power_w())
        except EnergySourceError:
            self.close()
            raise

    def read_energy_j(self) -> dict[str, float]:
        try:
            p = self._power_w()
        except EnergySourceError:
            self._integrator.restart()  # the gap is unmetered, not interpolated
            raise
        return self._integrator.add(p)

    def read_power_w(self) -> dict[str, float]:
        return self._integrator.last_power_w


def open_amdsmi(device_ids: Sequence[int | str], clock: Clock = time.monotonic
                ) -> tuple[list[EnergySource], list[str]]:
    """One source per requested GPU (amdsmi index or UUID), and the problems. Never raises."""
    try:
        lib = load()
    except Exception as exc:  # noqa: BLE001 - absent is the common case
        return [], [f"amdsmi unavailable ({exc}); AMD GPU energy is not measured "
                    "(pip install \"spikerl-bench[amd]\")"]
    try:
        _call(lib, "amdsmi_init")
    except EnergySourceError as exc:
        return [], [f"{exc}; AMD GPU energy is not measured"]
    sources: list[EnergySource] = []
    problems: list[str] = []
    try:
        handles = list(_call(lib, "amdsmi_get_processor_handles"))
        uuids = []
        for h in handles:
            try:
                uuids.append(str(_call(lib, "amdsmi_get_gpu_device_uuid", h)))
            except EnergySourceError:
                uuids.append("")
        seen: set[int] = set()
        for dev_id in device_ids:
            idx = uuids.index(dev_id) if isinstance(dev_id, str) and dev_id in uuids else dev_id
            if not isinstance(idx, int) or not 0 <= idx < len(handles):
                problems.append(f"GPU {dev_id}: not listed by amdsmi; its energy is not measured")
                continue
            if idx in seen:
                continue
            seen.add(idx)
            key, h, uuid = f"gpu{idx}", handles[idx], uuids[idx] or None
            try:
                sources.append(AmdsmiCounterSource(lib, key, h, uuid))
                continue
            except EnergySourceError as exc:
                counter_problem = str(exc)
            try:
                sources.append(AmdsmiPowerSource(lib, key, h, uuid, clock=clock))
                log.info("%s: no energy counter (%s); integrating power", key, counter_problem)
            except EnergySourceError as exc:
                problems.append(f"{key}: neither energy counter nor power reading ({exc}); "
                                "its energy is not measured")
    except EnergySourceError as exc:
        problems.append(f"{exc}; AMD GPU energy is not measured")
    finally:
        try:
            _call(lib, "amdsmi_shut_down")
        except EnergySourceError:
            pass
    return sources, problems
