"""Power and energy measurement: one interface, one module per vendor, a meter on top."""
from bench.power.base import EnergySource, EnergySourceError, Measurement, NotSupportedError, NullSource
from bench.power.meter import POWER_CSV_COLUMNS, Gap, PowerMeter

__all__ = ["EnergySource", "EnergySourceError", "Gap", "Measurement", "NotSupportedError",
           "NullSource", "POWER_CSV_COLUMNS", "PowerMeter"]
