"""``smartcity grafana push`` settings (``[grafana]``, ``SMARTCITY_GRAFANA_*``).

The InfluxDB settings it inherits describe the data source as *Grafana* reaches it: with Grafana
in compose that is ``http://influxdb:8086``, not the address this machine uses.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from smartcity.settings import InfluxSettings


class GrafanaSettings(InfluxSettings):
    section = "grafana"

    url: str = Field(
        "http://127.0.0.1:3000",
        description="Grafana base URL (http://user:password@host:3000 for basic auth instead "
        "of a token).",
    )
    token: str | None = Field(
        None, description="Grafana service-account token with the Editor or Admin role."
    )
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for each request.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://grafana.example:3000")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> GrafanaSettings:
        if not self.token and not urlsplit(self.url).username:
            raise ValueError(
                "Grafana needs credentials: give --token (a service-account token, "
                "SMARTCITY_GRAFANA_TOKEN) or put user:password in --url"
            )
        return self
