"""A stand-in for AMD's `amdsmi` Python package with its real names and return shapes:
amdsmi_init, amdsmi_get_processor_handles, amdsmi_get_gpu_device_uuid, amdsmi_get_energy_count
({'energy_accumulator' (ticks), 'counter_resolution' (uJ per tick), 'timestamp'}) and
amdsmi_get_power_info ({'socket_power', 'current_socket_power', 'average_socket_power' in W, or
'N/A'}), amdsmi_shut_down, AmdSmiException. Install with monkeypatch.setitem(sys.modules, 'amdsmi', ...)."""
from __future__ import annotations

from dataclasses import dataclass


class AmdSmiException(Exception):
    pass


@dataclass
class FakeAmdGpu:
    uuid: str = "ffffffff-0000-1000-80a1-000000000000"
    power_w: float = 500.0
    counter_supported: bool = True
    counter_resolution_uj: float = 15.259
    ticks: int = 1_000_000
    lost: bool = False
    """Reads raise AmdSmiException until cleared."""


devices: list[FakeAmdGpu] = []
initialised = 0


def reset(gpus: list[FakeAmdGpu] | None = None) -> None:
    global devices, initialised
    devices = list(gpus or [])
    initialised = 0


def advance(seconds: float) -> None:
    for g in devices:
        g.ticks += int(round(g.power_w * seconds * 1e6 / g.counter_resolution_uj))


def amdsmi_init(flags: int = 0) -> None:
    global initialised
    initialised += 1


def amdsmi_shut_down() -> None:
    global initialised
    initialised -= 1


def amdsmi_get_processor_handles() -> list[int]:
    if initialised <= 0:
        raise AmdSmiException("AMDSMI_STATUS_NOT_INIT")
    return list(range(len(devices)))


def amdsmi_get_gpu_device_uuid(handle: int) -> str:
    return devices[handle].uuid


def _gpu(handle: int) -> FakeAmdGpu:
    if initialised <= 0:
        raise AmdSmiException("AMDSMI_STATUS_NOT_INIT")
    g = devices[handle]
    if g.lost:
        raise AmdSmiException("AMDSMI_STATUS_NO_DRV")
    return g


def amdsmi_get_energy_count(handle: int) -> dict:
    g = _gpu(handle)
    if not g.counter_supported:
        raise AmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")
    return {"energy_accumulator": g.ticks, "counter_resolution": g.counter_resolution_uj, "timestamp": 0}


def amdsmi_get_power_info(handle: int) -> dict:
    g = _gpu(handle)
    return {"socket_power": g.power_w, "current_socket_power": g.power_w, "average_socket_power": "N/A"}
