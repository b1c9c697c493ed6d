"""``smartcity simulate`` settings (``[simulate]``, ``SMARTCITY_SIMULATE_*``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator

from simulators import SIMULATORS
from smartcity.settings import ComponentSettings, MqttSettings


def parse_fleet(value: object) -> object:
    """``airquality=20,streetlight=200`` (a flag, a variable or a config string) as a table;
    a table (a config file's, or JSON in the variable) as it is."""
    if not isinstance(value, str):
        return value
    fleet: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, count = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not TYPE=COUNT, e.g. airquality=20,streetlight=200")
        fleet[name.strip()] = count.strip()
    return fleet


class FleetSettings(ComponentSettings):
    """How many simulated devices of each type: one option keyed by type, over each type's
    default (its simulator's ``fleet_size``)."""

    fleet: dict[str, int] = Field(
        default_factory=dict,
        description="Devices per type, e.g. airquality=20,streetlight=200; a type not named "
        "keeps its default ("
        + ", ".join(f"{t}={s.fleet_size}" for t, s in SIMULATORS.items())
        + "), 0 leaves it out.",
    )
    # the flags of the first three types, from before --fleet: each simulator names its own
    # (SimulatedDevice.count_flag); a new type has only --fleet
    streetlights: int | None = Field(
        None, ge=0, le=1_000_000, description="Street lights: the same as --fleet streetlight=N."
    )
    bins: int | None = Field(
        None, ge=0, le=1_000_000, description="Waste bins: the same as --fleet wastebin=N."
    )
    chargers: int | None = Field(
        None, ge=0, le=1_000_000, description="EV charging stations: --fleet evcharger=N."
    )

    @field_validator("fleet", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return parse_fleet(value)

    @field_validator("fleet")
    @classmethod
    def _known_types(cls, fleet: dict[str, int]) -> dict[str, int]:
        for name, count in fleet.items():
            if name not in SIMULATORS:
                raise ValueError(
                    f"unknown device type {name!r}; the types are {', '.join(SIMULATORS)}"
                )
            if not 0 <= count <= 1_000_000:
                raise ValueError(f"{name}={count}: a count from 0 to 1000000")
        return fleet

    def counts(self) -> dict[str, int]:
        """Devices per type: the defaults, then the old per-type flags, then ``--fleet``."""
        sizes = {name: sim.fleet_size for name, sim in SIMULATORS.items()}
        for name, sim in SIMULATORS.items():
            given = getattr(self, sim.count_flag) if sim.count_flag else None
            if given is not None:
                sizes[name] = given
        sizes.update(self.fleet)
        return {name: n for name, n in sizes.items() if n > 0}

    def fleet_text(self) -> str:
        """The fleet as one ``--fleet`` value, every type named (for a child simulator)."""
        counts = self.counts()
        return ",".join(f"{name}={counts.get(name, 0)}" for name in SIMULATORS)


class SimulateSettings(FleetSettings, MqttSettings):
    section = "simulate"

    seed: int = Field(1, description="Same seed, counts and --start give the same messages.")
    id_prefix: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,31})?$",
        description="Put before every device id (b2- gives b2-sl-00001...): a second fleet "
        "beside a running one (smartcity up's is sl-00001...) then has devices of its own, and "
        "overwrites none of the first fleet's retained statuses.",
    )
    messages: int | None = Field(
        None, ge=1, description="Stop once this many readings are acknowledged by the broker."
    )
    speed: float | None = Field(
        None,
        ge=0,
        description="Simulated seconds per real second; 0 = as fast as possible. Never runs "
        "ahead of the real clock, so a backfill catches up and continues live; with --messages "
        "and no --start or --backfill, 0 starts far enough back that all N readings are "
        "history. Default: 1 (real time), or 0 with --messages.",
    )
    start: AwareDatetime | None = Field(
        None, description="Simulated start time, ISO 8601 (default: now minus --backfill)."
    )
    backfill: float = Field(
        0.0, ge=0, le=30 * 86_400, description="Seconds of history to simulate before now."
    )
    batch: int = Field(1, ge=1, le=1000, description="Readings per message (a device's backlog).")
    window: int = Field(
        10_000, ge=1, le=60_000, description="Messages in flight awaiting PUBACK before pausing."
    )
    fault_rate: float = Field(
        1.0, ge=0, le=10_000, description="Multiplier on every device type's fault rates."
    )
    status: bool = Field(True, description="Publish each device's retained online status first.")
    commands: bool = Field(
        True,
        description="Answer commands sent to the fleet's devices as their edge agents would "
        "(they act from the next reading on).",
    )
    progress: bool = Field(True, description="Show progress on stderr.")
    via: Literal["mqtt", "ocpp", "chirpstack"] = Field(
        "mqtt",
        description="How the fleet reaches the platform: 'mqtt' (the contract, as edge agents "
        "do), 'ocpp' (the chargers speak OCPP 1.6J to the central system at --ocpp-url, as real "
        "chargers do) or 'chirpstack' (bins as ChirpStack v4 uplink events in their sensor "
        "model's bytes, for smartcity lorawan; log in as the chirpstack account).",
    )
    lorawan_profile: str = Field(
        "milesight-em400-udl", description="--via chirpstack: the bins' sensor model."
    )
    application_id: str = Field(
        "00000000-0000-4000-8000-00000000c0de",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="--via chirpstack: the ChirpStack application id in the topics.",
    )
    ocpp_url: str = Field(
        "ws://127.0.0.1:9000/ocpp",
        description="With --via ocpp: the central system's base URL (each charger adds /<id>).",
    )
    ocpp_passwords: Path | None = Field(
        None,
        description="With --via ocpp: JSON file {charger id: OCPP password} (smartcity up "
        "writes one for its fleet); chargers not in it connect without a password.",
    )

    def charger_passwords(self) -> dict[str, str]:
        if self.ocpp_passwords is None:
            return {}
        values: dict[str, str] = json.loads(self.ocpp_passwords.read_text())
        return values

    def effective_speed(self) -> float:
        if self.speed is not None:
            return self.speed
        return 0.0 if self.messages is not None else 1.0

    def start_time(self) -> datetime:
        """--start; else now minus --backfill; with --messages at speed 0 and neither, far
        enough back that all N readings are history, so they go out as fast as the broker takes
        them (from now, no faster than real time would let them: the clock never runs ahead)."""
        from simulators.fleet import default_start

        if self.start is not None:
            return self.start
        if self.messages is not None and not self.backfill and self.effective_speed() == 0:
            per_second = sum(
                n / SIMULATORS[t].device_type.report_interval_s for t, n in self.counts().items()
            )
            return default_start(self.messages / max(per_second, 1e-9) + 60)
        return default_start(self.backfill)
