"""The API's settings (``[api]`` in the config file, ``SMARTCITY_API_*``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import AwareDatetime, Field, SecretStr, field_validator

from smartcity.devices.wastebin import FULL_LEVEL
from smartcity.kpis import FRESH_MINUTES
from smartcity.settings import InfluxSettings, MqttSettings

#: Where ``scripts/bootstrap`` installs bootstrap-italia (``npm ci --prefix api/web``).
DEFAULT_ASSETS = Path(__file__).parent / "web" / "node_modules" / "bootstrap-italia" / "dist"
MIN_ADMIN_KEY_CHARS = 32


class ApiSettings(MqttSettings, InfluxSettings):
    section = "api"

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65_535, description="Port to listen on.")
    registry_url: str = Field(
        "sqlite:///var/registry.db",
        description="Device registry and API keys (SQLAlchemy URL): sqlite:///path (default, "
        "an embedded file) or postgresql+psycopg://user:pass@host/db.",
    )
    admin_key: SecretStr | None = Field(
        None,
        description=f"Bootstrap admin API key (at least {MIN_ADMIN_KEY_CHARS} characters), stored "
        "hashed at start-up so a fresh deployment can create other keys. Prefer "
        "'smartcity api create-key --scope admin' on the server.",
    )
    rate_limit: int = Field(
        600, ge=1, le=1_000_000, description="Requests per minute per client without an API key."
    )
    rate_limit_keyed: int = Field(
        6000, ge=1, le=1_000_000, description="Requests per minute per API key."
    )
    trusted_proxies: str = Field(
        "",
        description="Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto headers are "
        "believed, comma-separated addresses or networks (e.g. 10.0.0.5,172.18.0.0/16). None by "
        "default: a client's own headers never choose the address it is rate-limited by.",
    )
    offline_after_minutes: float = Field(
        float(FRESH_MINUTES),
        gt=0,
        le=7 * 24 * 60,
        description="A device silent for longer is offline: an alert, and out of live KPIs "
        "(the boards' 'now' KPI panels use the default).",
    )
    lookback_hours: float = Field(
        24.0, gt=0, le=31 * 24, description="How far back the API looks for a device's last data."
    )
    bin_threshold: float = Field(
        FULL_LEVEL,
        gt=0,
        le=1,
        description="Fill level at which a bin is full (alert and KPI; the boards use the "
        "default).",
    )
    kpi_cache_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Live KPIs, alerts and zone figures are recomputed at most this often; "
        "meanwhile the last figures are served (0 = every request).",
    )
    max_series_points: int = Field(
        5000, ge=10, le=100_000, description="Most points one time-series request may return."
    )
    max_range_days: int = Field(
        366,
        ge=1,
        le=3660,
        description="Longest time range of a time-series request (long ranges read hourly or "
        "daily rollups, so a year costs hundreds of points, not millions of readings).",
    )
    query_timeout: float = Field(20.0, gt=0, le=600, description="InfluxDB query timeout (s).")
    as_of: AwareDatetime | None = Field(
        None,
        description="Serve the city as it was at this moment instead of now: for replays of "
        "recorded data and reproducible tests.",
    )
    assets_dir: Path = Field(
        DEFAULT_ASSETS,
        description="bootstrap-italia's dist folder (installed by scripts/bootstrap via npm).",
    )
    command_timeout: float = Field(
        120.0,
        gt=0,
        le=7 * 86_400,
        description="A command no device answered within this many seconds is shown as "
        "expired (an answer that comes later still counts). An edge agent answers within a "
        "second when online; two minutes leave room for a reconnecting one.",
    )
    grafana_url: str | None = Field(
        None, description="Grafana base URL, to link each service to its dashboards."
    )
    # device credentials (/v1/devices/{id}/credentials): the broker at mqtt_url, as its admin
    broker_admin_password_file: Path = Field(
        Path("var/mosquitto/passwords/smartcity-admin"),
        description="File holding the broker admin's password, for device credentials "
        "(smartcity up writes it and passes it; with docker-compose, write "
        "MQTT_PASSWORD_SMARTCITY_ADMIN of .env to a 0600 file). Read at each request.",
    )
    broker_ca_file: Path | None = Field(
        None, description="CA certificate of an mqtts:// broker, for device credentials."
    )

    @field_validator("admin_key")
    @classmethod
    def _strong_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_KEY_CHARS} characters; generate one with "
                "'smartcity api create-key --scope admin' instead"
            )
        return key

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, proxies: str) -> str:
        found = [p.strip() for p in proxies.split(",") if p.strip()]
        for p in found:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(
                    f"{p!r} is not an IP address or network; list the proxies' addresses, "
                    "e.g. 127.0.0.1,10.0.0.0/8"
                ) from None
        return ",".join(found)

    @field_validator("registry_url")
    @classmethod
    def _sqlalchemy_url(cls, url: str) -> str:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if not scheme.startswith(("sqlite", "postgresql")):
            raise ValueError("must be sqlite:///path/registry.db or postgresql+psycopg://...")
        return url
