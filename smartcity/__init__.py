"""Cremona smart-city data platform: the shared contract, settings and command line."""

__version__ = "0.1.0"
