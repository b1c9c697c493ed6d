"""The simulated air-quality stations behave like the Po Valley's, and the same seed gives the
same readings: traffic in NO2, winter inversions piling PM up, summer afternoon ozone, rain."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from simulators.airquality import SimulatedAirquality, weather
from simulators.fleet import build_fleet, schedule
from smartcity.devices.airquality import AirqualityReading

ROME = ZoneInfo("Europe/Rome")


def stations(n: int = 4, seed: int = 3) -> list[SimulatedAirquality]:
    fleet = build_fleet(seed, {"airquality": n})
    assert all(isinstance(s, SimulatedAirquality) for s in fleet)
    return fleet  # type: ignore[return-value]


def readings(start: datetime, hours: float, step_min: int = 20) -> Iterator[AirqualityReading]:
    fleet = stations()
    t = start
    while t < start + timedelta(hours=hours):
        for s in fleet:
            reading, _ = s.read(t)
            assert isinstance(reading, AirqualityReading)
            yield reading
        t += timedelta(minutes=step_min)


def local_hour(r: AirqualityReading) -> int:
    return r.ts.astimezone(ROME).hour


def test_the_same_seed_gives_the_same_readings() -> None:
    start = datetime(2026, 1, 12, tzinfo=UTC)

    def first(seed: int) -> list[str]:
        fleet = build_fleet(seed, {"airquality": 3})
        out = []
        for due, dev in schedule(fleet, start):
            if len(out) == 60:
                return out
            out.append(dev.read(due)[0].model_dump_json())
        return out

    assert first(7) == first(7)
    assert first(7) != first(8)


def test_no2_follows_the_rush_hours_on_weekdays() -> None:
    week = list(readings(datetime(2026, 3, 2, tzinfo=UTC), 5 * 24))  # Monday to Friday
    rush = statistics.mean(r.no2 for r in week if local_hour(r) in (8, 18))
    night = statistics.mean(r.no2 for r in week if local_hour(r) in (2, 3, 4))
    assert rush > 1.5 * night


def test_summer_afternoons_make_ozone_and_winter_piles_up_particulate() -> None:
    july = list(readings(datetime(2026, 7, 6, tzinfo=UTC), 7 * 24, 30))
    january = list(readings(datetime(2026, 1, 12, tzinfo=UTC), 7 * 24, 30))
    afternoon = statistics.mean(r.o3 for r in july if 13 <= local_hour(r) <= 16)
    dawn = statistics.mean(r.o3 for r in july if 4 <= local_hour(r) <= 6)
    assert afternoon > 3 * dawn
    assert afternoon > 2 * statistics.mean(r.o3 for r in january if 13 <= local_hour(r) <= 16)
    assert statistics.mean(r.pm10 for r in january) > 3 * statistics.mean(r.pm10 for r in july)


def test_still_winter_days_pile_up_until_rain_clears_the_air() -> None:
    days = range(date(2025, 11, 1).toordinal(), date(2026, 3, 1).toordinal())
    # stagnation grows over a dry spell and drops the day after rain
    after_dry = [weather(d).stagnation for d in days if all(
        weather(d - k).rain_from is None for k in range(1, 5))]  # fmt: skip
    after_rain = [weather(d).stagnation for d in days if weather(d - 1).rain_from is not None]
    assert statistics.mean(after_dry) > 2 * statistics.mean(after_rain)
    # within a rainy day, particulate falls once the rain starts
    wet = next(d for d in days if (weather(d).rain_from or 0) > 6 and weather(d).stagnation > 1)
    start = datetime.fromordinal(wet).replace(tzinfo=ROME).astimezone(UTC)
    rain_from = weather(wet).rain_from
    assert rain_from is not None
    day = list(readings(start, 24, 10))
    before = [r.pm10 for r in day if rain_from - 3 <= local_hour(r) < rain_from]
    after = [r.pm10 for r in day if rain_from + 1 <= local_hour(r) < rain_from + 4]
    assert statistics.mean(after) < 0.7 * statistics.mean(before)


def test_an_edge_agents_station_breathes_the_same_air_as_the_fleet() -> None:
    # the weather is the region's, one function of the day, whoever asks
    from edge.drivers import DRIVERS
    from edge.settings import EdgeSettings

    settings = EdgeSettings(
        device_type="airquality", device_id="aq-demo", driver="simulated", zone="Centro"
    )
    agent = DRIVERS["simulated"]["airquality"](settings)
    t = datetime(2026, 1, 20, 7, 0, tzinfo=UTC)
    (reading,) = agent.read(t).readings
    fleet = [s.read(t)[0] for s in stations(6)]
    assert isinstance(reading, AirqualityReading)
    pm10 = [r.pm10 for r in fleet]  # type: ignore[attr-defined]
    assert 0.5 * min(pm10) < reading.pm10 < 2 * max(pm10)
