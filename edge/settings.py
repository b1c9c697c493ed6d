"""The edge agent's settings (``[edge]`` in its config file, ``SMARTCITY_EDGE_*``).

One agent serves one device. Everything is checked here, before anything connects, so an
installer's typo fails at start-up with the name of the key to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from smartcity.contract import DEVICE_ID_PATTERN, ZONE_MAX_LENGTH, ZONE_PATTERN, describe
from smartcity.devices import DEVICE_TYPES
from smartcity.settings import MqttSettings, mqtt_endpoint

#: Where the outbox goes when ``outbox`` is not set: project-local, like ``smartcity up``'s data.
DEFAULT_OUTBOX_DIR = Path("var/edge")


class EdgeSettings(MqttSettings):
    section = "edge"

    device_type: str = Field(description=f"The device's type: {', '.join(DEVICE_TYPES)}.")
    device_id: str = Field(
        pattern=DEVICE_ID_PATTERN, description="The device's id, its topic level (e.g. sl-00042)."
    )
    driver: str = Field(
        description="How the device is read: 'modbus' (meters and controllers on Modbus TCP or "
        "RTU) or 'simulated' (demos, tests); see docs/edge.md."
    )
    driver_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The driver's own settings: the [edge.driver_options] table of the config "
        "file, or JSON (see docs/edge.md for each driver's keys).",
    )
    driver_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a driver read or command may take before it is reported in lastError.",
    )
    interval: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Seconds between readings (default: the device type's reporting interval).",
    )
    zone: str | None = Field(
        None,
        pattern=ZONE_PATTERN,
        max_length=ZONE_MAX_LENGTH,
        description="The city zone (quartiere) the device is in.",
    )
    lat: float | None = Field(None, ge=-90, le=90, description="Device latitude (WGS84).")
    lon: float | None = Field(None, ge=-180, le=180, description="Device longitude (WGS84).")
    username: str | None = Field(
        None, description="Broker username (default: the one in mqtt_url); usually the device id."
    )
    password: SecretStr | None = Field(
        None, description="Broker password (default: the one in mqtt_url)."
    )
    ca_file: Path | None = Field(
        None, description="CA certificate(s) for mqtts:// when the broker's CA is not a public one."
    )
    client_id: str | None = Field(
        None, description="MQTT client id; the persistent session is keyed on it (default: id)."
    )
    outbox: Path | None = Field(
        None, description=f"Outbox SQLite file (default: {DEFAULT_OUTBOX_DIR}/<device id>.sqlite)."
    )
    outbox_max: int = Field(
        100_000,
        ge=10,
        le=10_000_000,
        description="Readings the outbox holds; when full the OLDEST are dropped and counted.",
    )
    batch_size: int = Field(
        500, ge=1, le=1000, description="Most readings per message when replaying a backlog."
    )
    window: int = Field(
        8, ge=1, le=100, description="Messages in flight awaiting their PUBACK before pausing."
    )
    heartbeat: float = Field(60.0, gt=0, le=3600, description="Seconds between health messages.")
    keepalive: int = Field(30, ge=5, le=600, description="MQTT keepalive, in seconds.")
    session_expiry: int = Field(
        86_400,
        ge=0,
        description="Seconds the broker keeps our session (and queues commands) while we are away.",
    )
    reconnect_min_delay: float = Field(
        0.5, gt=0, le=60, description="First wait before reconnecting, in seconds."
    )
    reconnect_max_delay: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between reconnection attempts, in seconds."
    )
    drain_timeout: float = Field(
        5.0,
        ge=0,
        le=300,
        description="On stop, seconds spent sending what is still waiting (and answering a "
        "command still being applied).",
    )

    @field_validator("device_type")
    @classmethod
    def _known_type(cls, name: str) -> str:
        if name not in DEVICE_TYPES:
            raise ValueError(f"must be one of {', '.join(sorted(DEVICE_TYPES))}")
        return name

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, name: str) -> str:
        from edge.drivers import DRIVERS

        if name not in DRIVERS:
            raise ValueError(f"must be one of {', '.join(sorted(DRIVERS))}")
        return name

    @field_validator("driver_options", mode="before")
    @classmethod
    def _options_json(cls, value: Any) -> Any:
        """A flag or a variable gives the table as JSON."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None

    @model_validator(mode="after")
    def _consistent(self) -> EdgeSettings:
        from edge.drivers import DRIVERS

        if self.device_type not in DRIVERS[self.driver]:
            raise ValueError(f"driver {self.driver!r} cannot read a {self.device_type}")
        options = DRIVERS[self.driver][self.device_type].Options
        try:
            options.model_validate(self.driver_options)
        except ValidationError as exc:
            raise ValueError(f"driver_options for {self.driver!r}: {describe(exc)}") from None
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise ValueError("reconnect_min_delay must not exceed reconnect_max_delay")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} does not exist")
        return self

    # -- derived values, so no other module works them out again ----------------------------

    @property
    def reading_interval(self) -> float:
        return self.interval or DEVICE_TYPES[self.device_type].report_interval_s

    @property
    def outbox_path(self) -> Path:
        return self.outbox or DEFAULT_OUTBOX_DIR / f"{self.device_id}.sqlite"

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or self.device_id

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password: the settings' own, else those in ``mqtt_url``."""
        _, _, _, url_user, url_password = mqtt_endpoint(self.mqtt_url)
        password = self.password.get_secret_value() if self.password else url_password
        return self.username or url_user, password
