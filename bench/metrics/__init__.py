"""Calculators on finished runs: GPS-UP against a baseline, energy/time to a target, carbon equivalents."""
