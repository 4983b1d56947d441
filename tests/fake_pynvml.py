"""A stand-in for `pynvml` (nvidia-ml-py) with the real names and deterministic counters.

Patch it in where bench.energy.nvml imported pynvml:
    monkeypatch.setattr(bench.energy.nvml, "pynvml", fake_pynvml)
and configure devices with `reset(...)`. Counters advance only through `advance(seconds)`,
so energy = power × time exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

_NAMES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _NAMES.get(self.value, f"Unknown Error {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    power_w: float = 200.0
    counter_supported: bool = True
    power_supported: bool = True
    energy_mj: int = 1_000_000  # counters start wherever the driver left them
    fail_reads: int = 0
    """The next N energy/power reads raise GPU_IS_LOST."""
    counter_bias: float = 1.0
    """The energy counter runs this many times faster than power x time (a miscalibrated meter)."""
    process_ids: tuple[int, ...] = ()
    """PIDs of the compute processes NVML lists on this GPU."""
    lost: bool = False
    """Fallen off the bus: every read and every look-up by UUID raises GPU_IS_LOST until cleared."""
    temperature_c: int = 45
    sm_clock_mhz: int = 1755
    power_limit_w: float = 700.0


class _Handle:
    def __init__(self, index: int):
        self.index = index


devices: list[FakeGpu] = []
init_error: int | None = None
init_count = 0
calls: list[str] = []


def reset(gpus: list[FakeGpu] | None = None, *, fail_init: int | None = None) -> None:
    global devices, init_error, init_count
    devices = list(gpus or [])
    init_error = fail_init
    init_count = 0
    calls.clear()


def advance(seconds: float) -> None:
    """Let time pass on every GPU: counters grow by power × time."""
    for gpu in devices:
        gpu.energy_mj += int(round(gpu.power_w * seconds * 1000 * gpu.counter_bias))


def _check_init() -> None:
    if init_count <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def _gpu(handle: _Handle) -> FakeGpu:
    _check_init()
    return devices[handle.index]


def _maybe_fail(gpu: FakeGpu) -> None:
    if gpu.lost:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    if gpu.fail_reads > 0:
        gpu.fail_reads -= 1
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)


def nvmlInit() -> None:
    global init_count
    calls.append("nvmlInit")
    if init_error is not None:
        raise NVMLError(init_error)
    init_count += 1


def nvmlShutdown() -> None:
    global init_count
    calls.append("nvmlShutdown")
    _check_init()
    init_count -= 1


def nvmlDeviceGetCount() -> int:
    _check_init()
    return len(devices)


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    _check_init()
    if not 0 <= index < len(devices):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(index)


def nvmlDeviceGetHandleByUUID(uuid: str) -> _Handle:
    _check_init()
    for i, gpu in enumerate(devices):
        if gpu.uuid == uuid:
            if gpu.lost:
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
            return _Handle(i)
    raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


def nvmlDeviceGetIndex(handle: _Handle) -> int:
    _gpu(handle)
    return handle.index


def nvmlDeviceGetName(handle: _Handle) -> str:
    return _gpu(handle).name


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    return _gpu(handle).uuid


def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
    """Millijoules since the driver loaded."""
    gpu = _gpu(handle)
    calls.append("nvmlDeviceGetTotalEnergyConsumption")
    if not gpu.counter_supported:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    _maybe_fail(gpu)
    return gpu.energy_mj


def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
    """Milliwatts."""
    gpu = _gpu(handle)
    calls.append("nvmlDeviceGetPowerUsage")
    if not gpu.power_supported:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    _maybe_fail(gpu)
    return int(round(gpu.power_w * 1000))


class _ProcessInfo:
    def __init__(self, pid: int):
        self.pid = pid
        self.usedGpuMemory = 1 << 30


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[_ProcessInfo]:
    gpu = _gpu(handle)
    return [_ProcessInfo(pid) for pid in gpu.process_ids]


def nvmlSystemGetDriverVersion() -> str:
    _check_init()
    return "550.54.15"


def nvmlDeviceGetEnforcedPowerLimit(handle: _Handle) -> int:
    """Milliwatts."""
    return int(_gpu(handle).power_limit_w * 1000)


NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    gpu = _gpu(handle)
    _maybe_fail(gpu)
    return gpu.temperature_c


def nvmlDeviceGetClockInfo(handle: _Handle, clock_type: int) -> int:
    gpu = _gpu(handle)
    _maybe_fail(gpu)
    return gpu.sm_clock_mhz


class FakeClock:
    """Monotonic clock that moves only when told; also moves the fake GPUs' counters."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        advance(seconds)
