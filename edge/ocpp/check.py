"""``smartcity edge check --ocpp ID``: is this charger set up, and is it talking to us now?

Run on the gateway's host, with the gateway's settings (``[ocpp]`` of the config file or
``SMARTCITY_OCPP_*``): it reads the registry (registered as a charger, not revoked, an OCPP
password issued, its last BootNotification) and the gateway's state (connected now, last
message, refused logins), one PASS/FAIL line each with what to do next.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from edge.check import Report
from edge.ocpp.settings import OcppSettings
from edge.ocpp.store import Store
from smartcity.broker_acl import OCPP_DEVICE_TYPE
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from smartcity.settings import SettingsError, load


def run(charger_id: str, args: argparse.Namespace) -> int:
    report = Report()
    try:
        _check(charger_id, args, report)
    finally:
        print(report.render(), flush=True)
    return 1 if report.failed else 0


def _check(charger_id: str, args: argparse.Namespace, report: Report) -> None:
    try:
        settings = load(OcppSettings, args)
    except SettingsError as exc:
        report.fail("config", str(exc), "fix the [ocpp] settings (smartcity ocpp --help)")
        return
    engine = make_engine(settings.registry_url, create=False)
    try:
        with Session(engine) as session:
            device = session.get(Device, charger_id)
    finally:
        engine.dispose()
    provision = f"smartcity devices provision --device-type evcharger --device-id {charger_id}"
    if device is None or device.device_type != OCPP_DEVICE_TYPE:
        report.fail("registry", f"{charger_id} is not a registered charger", provision)
        return
    if device.revoked_at is not None:
        report.fail("registry", f"revoked on {device.revoked_at:%Y-%m-%d}", provision)
        return
    if device.ocpp_password_hash is None:
        report.fail("registry", "no OCPP password issued", f"smartcity devices rotate {charger_id}")
        return
    report.ok("registry", f"{charger_id}: charger in {device.zone}, OCPP password issued")
    if device.booted_at is None:
        report.fail(
            "boot",
            "the charger never sent a BootNotification",
            "enter the URL, charge point id and password in the charger (docs/ocpp.md)",
        )
    else:
        report.ok(
            "boot",
            f"{device.charger_vendor} {device.charger_model} serial {device.charger_serial} "
            f"firmware {device.charger_firmware}, last boot {device.booted_at:%Y-%m-%d %H:%M} UTC",
        )
    if not settings.outbox_path.exists():
        report.fail(
            "gateway",
            f"no gateway state at {settings.outbox_path}",
            "run this on the gateway's host, with its --state-dir (SMARTCITY_OCPP_STATE_DIR)",
        )
        return
    store = Store(settings.outbox_path)
    try:
        row = store.charger_row(charger_id)
        depth = store.depth
    finally:
        store.close()
    if row is None:
        report.fail("gateway", "the charger never connected", "check its central system URL")
        return
    connected, last_seen, wrong = row
    seen = (
        datetime.fromtimestamp(last_seen, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if last_seen
        else "never"
    )
    if connected:
        report.ok("gateway", f"connected now; last seen {seen}; outbox {depth} waiting")
    else:
        report.fail("gateway", f"not connected; last seen {seen}", "check its network and power")
    if wrong:
        report.warn("logins", f"{wrong} logins refused for a wrong OCPP password")
