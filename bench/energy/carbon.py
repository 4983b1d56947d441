"""CodeCarbon, offline only, and never allowed to stop a training run.

The online `EmissionsTracker` geolocates over the network and, offline, silently falls
back to Québec's low-carbon grid, so this wrapper only builds `OfflineEmissionsTracker`
with an explicit ISO-3 country. CodeCarbon's own `stop()` swallows exceptions and may
return None; we turn every failure into `CarbonResult.error` and leave emissions empty
(None), never zero, so a report can say why they are missing.
"""
from __future__ import annotations

import csv
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.energy.errors import ErrorLog

log = logging.getLogger(__name__)

DEFAULT_COUNTRY = "USA"
EMISSIONS_CSV = "emissions.csv"
_ISO3 = re.compile(r"^[A-Z]{3}$")


@functools.lru_cache(maxsize=1)
def _energy_mix() -> dict[str, Any] | None:
    # Cached: CodeCarbon parses its JSON on every call, and country checks ask more than once.
    try:
        from codecarbon.input import DataSource

        return DataSource().get_global_energy_mix_data()
    except Exception:
        return None


def validate_country(code: str) -> str:
    """Upper-cased ISO 3166-1 alpha-3 code that CodeCarbon has grid data for; ValueError otherwise."""
    norm = str(code).strip().upper()
    if not _ISO3.match(norm):
        raise ValueError(f"country must be an ISO 3166-1 alpha-3 code such as USA, FRA or DEU; got {code!r}")
    mix = _energy_mix()
    if mix is not None and norm not in mix:
        raise ValueError(f"CodeCarbon has no grid carbon intensity for country {norm!r} "
                         "(use an ISO-3 code such as USA, FRA, DEU, GBR, IND)")
    return norm


def carbon_intensity_g_per_kwh(country_iso_code: str) -> float | None:
    """CodeCarbon's grid intensity for a country (its bundled energy-mix data), or None."""
    mix = _energy_mix()
    row = (mix or {}).get(validate_country(country_iso_code))
    try:
        return float(row["carbon_intensity"]) if row else None
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CarbonResult:
    """CodeCarbon's account of one tracked segment. Figures are None when unavailable."""

    emissions_kg: float | None
    energy_kwh: float | None
    cpu_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    duration_s: float | None = None
    country_iso_code: str = DEFAULT_COUNTRY
    error: str | None = None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN → None


