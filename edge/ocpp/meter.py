"""OCPP 1.6 meter values to the contract's EV charger readings, units converted.

Every ``meterValue`` of a MeterValues (or of a StopTransaction's ``transactionData``) is one
reading at its own ``timestamp``. Of its sampled values, the measurands the contract stores are
taken: Energy.Active.Import.Register (Wh or kWh, stored in kWh), Power.Active.Import (W or kW,
stored in kW), Current.Import (A), Voltage (V) and SoC (Percent). A value for one phase counts
only when the charger sends no value for all phases: then energy and power are summed over the
phases, the current is the highest and the voltage the mean. Other measurands, and values in
``SignedData`` format, are left out. Connector 0 is the station's own meter; the station's
power and energy are otherwise the sums over its connectors.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from smartcity.devices.evcharger import MAX_CONNECTORS

#: Measurand -> (contract field, {unit: factor to the contract's unit}, the default unit).
MEASURANDS: dict[str, tuple[str, dict[str, float], str]] = {
    "Energy.Active.Import.Register": ("energy", {"Wh": 0.001, "kWh": 1.0}, "Wh"),
    "Power.Active.Import": ("power", {"W": 0.001, "kW": 1.0}, "W"),
    "Current.Import": ("current", {"A": 1.0}, "A"),
    "Voltage": ("voltage", {"V": 1.0}, "V"),
    "SoC": ("soc", {"Percent": 1.0}, "Percent"),
}
_DEFAULT_MEASURAND = "Energy.Active.Import.Register"
#: How values of single phases make one (when no value for all phases is sent).
_PHASES: dict[str, Callable[[list[float]], float]] = {
    "energy": sum,
    "power": sum,
    "current": max,
    "voltage": statistics.fmean,
}


class BadValue(ValueError):
    """A sampled value that is no number in a known unit: the charger gets a CALLERROR."""


def parse_time(text: str) -> datetime:
    """An OCPP dateTime; one without an offset is UTC (as OCPP 1.6 says every time is)."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise BadValue(f"timestamp {text[:40]!r} is not an ISO 8601 date-time") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def sample_values(sampled: list[Mapping[str, Any]]) -> dict[str, float]:
    """The contract's fields from one meterValue's sampled values (snake_case keys)."""
    whole: dict[str, float] = {}
    phased: dict[str, list[float]] = {}
    for value in sampled:
        if value.get("format") == "SignedData":
            continue
        measurand = value.get("measurand") or _DEFAULT_MEASURAND
        if measurand not in MEASURANDS:
            continue
        field, factors, default = MEASURANDS[measurand]
        unit = value.get("unit") or default
        if unit not in factors:
            raise BadValue(f"{measurand} in {unit!r}: expected one of {', '.join(factors)}")
        try:
            number = float(value["value"]) * factors[unit]
        except (TypeError, ValueError):
            raise BadValue(f"{measurand} value {str(value['value'])[:40]!r} is no number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise BadValue(f"{measurand} value {value['value']!r} is no finite number")
        if value.get("phase"):
            phased.setdefault(field, []).append(number)
        else:
            whole[field] = number
    for field, numbers in phased.items():
        whole.setdefault(field, _PHASES.get(field, max)(numbers))
    return whole


def reading(connectors: dict[int, dict[str, Any]], station: dict[str, float]) -> dict[str, Any]:
    """The reading (JSON-ready, without ``ts`` and ``seq``) of a charger's connectors now."""
    listed = [
        {
            "connectorId": cid,
            "status": c.get("status", "Available"),
            "power": round(c.get("power", 0.0), 4),
            "energy": round(c.get("energy", 0.0), 4),
            **{k: round(c[k], 4) for k in ("current", "voltage", "soc") if k in c},
        }
        for cid, c in sorted(connectors.items())
        if 1 <= cid <= MAX_CONNECTORS
    ] or [{"connectorId": 1, "status": "Available", "power": 0.0, "energy": 0.0}]
    power = station.get("power", sum(c["power"] for c in listed))
    energy = station.get("energy", sum(c["energy"] for c in listed))
    return {
        "power": round(power, 4),
        "energy": round(energy, 4),
        "connectors": listed,
    }
