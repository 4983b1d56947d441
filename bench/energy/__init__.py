"""Power and energy measurement: one interface, one module per vendor, a meter on top,
and EnergyMonitor, the one-line API for metering your own code."""
from bench.energy.base import EnergySource, EnergySourceError, Gap, Measurement, NotSupportedError, NullSource
from bench.energy.meter import PowerMeter
from bench.energy.monitor import ComponentEnergy, EnergyMonitor, EnergyReport

__all__ = ["ComponentEnergy", "EnergyMonitor", "EnergyReport", "EnergySource", "EnergySourceError", "Gap",
           "Measurement", "NotSupportedError", "NullSource", "PowerMeter"]
