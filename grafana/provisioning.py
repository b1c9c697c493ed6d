"""Grafana's provisioning: the InfluxDB data source, dashboard providers (one per folder), and
the alert rules, as dicts for both the files compose mounts and the HTTP API ``push`` calls."""

from __future__ import annotations

from typing import Any

from grafana.boards import FOLDERS
from grafana.sdk import DATASOURCE_UID
from smartcity.settings import InfluxSettings

#: InfluxDB as Grafana reaches it inside docker-compose (service ``influxdb``).
COMPOSE_INFLUX_URL = "http://influxdb:8086"
DATABASE: str = InfluxSettings.model_fields["influx_db"].default
#: Where compose mounts ``grafana/dashboards`` in the Grafana container.
DASHBOARDS_MOUNT = "/etc/grafana/dashboards"
DATASOURCE_NAME = "InfluxDB Cremona"


def datasource(
    url: str = COMPOSE_INFLUX_URL,
    database: str = DATABASE,
    user: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """The data source as ``POST /api/datasources`` takes it (and, less the secret, the file)."""
    data: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": url,
        "isDefault": True,
        "jsonData": {
            "dbName": database,
            "httpMode": "POST",
            # the finest figure stored (ingester health) comes every 10 s
            "timeInterval": "10s",
        },
    }
    if user:
        data["user"] = user
        data["secureJsonData"] = {"password": password or ""}
    return data


def datasources_file() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{"orgId": 1, **datasource(), "editable": False}],
    }


def dashboards_file() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": folder.uid,
                "orgId": 1,
                "folder": folder.title,
                "folderUid": folder.uid,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": f"{DASHBOARDS_MOUNT}/{folder.uid}"},
            }
            for folder in FOLDERS
        ],
    }
