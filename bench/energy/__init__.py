"""Power and energy measurement: one interface, one module per vendor, a meter on top."""
from bench.energy.base import EnergySource, EnergySourceError, Measurement, NotSupportedError, NullSource
from bench.energy.meter import Gap, PowerMeter

__all__ = ["EnergySource", "EnergySourceError", "Gap", "Measurement", "NotSupportedError",
           "NullSource", "PowerMeter"]
