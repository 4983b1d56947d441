"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`).

Energy comes from the cumulative counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ,
Volta and newer) where a device supports it; otherwise from integrating
`nvmlDeviceGetPowerUsage` (mW), which on Ampere+ is a 1-s average refreshed about every
100 ms, so short windows are only trustworthy with the counter.

NVML numbers devices in PCI order and ignores CUDA_VISIBLE_DEVICES, so callers hand us
NVML indices or UUIDs (see `nvml_ids_for_cuda`).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Sequence

from bench.energy.base import (
    Clock,
    EnergySource,
    EnergySourceError,
    NotSupportedError,
    PowerIntegrator,
)

try:  # absent on machines without the package; tests patch this name with a fake module
    import pynvml
except ImportError:  # pragma: no cover - nvidia-ml-py is a declared dependency
    pynvml = None

log = logging.getLogger(__name__)

DeviceId = int | str
"""An NVML index, or a UUID such as 'GPU-8f3c...'."""


def _call(fn_name: str, *args: Any) -> Any:
    """Every NVML call goes through here, so vendor errors become ours in one place."""
    if pynvml is None:
        raise EnergySourceError("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    fn: Callable[..., Any] | None = getattr(pynvml, fn_name, None)
    if fn is None:
        raise EnergySourceError(
            f"pynvml has no {fn_name}: an old or wrong package provides `pynvml`; "
            "install nvidia-ml-py (the `pynvml` PyPI package is deprecated)")
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        msg = f"NVML {fn_name} failed: {exc}"
        if getattr(exc, "value", None) == pynvml.NVML_ERROR_NOT_SUPPORTED:
            raise NotSupportedError(msg) from exc
        raise EnergySourceError(msg) from exc


def as_text(value: Any) -> str:
    """An NVML string: `str` from nvidia-ml-py >= 11.515, `bytes` from older bindings."""
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_ids_for_cuda(cuda_indices: Sequence[int]) -> list[DeviceId]:
    """NVML identities of CUDA device indices as this process sees them.

    Prefers the UUID torch reports (immune to CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER),
    then an integer CUDA_VISIBLE_DEVICES entry, then the index itself.
    """
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    out: list[DeviceId] = []
    for i in cuda_indices:
        uuid = _torch_uuid(i)
        if uuid:
            out.append(uuid)
        elif i < len(visible):
            out.append(int(visible[i]) if visible[i].isdigit() else visible[i])
        else:
            out.append(int(i))
    return out


def visible_gpu_ids() -> list[DeviceId]:
    """NVML identities of every GPU this process may use; empty when there are none.

    CUDA's view when torch sees GPUs (UUIDs, so the CUDA/NVML orderings can't be confused),
    else the CUDA_VISIBLE_DEVICES entries, else every GPU NVML lists.
    """
    if (n_cuda := _torch_cuda_count()) > 0:
        return nvml_ids_for_cuda(range(n_cuda))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries: list[str] = []
        for v in (v.strip() for v in visible.split(",")):
            if not (v.isdigit() or v.startswith(("GPU-", "MIG-"))):
                break  # CUDA ignores everything from the first invalid entry on ('-1' hides all)
            entries.append(v)
        return nvml_ids_for_cuda(range(len(entries)))
    count, reason = nvml_device_count()
    if reason:
        log.info("no GPUs to meter: %s", reason)
    return list(range(count))


def nvml_device_count() -> tuple[int, str | None]:
    """How many GPUs NVML lists, or 0 and the reason it cannot tell (no package, no driver)."""
    try:
        _call("nvmlInit")
    except EnergySourceError as exc:
        return 0, str(exc)
    try:
        return int(_call("nvmlDeviceGetCount")), None
    except EnergySourceError as exc:
        return 0, str(exc)
    finally:
        try:
            _call("nvmlShutdown")
        except EnergySourceError:
            pass


def _torch_cuda_count() -> int:
    # Only ask a torch that is already imported: importing it costs a second, and a process
    # that hasn't yet is served as well by CUDA_VISIBLE_DEVICES or NVML's list.
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
    except Exception:  # a broken driver: ask NVML instead
        return 0


def _torch_uuid(cuda_index: int) -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
    except Exception:  # any failure just means "use the index"
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


class _NvmlSource(EnergySource):
    """Owns one nvmlInit (NVML reference-counts init/shutdown pairs). `open_nvml` builds one per
    GPU, so one failing GPU never silences the others."""

    name = "nvml"

    def __init__(self, handles: dict[str, Any], uuids: dict[str, str] | None = None):
        _call("nvmlInit")
        self._handles = handles
        self.devices = list(handles)
        self.uuids = dict(uuids or {})
        self._closed = False

    def _power_w(self) -> dict[str, float]:
        return {d: _call("nvmlDeviceGetPowerUsage", h) / 1000.0 for d, h in self._handles.items()}

    def recover(self) -> None:
        """Before a retry: look the handles up again by UUID (a GPU that fell off the bus and came
        back may have a new handle). Raises EnergySourceError while it is still gone."""
        for dev, uuid in self.uuids.items():
            if dev in self._handles:
                self._handles[dev] = _call("nvmlDeviceGetHandleByUUID", uuid)

    def state(self) -> dict[str, dict[str, float | None]]:
        """Per device: temperature (C), SM clock (MHz) and enforced power limit (W) now."""
        return {d: device_state(h) for d, h in self._handles.items()}

    def process_ids(self) -> set[int]:
        """PIDs of the compute processes on these GPUs (NVML's PID namespace: the host's)."""
        return {int(p.pid) for h in self._handles.values()
                for p in _call("nvmlDeviceGetComputeRunningProcesses", h)}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                _call("nvmlShutdown")
            except EnergySourceError as exc:
                log.debug("nvmlShutdown: %s", exc)


class NvmlCounterSource(_NvmlSource):
    """The energy counter; beside it, its power readings integrated over the same reads, so the
    two can be compared (`counter_check`: Zeus reports them within 1 %)."""

    source = "nvml-counter"
    estimated = False
    counter = True

    def __init__(self, handles: dict[str, Any], uuids: dict[str, str] | None = None, clock: Clock = time.monotonic):
        super().__init__(handles, uuids)
        self._base_mj = {d: _call("nvmlDeviceGetTotalEnergyConsumption", h) for d, h in handles.items()}
        self._power_supported = True
        self._check = PowerIntegrator(self.devices, mode="trapezoid", clock=clock)
        self._check_from_j: dict[str, float] | None = None  # counter energy at the check's first sample
        self._check_to_j: dict[str, float] = {}
        self._check_ok = True
        self._polled_power_w: dict[str, float] | None = None  # the check's power read, for this tick's trace

    def read_energy_j(self) -> dict[str, float]:
        out = {d: (_call("nvmlDeviceGetTotalEnergyConsumption", h) - self._base_mj[d]) / 1000.0
               for d, h in self._handles.items()}
        self._polled_power_w = None
        if self._check_ok:
            try:
                power_w = self._power_w()
                integrated = self._check.add(power_w)
            except EnergySourceError:  # a span without power samples: the comparison would be skewed
                self._check_ok = False
            else:
                self._polled_power_w = power_w
                if self._check_from_j is None:
                    self._check_from_j = dict(out)
                self._check_to_j = dict(out)
                self._check_power_j = integrated
        return out

    def counter_check(self) -> dict[str, tuple[float, float]]:
        """Per device, (counter J, integrated power J) over the same reads; empty when the power
        could not be read on every poll."""
        if not self._check_ok or self._check_from_j is None:
            return {}
        return {d: (self._check_to_j[d] - self._check_from_j[d], self._check_power_j.get(d, 0.0))
                for d in self.devices}

    def read_power_w(self) -> dict[str, float]:
        if self._polled_power_w is not None:  # the counter check read it this tick: one NVML query, not two
            power_w, self._polled_power_w = self._polled_power_w, None
            return power_w
        if not self._power_supported:
            return {}
        try:
            return self._power_w()
        except NotSupportedError:
            # The counter still gives energy; only the trace loses its power column.
            self._power_supported = False
            return {}


class NvmlSampledSource(_NvmlSource):
    """Pre-Volta GPUs: integrate sampled power (trapezoid) at every read."""

    source = "nvml-sampled"
    estimated = False

    def __init__(self, handles: dict[str, Any], clock: Clock = time.monotonic, uuids: dict[str, str] | None = None):
        super().__init__(handles, uuids)
        self._integrator = PowerIntegrator(self.devices, mode="trapezoid", clock=clock)
        self._integrator.add(self._power_w())

    def read_energy_j(self) -> dict[str, float]:
        try:
            power_w = self._power_w()
        except EnergySourceError:
            self._integrator.restart()  # no interpolation across the gap: it is unmetered
            raise
        return self._integrator.add(power_w)

    def read_power_w(self) -> dict[str, float]:
        return self._integrator.last_power_w


def open_nvml(device_ids: Sequence[DeviceId], clock: Clock = time.monotonic
              ) -> tuple[list[EnergySource], list[str]]:
    """Sources for the given GPUs and the reasons any of them could not be measured.

    One source per GPU (keyed gpu<NVML index>, carrying its UUID): the counter where the device has
    one, else sampled power. Never raises: NVML missing or failing to initialise yields no sources and one reason.
    """
    try:
        _call("nvmlInit")
    except EnergySourceError as exc:
        reason = f"NVML unavailable ({exc}); GPU energy is not measured"
        log.warning(reason)
        return [], [reason]
    problems: list[str] = []
    counter: dict[str, Any] = {}
    sampled: dict[str, Any] = {}
    uuids: dict[str, str] = {}
    try:
        for dev_id in device_ids:
            try:
                if isinstance(dev_id, str):
                    handle = _call("nvmlDeviceGetHandleByUUID", dev_id)
                    index = _call("nvmlDeviceGetIndex", handle)
                else:
                    handle = _call("nvmlDeviceGetHandleByIndex", int(dev_id))
                    index = int(dev_id)
            except EnergySourceError as exc:
                problems.append(f"GPU {dev_id}: {exc}; its energy is not measured")
                continue
            key = f"gpu{index}"
            if key in counter or key in sampled:
                continue  # two ranks on one GPU: count it once
            try:
                uuids[key] = as_text(_call("nvmlDeviceGetUUID", handle))
            except EnergySourceError:
                pass  # without a UUID the device cannot be looked up again, only retried
            try:
                _call("nvmlDeviceGetTotalEnergyConsumption", handle)
                counter[key] = handle
                continue
            except NotSupportedError:
                pass
            except EnergySourceError as exc:
                problems.append(f"{key}: energy counter failed ({exc}); falling back to sampled power")
            try:
                _call("nvmlDeviceGetPowerUsage", handle)
                sampled[key] = handle
            except EnergySourceError as exc:
                problems.append(f"{key}: neither energy counter nor power reading ({exc}); "
                                "its energy is not measured")
        sources: list[EnergySource] = []
        for key in sorted({**counter, **sampled}, key=lambda k: int(k[3:])):
            ids = {key: uuids[key]} if key in uuids else {}
            try:
                sources.append(NvmlCounterSource({key: counter[key]}, ids, clock=clock) if key in counter
                               else NvmlSampledSource({key: sampled[key]}, clock=clock, uuids=ids))
            except EnergySourceError as exc:
                problems.append(f"{key}: {exc}; its energy is not measured")
    finally:
        try:
            _call("nvmlShutdown")
        except EnergySourceError:
            pass
    for p in problems:
        log.warning(p)
    return sources, problems


def device_state(handle: Any) -> dict[str, float | None]:
    """Temperature (C), SM clock (MHz) and enforced power limit (W) of one GPU; None where NVML
    cannot say. The context that makes a GPU's energy comparable between runs."""
    out: dict[str, float | None] = {}
    for key, fn, args, scale in (("temperature_c", "nvmlDeviceGetTemperature", (0,), 1.0),  # NVML_TEMPERATURE_GPU
                                 ("sm_clock_mhz", "nvmlDeviceGetClockInfo", (1,), 1.0),      # NVML_CLOCK_SM
                                 ("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", (), 1e-3)):
        try:
            out[key] = float(_call(fn, handle, *args)) * scale
        except EnergySourceError:
            out[key] = None
    return out


def all_gpu_states() -> dict[str, dict[str, Any]]:
    """Every GPU NVML lists, by UUID: name and device_state now (empty without NVML)."""
    try:
        _call("nvmlInit")
    except EnergySourceError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for i in range(int(_call("nvmlDeviceGetCount"))):
            h = _call("nvmlDeviceGetHandleByIndex", i)
            uuid = as_text(_call("nvmlDeviceGetUUID", h))
            name = _call("nvmlDeviceGetName", h)
            out[uuid] = {"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                         **device_state(h)}
    except EnergySourceError as exc:
        log.debug("GPU state: %s", exc)
    finally:
        try:
            _call("nvmlShutdown")
        except EnergySourceError:
            pass
    return out
