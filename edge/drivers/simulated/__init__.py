"""Simulated drivers, one module per device type."""
