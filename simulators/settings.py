"""``smartcity simulate`` settings (``[simulate]``, ``SMARTCITY_SIMULATE_*``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field

from simulators import SIMULATORS
from smartcity.settings import MqttSettings


class SimulateSettings(MqttSettings):
    section = "simulate"

    streetlights: int = Field(100, ge=0, le=1_000_000, description="Street lights in the fleet.")
    bins: int = Field(50, ge=0, le=1_000_000, description="Waste bins in the fleet.")
    chargers: int = Field(10, ge=0, le=1_000_000, description="EV charging stations in the fleet.")
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
        1.0, ge=0, le=10_000, description="Multiplier on lamp, bin and charger fault rates."
    )
    status: bool = Field(True, description="Publish each device's retained online status first.")
    commands: bool = Field(
        True,
        description="Answer commands sent to the fleet's devices as their edge agents would "
        "(they act from the next reading on).",
    )
    progress: bool = Field(True, description="Show progress on stderr.")
    via: Literal["mqtt", "ocpp"] = Field(
        "mqtt",
        description="How the chargers report: mqtt (the contract, as edge agents do) or ocpp "
        "(OCPP 1.6J to the central system at --ocpp-url, as real chargers do).",
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

    def counts(self) -> dict[str, int]:
        return {"streetlight": self.streetlights, "wastebin": self.bins, "evcharger": self.chargers}

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
