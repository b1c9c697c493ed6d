"""``smartcity ocpp`` settings (``[ocpp]`` in the config file, ``SMARTCITY_OCPP_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from smartcity.settings import InfluxSettings, MqttSettings, mqtt_endpoint


class OcppSettings(MqttSettings, InfluxSettings):
    section = "ocpp"

    host: str = Field("0.0.0.0", description="Address the OCPP WebSocket server listens on.")
    port: int = Field(9000, ge=0, le=65_535, description="Its port (0 = any free port).")
    cert_file: Path | None = Field(
        None,
        description="TLS certificate (PEM, chain first): with --key-file, chargers connect with "
        "wss:// (OCPP security profile 2: Basic auth over TLS).",
    )
    key_file: Path | None = Field(None, description="The certificate's private key (PEM).")
    registry_url: str = Field(
        "sqlite:///var/registry.db",
        description="Device registry (SQLAlchemy URL), the API's: the chargers, their OCPP "
        "password hashes and boot information.",
    )
    state_dir: Path = Field(
        Path("var/ocpp"),
        description="Folder of the gateway's state: the outbox, reading counters, transaction "
        "ids and the idTag hashing key. Keep it across restarts.",
    )
    heartbeat_interval: int = Field(
        300, ge=1, le=86_400, description="Heartbeat interval given to chargers at boot, in s."
    )
    offline_after: float = Field(
        3.0,
        ge=1.0,
        le=100.0,
        description="A charger silent for this many heartbeat intervals is reported offline.",
    )
    command_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds a charger has to answer a command; without an answer the command "
        "expires.",
    )
    username: str | None = Field(
        None, description="Broker username (default: the one in mqtt_url); usually ocpp."
    )
    password: SecretStr | None = Field(
        None, description="Broker password (default: the one in mqtt_url)."
    )
    ca_file: Path | None = Field(None, description="CA certificate(s) for an mqtts:// broker.")
    client_id: str = Field(
        "ocpp", description="MQTT client id (the broker binds the ocpp account to 'ocpp')."
    )
    window: int = Field(
        32, ge=1, le=1000, description="Messages in flight awaiting their PUBACK before pausing."
    )
    batch_size: int = Field(
        500, ge=1, le=1000, description="Most readings per message when replaying a backlog."
    )
    outbox_max: int = Field(
        1_000_000,
        ge=10,
        le=100_000_000,
        description="Messages the outbox holds; when full the OLDEST are dropped and counted.",
    )
    session_expiry: int = Field(
        86_400,
        ge=0,
        description="Seconds the broker keeps the gateway's session (and queues commands).",
    )
    influx_deadletters: bool = Field(
        True,
        description="Also write each refused OCPP frame to InfluxDB's deadletter measurement "
        "(--influx-url, --influx-db), beside publishing it on the dead-letter topic.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> OcppSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (wss://), or neither (ws://)")
        for path in (self.cert_file, self.key_file, self.ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        return self

    def credentials(self) -> tuple[str | None, str | None]:
        """Broker username and password: the settings' own, else those in ``mqtt_url``."""
        _, _, _, url_user, url_password = mqtt_endpoint(self.mqtt_url)
        password = self.password.get_secret_value() if self.password else url_password
        return self.username or url_user, password

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "gateway.sqlite"
