"""Benchmarks: ``make bench`` (``python -m benchmarks [NAME ...]``).

Each benchmark measures an EnergyOps operation *and* the raw operation it stands on in the same
run, so results are ratios that mean the same on any machine.
"""
