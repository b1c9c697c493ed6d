"""Boards and provisioning as code: schema, stable uids, committed files current, YAML sound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from grafana import alerting, build, provisioning
from grafana.boards import BOARDS, FOLDERS
from grafana.panels import PANELS
from grafana.sdk import DATASOURCE_UID, alerting_models, load_dashboard, to_json
from smartcity.devices import DEVICE_TYPES

ROOT = Path(__file__).parents[1]
COMPOSE_INFLUX_SERVICE = "influxdb"


def test_every_board_round_trips_through_the_sdk_models() -> None:
    """Read back with ``Dashboard.from_json``, a board must serialise to the same JSON: any key
    the SDK's schema does not know (a typo, a wrong nesting) would be dropped and differ."""
    for board in BOARDS:
        data = board.json()
        assert to_json(load_dashboard(data)) == data, board.uid
        assert data["schemaVersion"] >= 39


def test_every_alert_rule_round_trips_through_the_sdk_models() -> None:
    for rule in alerting.api_rules():
        assert to_json(alerting_models.Rule.from_json(rule)) == rule, rule["uid"]


def test_uids_are_stable_unique_and_valid() -> None:
    first = [b.json()["uid"] for b in BOARDS]
    assert first == [b.json()["uid"] for b in BOARDS]
    assert first == [b.uid for b in BOARDS]
    rules = [r["uid"] for r in alerting.api_rules()]
    for uid in [*first, *rules, *(f.uid for f in FOLDERS)]:
        assert 1 <= len(uid) <= 40
        assert uid.replace("-", "").isalnum()
    assert len(set(first)) == len(first)
    assert len(set(rules)) == len(rules)


def test_committed_files_are_what_build_writes() -> None:
    assert build.stale() == [], "run: smartcity grafana build"
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "grafana", "build", "--check"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_build_check_names_a_stale_file(tmp_path: Path) -> None:
    for path, text in build.artifacts().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert build.stale(tmp_path) == []
    board = next(iter(tmp_path.glob("dashboards/*/*.json")))
    board.write_text(board.read_text().replace("Cremona", "Crema"))
    leftover = tmp_path / "dashboards/old.json"
    leftover.write_text("{}")
    stale = build.stale(tmp_path)
    assert set(stale) == {board.relative_to(tmp_path), leftover.relative_to(tmp_path)}
    assert set(build.write(tmp_path)) == set(stale)
    assert build.stale(tmp_path) == []
    assert not leftover.exists()


def test_every_board_has_zone_and_device_type_variables_italian_titles_english_help() -> None:
    for board in BOARDS:
        data = board.json()
        names = {v["name"] for v in data["templating"]["list"]}
        assert {"zone", "device_type"} <= names, board.uid
        assert data["description"], board.uid
        for panel in data["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["title"], board.uid
            assert panel.get("description"), (board.uid, panel["title"])
            if panel.get("targets") and panel["type"] in ("stat", "timeseries", "bargauge"):
                assert "unit" in panel["fieldConfig"]["defaults"], (board.uid, panel["title"])
                assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    for board in BOARDS:
        cells: set[tuple[int, int]] = set()
        for panel in board.json()["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (board.uid, panel["title"])
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & mine, (board.uid, panel["title"])
            cells |= mine


def test_a_board_per_device_type_and_an_alert_rule_per_fault() -> None:
    uids = {b.uid for b in BOARDS}
    assert {p.board_uid for p in PANELS.values()} <= uids
    assert set(PANELS) == set(DEVICE_TYPES)
    titles = {r["uid"] for r in alerting.api_rules()}
    for name, panels in PANELS.items():
        assert panels.alerts(), f"{name} has no alert rule"
    by_type = {r.uid for p in PANELS.values() for r in p.alerts()}
    assert {"cremona-lamp-failure", "cremona-bin-full", "cremona-bin-burning",
            "cremona-charger-faulted", "cremona-air-pm10"} <= by_type  # fmt: skip
    assert by_type | {"cremona-device-offline", "cremona-ingest-stalled"} == titles


def load(path: str) -> dict:
    data: dict = yaml.safe_load((ROOT / "grafana/provisioning" / path).read_text())
    assert data["apiVersion"] == 1
    return data


def test_datasource_points_at_the_compose_influxdb() -> None:
    (source,) = load("datasources/smartcity.yaml")["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["url"] == f"http://{COMPOSE_INFLUX_SERVICE}:8086"
    assert source["jsonData"]["dbName"] == provisioning.DATABASE == "smartcity"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert COMPOSE_INFLUX_SERVICE in compose["services"]


def test_dashboard_providers_cover_every_board_file() -> None:
    providers = load("dashboards/smartcity.yaml")["providers"]
    by_path = {p["options"]["path"]: p for p in providers}
    for board in BOARDS:
        path = f"{provisioning.DASHBOARDS_MOUNT}/{board.folder.uid}"
        assert by_path[path]["folderUid"] == board.folder.uid
        assert (ROOT / "grafana/dashboards" / board.folder.uid / f"{board.uid}.json").is_file()


def test_alert_rules_file_is_the_api_rules_in_file_form() -> None:
    (group,) = load("alerting/smartcity.yaml")["groups"]
    folders = {p["folder"] for p in load("dashboards/smartcity.yaml")["providers"]}
    assert group["folder"] in folders  # file provisioning finds the folder by its title
    api = {r["uid"]: r for r in alerting.api_rules()}
    for rule in group["rules"]:
        expected = {k: v for k, v in api[rule["uid"]].items() if k not in alerting._GROUP_KEYS}
        assert rule == expected
        (source,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
        assert source["datasourceUid"] == DATASOURCE_UID
        assert source["relativeTimeRange"]["from"] > 0
    assert json.dumps(group).count("$timeFilter") >= len(group["rules"]) - 1
