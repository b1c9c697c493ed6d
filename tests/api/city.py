"""The test city: what the simulator publishes (replayed from its own schedule) plus a few
hand-made messages, and the figures the API must derive from them, computed here in plain Python
so they check InfluxQL and the API independently."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from simulators.fleet import build_fleet, schedule
from smartcity.devices import Event, Reading
from smartcity.devices.airquality import EAQI_BANDS_IT, AirqualityReading, eaqi_band
from smartcity.devices.evcharger import Connector, EvchargerReading
from smartcity.devices.streetlight import StreetlightReading

#: A January day and night, 05:00 to 01:00 local time: lamps on until dawn and from dusk,
#: dimmed after 23:00; the morning collection round empties bins that then fill all day;
#: chargers in use and failing now and then. The seed is one where every figure is non-zero.
START = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
STOP = START + timedelta(hours=20)
AS_OF = STOP
SEED = 21
FAULT_RATE = 150.0
COUNTS = {"streetlight": 6, "wastebin": 16, "evcharger": 3, "airquality": 4}
SIM_ARGS = (
    "--fleet", ",".join(f"{t}={n}" for t, n in COUNTS.items()), "--seed", str(SEED),
    "--fault-rate", str(FAULT_RATE), "--start", START.isoformat(), "--speed", "0", "--no-progress",
)  # fmt: skip
OFFLINE_AFTER = timedelta(minutes=15)
THRESHOLD = 0.8
#: Hand-made devices: one that went silent two hours ago, one whose Last Will just fired.
GONE = "sl-gone"
LAST_WILL = "ev-lw"


@dataclass
class Sent:
    """Everything that reaches InfluxDB, per device."""

    readings: dict[str, list[Reading]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    zone: dict[str, str] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)
    place: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: device -> (state, time) of its last status message
    status: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    simulated_messages: int = 0

    def add(self, kind: str, device_id: str, zone: str, reading: Reading) -> None:
        self.kind[device_id], self.zone[device_id] = kind, zone
        self.readings[device_id].append(reading)


def simulated() -> Sent:
    sent = Sent()
    fleet = build_fleet(SEED, COUNTS, FAULT_RATE)
    for dev in fleet:
        p = dev.placement
        sent.place[dev.device_id] = (p.lat, p.lon)
        sent.status[dev.device_id] = ("online", START)
    for due, dev in schedule(fleet, START):
        if due >= STOP:
            break
        reading, events = dev.read(due)
        sent.add(dev.device_type.name, dev.device_id, dev.placement.zone, reading)
        sent.events[dev.device_id] += events
        sent.simulated_messages += 1
    return sent


def gone_readings() -> list[StreetlightReading]:
    t0 = AS_OF - timedelta(hours=2)
    return [
        StreetlightReading(
            ts=t0 + timedelta(minutes=i), seq=i, powerState="off", illuminanceLevel=0.0,
            activePower=0.0, totalActiveEnergyImport=10.0, voltage=230.0, current=0.0,
            ratedPower=70.0, status="ok",
        )
        for i in range(3)
    ]  # fmt: skip


def last_will_readings() -> list[EvchargerReading]:
    return [
        EvchargerReading(
            ts=AS_OF - timedelta(minutes=3), seq=0, power=0.0, energy=100.0,
            connectors=[Connector(connectorId=1, status="Unavailable", power=0.0, energy=100.0)],
        )
    ]  # fmt: skip


def everything() -> Sent:
    sent = simulated()
    for r in gone_readings():
        sent.add("streetlight", GONE, "Po", r)
    for r in last_will_readings():
        sent.add("evcharger", LAST_WILL, "Zaist", r)
    sent.status[LAST_WILL] = ("offline", AS_OF - timedelta(minutes=1))
    return sent


# -- the figures the API must give ---------------------------------------------------------


def latest(sent: Sent, kind: str) -> dict[str, Reading]:
    return {d: rs[-1] for d, rs in sent.readings.items() if sent.kind[d] == kind}


def fresh(sent: Sent, kind: str) -> dict[str, Any]:
    return {d: r for d, r in latest(sent, kind).items() if r.ts > AS_OF - OFFLINE_AFTER}


def spread(sent: Sent, kind: str, meter: str) -> float:
    return sum(
        max(getattr(r, meter) for r in rs) - min(getattr(r, meter) for r in rs)
        for d, rs in sent.readings.items()
        if sent.kind[d] == kind
    )


def events(sent: Sent, kind: str) -> list[tuple[str, Event]]:
    return [(d, e) for d, es in sent.events.items() for e in es if getattr(e, "kind", "") == kind]


def lighting_kpis(sent: Sent) -> dict[str, float]:
    now = fresh(sent, "streetlight").values()
    lamp_readings = [
        r for d, rs in sent.readings.items() if sent.kind[d] == "streetlight" for r in rs
    ]
    per_reading_kwh = 60 / 3.6e6
    full = sum(r.ratedPower for r in lamp_readings if r.activePower > 0) * per_reading_kwh
    saved = (
        sum(
            r.ratedPower - r.activePower
            for r in lamp_readings
            if r.powerState == "low" and r.activePower > 0
        )
        * per_reading_kwh
    )
    return {
        "lamps_reporting": len(now),
        "lamps_on": sum(r.activePower > 0 for r in now),
        "lamps_failed": sum(r.status != "ok" for r in now),
        "energy_24h": spread(sent, "streetlight", "totalActiveEnergyImport"),
        "energy_saved_24h": saved,
        "dimming_saving_share_24h": 100 * saved / full,
    }


def full_bins(sent: Sent) -> dict[str, Any]:
    return {d: r for d, r in fresh(sent, "wastebin").items() if r.fillingLevel >= THRESHOLD}


def waste_kpis(sent: Sent) -> dict[str, Any]:
    now = fresh(sent, "wastebin")
    emptied = events(sent, "emptied")
    volume: Counter[str] = Counter()
    for _d, e in emptied:
        volume[e.storedWasteKind] += e.collectedLevel
    breakdown: dict[str, dict[str, int]] = defaultdict(dict)
    for d, r in full_bins(sent).items():
        breakdown[r.storedWasteKind][sent.zone[d]] = (
            breakdown[r.storedWasteKind].get(sent.zone[d], 0) + 1
        )
    total = sum(volume.values())
    return {
        "bins_reporting": len(now),
        "bins_full": len(full_bins(sent)),
        "bins_full_breakdown": dict(breakdown),
        "bins_burning": sum(r.status == "burning" for r in now.values()),
        "collections_24h": len(emptied),
        "separate_collection_share": 100 * (total - volume["residual"]) / total if total else None,
    }


def charging_kpis(sent: Sent) -> dict[str, float]:
    now = fresh(sent, "evcharger").values()

    def count(status: str) -> int:
        return sum(c.status == status for r in now for c in r.connectors)

    return {
        "stations_reporting": len(now),
        "connectors_available": count("Available"),
        "connectors_charging": count("Charging"),
        "connectors_faulted": count("Faulted"),
        "energy_delivered_24h": spread(sent, "evcharger", "energy"),
        "sessions_24h": len(events(sent, "sessionStop")),
    }


def air_alerts(r: AirqualityReading) -> list[str]:
    """The alert kinds a station's latest reading raises."""
    if r.status == "sensorFault":
        return ["station_faulted"]
    limits = {"pm10_over_limit": r.pm10 > 50, "no2_over_limit": r.no2 > 200,
              "o3_over_threshold": r.o3 > 180}  # fmt: skip
    return [kind for kind, over in limits.items() if over]