def parse_emissions_csv(path: Path, run_id: str | None = None) -> dict[str, float | None] | None:
    """The row of `run_id` (else the last row) of CodeCarbon's emissions.csv, by column name."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    if run_id is not None:
        # Resumed runs append rows; an older segment's row must never stand in for this one.
        rows = [r for r in rows if r.get("run_id") == str(run_id)]
    if not rows:
        return None
    row = rows[-1]
    return {
        "emissions_kg": _float(row.get("emissions")),
        "energy_kwh": _float(row.get("energy_consumed")),
        "cpu_energy_kwh": _float(row.get("cpu_energy")),
        "gpu_energy_kwh": _float(row.get("gpu_energy")),
        "ram_energy_kwh": _float(row.get("ram_energy")),
        "duration_s": _float(row.get("duration")),
    }


def _offline_tracker(**kwargs: Any) -> Any:
    from codecarbon import OfflineEmissionsTracker

    try:  # CodeCarbon ≥ 3 replaced the save_to_* flags with an enum and warns about them
        from codecarbon import OutputMethod

        save = kwargs.pop("save_to_file", False)
        kwargs["output_methods"] = [OutputMethod.CSV] if save else []
    except ImportError:
        pass

    # Its constructor logs INFO/WARNING before it applies log_level='error', which then sticks.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return OfflineEmissionsTracker(**kwargs)


class CarbonTracker:
    """Wraps one OfflineEmissionsTracker; `start`/`stop` never raise.

        with CarbonTracker(seed_dir, country_iso_code="FRA") as tracker:
            train()
        tracker.result.emissions_kg   # None if CodeCarbon failed; tracker.result.error says why
    """

    def __init__(self, output_dir: Path | None, *, country_iso_code: str = DEFAULT_COUNTRY,
                 measure_power_secs: float = 15.0, project_name: str = "spikerl-bench",
                 output_file: str = EMISSIONS_CSV, gpu_ids: Sequence[int | str] | None = None,
                 tracker_factory: Callable[..., Any] = _offline_tracker):
        self.country_iso_code = validate_country(country_iso_code)
        if measure_power_secs <= 0:
            raise ValueError(f"measure_power_secs must be positive, got {measure_power_secs}")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.output_file = output_file
        self._kwargs: dict[str, Any] = dict(
            country_iso_code=self.country_iso_code, measure_power_secs=measure_power_secs,
            project_name=project_name, log_level="error",
            # Seeds may run side by side on one machine; CodeCarbon's lock would refuse the second.
            allow_multiple_runs=True,
            save_to_file=self.output_dir is not None,
        )
        if self.output_dir is not None:
            # 'update' keeps one row per run_id although checkpoints flush the tracker; a resumed
            # run adds one row per segment, and those rows add up.
            self._kwargs.update(output_dir=str(self.output_dir), output_file=output_file,
                                on_csv_write="update")
        if gpu_ids:
            self._kwargs["gpu_ids"] = list(gpu_ids)
        self._factory = tracker_factory
        self._tracker: Any = None
        self._error: str | None = None
        self.result: CarbonResult | None = None
        self.errors = ErrorLog()
        """Problems while tracking (failed flushes), each recorded once with a count."""

    def start(self) -> None:
        if self._tracker is not None:
            return
        try:
            if self.output_dir is not None:
                self.output_dir.mkdir(parents=True, exist_ok=True)
            tracker = self._factory(**self._kwargs)
            tracker.start()
            self._tracker = tracker
        except Exception as exc:
            self._error = f"CodeCarbon failed to start: {type(exc).__name__}: {exc}"
            log.warning("%s; training continues without emissions", self._error)

    def stop(self) -> CarbonResult:
        """Stop tracking and collect CodeCarbon's figures: emissions.csv (by column name,
        this tracker's run_id) first, then its in-memory record, then stop()'s return value."""
        if self.result is not None:
            return self.result
        tracker, self._tracker = self._tracker, None
        error = self._error if tracker is None else None
        fields: dict[str, float | None] | None = None
        if tracker is None and error is None:
            error = "CodeCarbon tracker was never started"
        if tracker is not None:
            try:
                stop_kg = _float(tracker.stop())
            except Exception as exc:
                error = f"CodeCarbon failed to stop: {type(exc).__name__}: {exc}"
            else:
                if self.output_dir is not None:
                    fields = parse_emissions_csv(self.output_dir / self.output_file,
                                                 getattr(tracker, "run_id", None))
                if fields is None:
                    fields = _from_emissions_data(getattr(tracker, "final_emissions_data", None))
                if (fields is None or fields["emissions_kg"] is None) and stop_kg is not None:
                    fields = {**(fields or {}), "emissions_kg": stop_kg}
                if fields is None or fields["emissions_kg"] is None:
                    # CodeCarbon's stop() swallows its own exceptions and then returns None.
                    error, fields = "CodeCarbon stop() returned no emissions and wrote no emissions row", None
        fields = fields or {}
        self.result = CarbonResult(
            emissions_kg=fields.get("emissions_kg"), energy_kwh=fields.get("energy_kwh"),
            cpu_energy_kwh=fields.get("cpu_energy_kwh"), gpu_energy_kwh=fields.get("gpu_energy_kwh"),
            ram_energy_kwh=fields.get("ram_energy_kwh"), duration_s=fields.get("duration_s"),
            country_iso_code=self.country_iso_code, error=error)
        if error:
            log.warning("%s; emissions are left empty", error)
        return self.result

    def flush(self) -> CarbonResult | None:
        """Figures so far while still tracking (CodeCarbon writes a row), or None. Never raises."""
        if self._tracker is None:
            return None
        try:
            kg = _float(self._tracker.flush())
        except Exception as exc:
            if self.errors.add(f"CodeCarbon flush failed: {type(exc).__name__}: {exc}"):
                log.warning("CodeCarbon flush failed: %s", exc)
            return None
        fields = None
        if self.output_dir is not None:
            fields = parse_emissions_csv(self.output_dir / self.output_file,
                                         getattr(self._tracker, "run_id", None))
        fields = fields or {"emissions_kg": kg}
        if fields.get("emissions_kg") is None:
            return None
        return CarbonResult(emissions_kg=fields.get("emissions_kg"), energy_kwh=fields.get("energy_kwh"),
                            cpu_energy_kwh=fields.get("cpu_energy_kwh"),
                            gpu_energy_kwh=fields.get("gpu_energy_kwh"),
                            ram_energy_kwh=fields.get("ram_energy_kwh"), duration_s=fields.get("duration_s"),
                            country_iso_code=self.country_iso_code)

    def __enter__(self) -> "CarbonTracker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _from_emissions_data(data: Any) -> dict[str, float | None] | None:
    if data is None:
        return None
    return {
        "emissions_kg": _float(getattr(data, "emissions", None)),
        "energy_kwh": _float(getattr(data, "energy_consumed", None)),
        "cpu_energy_kwh": _float(getattr(data, "cpu_energy", None)),
        "gpu_energy_kwh": _float(getattr(data, "gpu_energy", None)),
        "ram_energy_kwh": _float(getattr(data, "ram_energy", None)),
        "duration_s": _float(getattr(data, "duration", None)),
    }
