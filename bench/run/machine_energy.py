"""The machine's CPU and RAM energy over a local sweep of runs side by side, and what no run was
charged of it (RUN/machine_energy.json; fields: bench.schema.MACHINE_ENERGY_FIELDS).

Runs side by side are each charged a part of the machine's CPU and RAM energy (static power by
allocated cores, dynamic by CPU time: bench.energy.attribution). The launcher meters the machine
itself over the whole time its runs execute, from before the first starts to after the last ends,
so that

    machine_j = runs_j + remainder_j

holds over what was really metered, the remainder being unallocated cores' idle power, other
processes, the runs' start-up and the gaps between them. Each launch of the sweep (a resume
included) appends one window; the report shows them (reports.meters).
"""
from __future__ import annotations

import datetime as dt
import math
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import schema
from bench.energy.base import component_of
from bench.run import store
from bench.run.plan import Plan, RunKey
from bench.run.store import RunFolderError

WINDOW = "sweep"


class SweepMeter:
    """The launcher's own meter of the machine's CPU and RAM (as the runs meter them: RAPL where
    readable, else the estimate over every CPU), open from `start()` to `stop()`."""

    def __init__(self, plan: Plan, meter_factory: Callable[..., Any] | None = None) -> None:
        self.plan = plan
        self._factory = meter_factory
        self._meter: Any = None
        self._started_utc = ""
        self.error: str | None = None

    def start(self) -> None:
        from bench.energy.estimate import machine_cpus
        from bench.energy.meter import PowerMeter

        self._started_utc = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            factory = self._factory or PowerMeter.create
            self._meter = factory(gpu_ids=[], cpu="auto", ram="auto", interval_s=self.plan.power_interval_s,
                                  estimate_cpus=machine_cpus())
            self._meter.begin_window(WINDOW)
        except Exception as exc:  # noqa: BLE001 - the machine's account is context; the runs still run
            self._meter, self.error = None, f"{type(exc).__name__}: {exc}"
            print(f"spikerl-bench: the machine's energy over the sweep is not metered ({self.error})", file=sys.stderr)

    def stop(self) -> dict[str, Any] | None:
        """The window's machine energy (None when the meter never started)."""
        if self._meter is None:
            return None
        try:
            m = self._meter.end_window(WINDOW)
            self._meter.stop()
        except Exception as exc:  # noqa: BLE001 - as in start
            self.error = f"{type(exc).__name__}: {exc}"
            return None
        by_comp: dict[str, float] = {}
        devices: dict[str, list[str]] = {}
        for dev, e in m.energy_j_by_device.items():
            comp = component_of(dev)
            if comp in ("cpu", "ram"):
                by_comp[comp] = by_comp.get(comp, 0.0) + e
                devices.setdefault(comp, []).append(dev)
        return {"host": socket.gethostname(), "started_utc": self._started_utc, "window_s": m.duration_s,
                "cpu_source": self._meter.source_label(devices.get("cpu", [])) if "cpu" in devices else None,
                "ram_source": self._meter.source_label(devices.get("ram", [])) if "ram" in devices else None,
                "estimated": bool(m.estimated),
                "machine_cpu_j": by_comp.get("cpu"), "machine_ram_j": by_comp.get("ram")}


def _number(v: Any) -> float | None:
    return float(v) if type(v) in (int, float) and math.isfinite(v) else None


def window_account(machine: dict[str, Any], charges: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One window: the machine's energy (SweepMeter.stop) against the runs' charges (each run's
    result.json cpu_energy_j, ram_energy_j, unattributed_j; a run without them counts as missing)."""
    complete = [c for c in charges if _number(c.get("cpu_energy_j")) is not None]
    runs_cpu = sum(float(c["cpu_energy_j"]) for c in complete)
    runs_ram = sum(_number(c.get("ram_energy_j")) or 0.0 for c in complete)
    m_cpu, m_ram = _number(machine.get("machine_cpu_j")), _number(machine.get("machine_ram_j"))
    machine_j = None if m_cpu is None else m_cpu + (m_ram or 0.0)
    runs_j = runs_cpu + runs_ram
    unattributed = [_number(c.get("unattributed_j")) for c in complete]
    out = {**machine, "machine_j": machine_j,
           "runs_cpu_j": runs_cpu if complete else None, "runs_ram_j": runs_ram if complete else None,
           "runs_j": runs_j if complete else None,
           "remainder_j": machine_j - runs_j if machine_j is not None and complete else None,
           "runs_unattributed_j": sum(u for u in unattributed if u is not None) if complete else None,
           "runs_missing": len(charges) - len(complete)}
    out = {k: out.get(k) for k in schema.MACHINE_ENERGY_COLUMNS}
    out["runs"] = [{k: c.get(k) for k in ("method", "env", "seed", "cpu_energy_j", "ram_energy_j",
                                          "unattributed_j")} for c in charges]
    return out


def run_charges(run_dir: Path, runs: Sequence[RunKey]) -> list[dict[str, Any]]:
    out = []
    for method, env, seed in runs:
        try:
            result = store.read_json(store.seed_dir(run_dir, method, env, seed) / schema.RESULT)
        except RunFolderError:
            result = {}
        result = result if isinstance(result, dict) else {}
        out.append({"method": method, "env": env, "seed": seed,
                    **{k: _number(result.get(k)) for k in ("cpu_energy_j", "ram_energy_j", "unattributed_j")}})
    return out


def append_window(run_dir: Path, window: dict[str, Any]) -> None:
    """Add one window to RUN/machine_energy.json (atomically; a damaged file is started afresh)."""
    with store.folder_lock(run_dir):
        windows = read_windows(run_dir)
        store.write_json(Path(run_dir) / schema.MACHINE_ENERGY, {"schema_version": 1, "windows": [*windows, window]})


def read_windows(run_dir: Path) -> list[dict[str, Any]]:
    """The windows of RUN/machine_energy.json, [] when it is absent or unreadable."""
    try:
        data = store.read_json(Path(run_dir) / schema.MACHINE_ENERGY)
    except RunFolderError:
        return []
    windows = data.get("windows") if isinstance(data, dict) else None
    return [w for w in windows if isinstance(w, dict)] if isinstance(windows, list) else []
