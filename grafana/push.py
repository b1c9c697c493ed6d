"""``smartcity grafana push``: upload the data source, folders, boards and alert rules.

Plain HTTP against Grafana's API (stdlib ``urllib``: ``grafana-client`` is not an option, it
breaks urllib3). Every step is create-or-update by uid, so pushing twice changes nothing the
second time but the dashboards' version numbers.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from grafana import alerting, provisioning
from grafana.boards import BOARDS, FOLDERS
from grafana.sdk import DATASOURCE_UID
from grafana.settings import GrafanaSettings


class GrafanaError(Exception):
    """Grafana refused or could not be reached; the message says what to do."""


class Grafana:
    """A minimal JSON client for Grafana's HTTP API."""

    def __init__(self, settings: GrafanaSettings) -> None:
        parts = urlsplit(settings.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self.timeout = settings.timeout
        if settings.token:
            self.auth = f"Bearer {settings.token}"
        else:
            pair = f"{parts.username}:{parts.password or ''}".encode()
            self.auth = "Basic " + base64.b64encode(pair).decode()

    def request(
        self, method: str, path: str, body: object = None, missing_ok: bool = False
    ) -> tuple[int, Any]:
        """Send one request; returns (status, JSON body) for a 2xx answer in JSON, or for 404
        when ``missing_ok``. Anything else raises, with what the server said: a server that is
        not Grafana (wrong --url) must not pass for one that accepted the change."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", self.auth)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, kind, answer = resp.status, resp.headers.get_content_type(), resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return 404, _json(exc.read())
            raise GrafanaError(self._explain(exc.code, method, path, _json(exc.read()))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GrafanaError(
                f"cannot reach Grafana at {self.base} ({reason}): is it running? "
                "Check --url / SMARTCITY_GRAFANA_URL."
            ) from None
        decoded = _json(answer)
        if not isinstance(decoded, dict | list):  # Grafana answers these calls in JSON
            raise GrafanaError(
                f"{self.base} answered {status} ({kind}) to {method} {path} with "
                f"{_said(decoded)!r}, not Grafana's JSON: is --url / SMARTCITY_GRAFANA_URL "
                "Grafana's address?"
            )
        return status, decoded

    def _explain(self, status: int, method: str, path: str, body: Any) -> str:
        message = _said(body)
        if status == 401:
            return (
                f"Grafana at {self.base} refused the credentials (401 Unauthorized): check "
                "--token / SMARTCITY_GRAFANA_TOKEN (a service-account token), or the "
                "user:password in --url."
            )
        if status == 403:
            return (
                f"Grafana refused {method} {path} (403 Forbidden: {message}): the service "
                "account needs the Editor role, or Admin for data sources."
            )
        return f"{self.base} answered {status} to {method} {path}: {message or 'no message'}" + (
            "" if status != 404 else " (is --url / SMARTCITY_GRAFANA_URL Grafana's address?)"
        )

    def exists(self, path: str) -> bool:
        return self.request("GET", path, missing_ok=True)[0] == 200

    def upsert(
        self,
        get_path: str,
        create: tuple[str, str],
        update: tuple[str, str],
        body: object,
        update_body: object = None,
    ) -> str:
        """Update what ``get_path`` finds, else create it; returns "created" or "updated"."""
        if self.exists(get_path):
            self.request(*update, body if update_body is None else update_body)
            return "updated"
        self.request(*create, body)
        return "created"


def push(settings: GrafanaSettings, report: Callable[[str], None] = print) -> None:
    """Create or update, in dependency order: data source, folders, boards, alert rules."""
    g = Grafana(settings)
    source = provisioning.datasource(
        settings.influx_url, settings.influx_db, settings.influx_user, settings.influx_password
    )
    path = f"/api/datasources/uid/{DATASOURCE_UID}"
    done = g.upsert(path, ("POST", "/api/datasources"), ("PUT", path), source)
    report(f"data source {DATASOURCE_UID} ({settings.influx_url}): {done}")

    for folder in FOLDERS:
        path = f"/api/folders/{quote(folder.uid)}"
        done = g.upsert(
            path,
            ("POST", "/api/folders"),
            ("PUT", path),
            {"uid": folder.uid, "title": folder.title},
            {"title": folder.title, "overwrite": True},
        )
        report(f"folder {folder.title}: {done}")

    for board in BOARDS:
        _, answer = g.request(
            "POST",
            "/api/dashboards/db",
            {
                "dashboard": {**board.json(), "id": None},
                "folderUid": board.folder.uid,
                "overwrite": True,
                "message": "smartcity grafana push",
            },
        )
        where = answer.get("url", f"/d/{board.uid}") if isinstance(answer, dict) else ""
        report(f"dashboard {board.uid}: {g.base}{where}")

    for rule in alerting.api_rules():
        path = f"/api/v1/provisioning/alert-rules/{quote(rule['uid'])}"
        done = g.upsert(path, ("POST", "/api/v1/provisioning/alert-rules"), ("PUT", path), rule)
        report(f"alert rule {rule['uid']}: {done}")
    group = alerting.api_group()
    g.request(
        "PUT",
        f"/api/v1/provisioning/folder/{quote(group['folderUid'])}/rule-groups/"
        f"{quote(group['title'])}",
        group,
    )
    report(f"rule group {group['title']}: every {group['interval']} s")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _said(body: Any) -> str:
    """What a server said, short: Grafana's ``message``, else the body itself, cut."""
    if body is None:
        return ""
    if isinstance(body, dict) and isinstance(message := body.get("message"), str):
        return message
    text = body if isinstance(body, str) else json.dumps(body)
    return " ".join(text.split())[:300]
