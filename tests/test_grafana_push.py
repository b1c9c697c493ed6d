"""``smartcity grafana push`` against a fake Grafana HTTP API.

No Grafana server can be installed or run on this machine, so this is the one place the suite
uses a fake: a small HTTP server that implements the endpoints ``push`` calls with Grafana's
documented create/update semantics (409 on creating what exists, 404 on updating what does
not, dashboards versioned by uid), records every request, and checks the payloads against
grafana-foundation-sdk's models. It cannot show that a real Grafana accepts them; see
``tests/test_grafana_queries.py`` for the full list of what is not checked.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from grafana import alerting
from grafana.boards import BOARDS, FOLDERS
from grafana.sdk import DATASOURCE_UID, alerting_models, load_dashboard, to_json
from stack.servers import free_port

from .conftest import run_smartcity

TOKEN = "glsa_test_token"


@dataclass
class FakeGrafana:
    url: str
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    accepted_auth: str = f"Bearer {TOKEN}"

    def calls(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.fullmatch(pattern, p))

    # -- the API ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        routes = [
            ("GET", r"/api/datasources/uid/([\w-]+)", lambda u: self._get(self.datasources, u)),
            ("POST", r"/api/datasources", lambda: self._create_datasource(body)),
            ("PUT", r"/api/datasources/uid/([\w-]+)", lambda u: self._update_datasource(u, body)),
            ("GET", r"/api/folders/([\w-]+)", lambda u: self._get(self.folders, u)),
            ("POST", r"/api/folders", lambda: self._create(self.folders, body["uid"], body)),
            ("PUT", r"/api/folders/([\w-]+)", lambda u: self._update(self.folders, u, body)),
            ("POST", r"/api/dashboards/db", lambda: self._save_dashboard(body)),
            (
                "GET",
                r"/api/v1/provisioning/alert-rules/([\w-]+)",
                lambda u: self._get(self.rules, u),
            ),
            ("POST", r"/api/v1/provisioning/alert-rules", lambda: self._create_rule(body)),
            (
                "PUT",
                r"/api/v1/provisioning/alert-rules/([\w-]+)",
                lambda u: self._update_rule(u, body),
            ),
            (
                "PUT",
                r"/api/v1/provisioning/folder/([\w-]+)/rule-groups/([\w-]+)",
                lambda f, g: self._put_group(f, g, body),
            ),
        ]
        for verb, pattern, action in routes:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                return action(*m.groups())  # type: ignore[operator]
        return 404, {"message": "Not found"}

    def _get(self, store: dict[str, Any], uid: str) -> tuple[int, Any]:
        return (200, store[uid]) if uid in store else (404, {"message": "not found"})

    def _create(self, store: dict[str, Any], uid: str, body: Any) -> tuple[int, Any]:
        if uid in store:
            return 409, {"message": "already exists"}
        store[uid] = body
        return 200, body

    def _update(self, store: dict[str, Any], uid: str, body: Any) -> tuple[int, Any]:
        if uid not in store:
            return 404, {"message": "not found"}
        store[uid] = {**store[uid], **body}
        return 200, store[uid]

    def _create_datasource(self, body: Any) -> tuple[int, Any]:
        assert set(body) >= {"name", "uid", "type", "access", "url", "jsonData"}
        return self._create(self.datasources, body["uid"], body)

    def _update_datasource(self, uid: str, body: Any) -> tuple[int, Any]:
        assert body["uid"] == uid
        return self._update(self.datasources, uid, body)

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        board = body["dashboard"]
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(board["uid"])
        if old and not body.get("overwrite"):
            return 412, {"message": "version-mismatch"}
        assert board.get("id") is None, "a dashboard saved by uid must not carry an id"
        rest = {k: v for k, v in board.items() if k != "id"}
        assert to_json(load_dashboard(rest)) == rest, "payload is not a valid dashboard"
        version = old["version"] + 1 if old else 1
        self.dashboards[board["uid"]] = {"dashboard": rest, "version": version, **body}
        return 200, {"uid": board["uid"], "url": f"/d/{board['uid']}/x", "version": version}

    def _check_rule(self, rule: Any) -> None:
        assert to_json(alerting_models.Rule.from_json(rule)) == rule
        assert rule["folderUID"] in self.folders
        for step in rule["data"]:
            assert step["datasourceUid"] in {"__expr__", *self.datasources}

    def _create_rule(self, body: Any) -> tuple[int, Any]:
        self._check_rule(body)
        status, answer = self._create(self.rules, body["uid"], body)
        return (201 if status == 200 else status), answer

    def _update_rule(self, uid: str, body: Any) -> tuple[int, Any]:
        self._check_rule(body)
        return self._update(self.rules, uid, body)

    def _put_group(self, folder: str, group: str, body: Any) -> tuple[int, Any]:
        assert body["folderUid"] == folder
        assert body["title"] == group
        assert all(r["uid"] in self.rules for r in body["rules"])
        self.groups[(folder, group)] = body
        return 200, body


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    port = free_port()
    fake = FakeGrafana(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            auth = self.headers.get("Authorization", "")
            fake.requests.append((self.command, self.path, auth))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if auth != fake.accepted_auth:
                status, answer = 401, {"message": "invalid API key"}
            else:
                try:
                    status, answer = fake.handle(self.command, self.path, body)
                except (AssertionError, KeyError, TypeError) as exc:
                    status, answer = 422, {"message": f"fake Grafana refused: {exc!r}"}
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def push(*args: str) -> Any:
    return run_smartcity("grafana", "push", *args, env=_env(), timeout=120)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}


def test_push_creates_everything_then_updates_it_in_place(fake_grafana: FakeGrafana) -> None:
    args = ("--url", fake_grafana.url, "--token", TOKEN, "--influx-url", "http://influxdb:8086")
    first = push(*args)
    assert first.returncode == 0, first.stderr
    rules = set(fake_grafana.rules)
    assert set(fake_grafana.datasources) == {DATASOURCE_UID}
    assert fake_grafana.datasources[DATASOURCE_UID]["url"] == "http://influxdb:8086"
    assert set(fake_grafana.folders) == {f.uid for f in FOLDERS}
    assert {uid: d["version"] for uid, d in fake_grafana.dashboards.items()} == {
        b.uid: 1 for b in BOARDS
    }
    for board in BOARDS:
        assert fake_grafana.dashboards[board.uid]["folderUid"] == board.folder.uid
        assert f"{fake_grafana.url}/d/{board.uid}" in first.stdout
    assert rules == {r["uid"] for r in alerting.api_rules()}  # every type's and the platform's
    assert len(fake_grafana.groups) == 1
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in fake_grafana.requests)

    fake_grafana.requests.clear()
    second = push(*args)
    assert second.returncode == 0, second.stderr
    # the second push updates: nothing created, nothing duplicated, dashboards re-versioned
    assert fake_grafana.calls("POST", r"/api/datasources") == 0
    assert fake_grafana.calls("POST", r"/api/folders") == 0
    assert fake_grafana.calls("POST", r"/api/v1/provisioning/alert-rules") == 0
    assert fake_grafana.calls("PUT", r"/api/v1/provisioning/alert-rules/.+") == len(rules)
    assert fake_grafana.calls("PUT", r"/api/datasources/uid/.+") == 1
    assert set(fake_grafana.rules) == rules
    assert set(fake_grafana.datasources) == {DATASOURCE_UID}
    assert {d["version"] for d in fake_grafana.dashboards.values()} == {2}
    assert "updated" in second.stdout
    assert "created" not in second.stdout


def test_a_refused_token_says_what_to_do(fake_grafana: FakeGrafana) -> None:
    out = push("--url", fake_grafana.url, "--token", "wrong")
    assert out.returncode == 1
    assert "401" in out.stderr
    assert "--token" in out.stderr
    assert "Traceback" not in out.stderr
    assert not fake_grafana.datasources


def test_basic_auth_from_the_url(fake_grafana: FakeGrafana) -> None:
    fake_grafana.accepted_auth = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    url = fake_grafana.url.replace("http://", "http://admin:s3cret@")
    out = push("--url", url)
    assert out.returncode == 0, out.stderr
    assert len(fake_grafana.dashboards) == len(BOARDS)


def test_missing_credentials_fail_before_connecting(fake_grafana: FakeGrafana) -> None:
    out = push("--url", fake_grafana.url)
    assert out.returncode == 2
    assert "--token" in out.stderr
    assert not fake_grafana.requests


def test_an_unreachable_grafana_says_so() -> None:
    out = push("--url", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert out.returncode == 1
    assert "cannot reach Grafana" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_error_from_grafana_is_reported_with_its_message(fake_grafana: FakeGrafana) -> None:
    fake_grafana.handle = lambda *a: (500, {"message": "database is locked"})  # type: ignore[method-assign]
    out = push("--url", fake_grafana.url, "--token", TOKEN)
    assert out.returncode == 1
    assert "500" in out.stderr
    assert "database is locked" in out.stderr


@pytest.mark.parametrize(
    ("status", "content_type", "body", "said"),
    [
        # what `smartcity api` answers on Grafana's paths (the reproduction)
        (404, "application/problem+json", b'{"title": "Not Found", "status": 404}', "Not Found"),
        # a web server's welcome page, on every path
        (200, "text/html", b"<html><body><h1>Welcome to nginx!</h1></body></html>", "nginx"),
    ],
)
def test_a_server_that_is_not_grafana_fails_the_push(
    status: int, content_type: str, body: bytes, said: str
) -> None:
    """A real HTTP server that is not Grafana: no step may count as done."""
    port = free_port()

    class NotGrafana(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), NotGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = push("--url", f"http://127.0.0.1:{port}", "--token", TOKEN)
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 1, out.stdout
    assert said in out.stderr
    assert "created" not in out.stdout
    assert "updated" not in out.stdout
    assert "Traceback" not in out.stderr