def air_kpis(sent: Sent) -> dict[str, Any]:
    """The worst station's days (Rome time) and hours whose mean is over the EU limit and PM2.5
    mean (all of the test's data is in 2026), and the index band of the latest fresh readings:
    the worst, and stations per band."""
    rome = ZoneInfo("Europe/Rome")
    days: dict[str, float] = {}
    hours: dict[str, float] = {}
    pm25: dict[str, float] = {}
    for d, rs in sent.readings.items():
        if sent.kind[d] != "airquality":
            continue
        by_day: dict[object, list[float]] = defaultdict(list)
        by_hour: dict[object, list[float]] = defaultdict(list)
        for r in rs:
            assert isinstance(r, AirqualityReading)
            local = r.ts.astimezone(rome)
            by_day[local.date()].append(r.pm10)
            by_hour[local.replace(minute=0, second=0, microsecond=0)].append(r.no2)
        days[d] = sum(sum(v) / len(v) > 50 for v in by_day.values())
        hours[d] = sum(sum(v) / len(v) > 200 for v in by_hour.values())
        pm25[d] = sum(r.pm25 for r in rs) / len(rs)  # type: ignore[attr-defined]
    bands = [eaqi_band(r) for r in fresh(sent, "airquality").values()]
    return {
        "stations_reporting": len(bands),
        "pm10_days_over_limit": max(days.values()),
        "no2_hours_over_limit": max(hours.values()),
        "pm25_annual_mean": max(pm25.values()),
        "eaqi_band": max(bands),
        "eaqi_breakdown": dict(Counter(EAQI_BANDS_IT[b - 1] for b in bands)),
    }


def offline(sent: Sent, registered: set[str]) -> dict[str, datetime | None]:
    """Device -> since when it is offline (None: registered, never seen)."""
    out: dict[str, datetime | None] = {}
    for d in set(sent.readings) | registered:
        rs = sent.readings.get(d)
        last = rs[-1].ts if rs else None
        state, when = sent.status.get(d, ("online", START))
        if state == "offline" and (last is None or when > last):
            out[d] = when
        elif last is None:
            out[d] = None
        elif last <= AS_OF - OFFLINE_AFTER:
            out[d] = last
    return out
