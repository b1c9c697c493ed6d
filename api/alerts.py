"""Alerts from the live state: each device type's own, plus devices gone silent."""

from __future__ import annotations

from collections.abc import Iterator

from api.kpis import KPI_MODULES, AlertDraft
from api.schemas.alerts import AlertPublic
from api.schemas.common import Text
from api.state import CityState

#: Messages of the alerts of no single type; each type's are in its KPI module.
GENERIC_MESSAGES: dict[str, tuple[str, str]] = {
    "device_offline": (
        "Dispositivo senza dati da {minutes} minuti",
        "Device silent for {minutes} minutes",
    ),
    "device_never_seen": (
        "Dispositivo registrato senza dati nelle ultime {hours} ore",
        "Registered device with no data in the last {hours} hours",
    ),
}
MESSAGES: dict[str, tuple[str, str]] = {
    **GENERIC_MESSAGES,
    **{kind: text for k in KPI_MODULES.values() for kind, text in k.alert_messages.items()},
}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def build_alerts(state: CityState) -> list[AlertPublic]:
    """Every alert now: the most severe first, then by device (once per state)."""
    return state.derive("alerts", lambda: _build(state))


def _build(state: CityState) -> list[AlertPublic]:
    alerts = [
        _public(a)
        for t, k in KPI_MODULES.items()
        for a in k.alerts(state.snapshots[t], state.settings)
    ]
    alerts += list(_offline(state))
    alerts.sort(key=lambda a: (SEVERITY_ORDER[a.severity], a.kind, a.device_id))
    return alerts


def _text(key: str, **values: object) -> Text:
    it, en = MESSAGES[key]
    return Text(it=it.format(**values), en=en.format(**values))


def _public(a: AlertDraft) -> AlertPublic:
    d = a.device
    values: dict[str, object] = {"value": a.value, **a.detail}
    values |= KPI_MODULES[d.device_type].message_values(a)
    return AlertPublic(
        id=f"{a.kind}:{d.device_id}",
        kind=a.kind,
        severity=a.severity,
        device_id=d.device_id,
        device_type=d.device_type,
        zone=d.zone,
        observed_at=d.time,
        value=a.value,
        message=_text(a.kind, **values),
        detail=a.detail,
    )


def _offline(state: CityState) -> Iterator[AlertPublic]:
    """Devices whose last data is older than the limit, or registered ones with none at all.

    A device also counts as offline when its last status (the MQTT Last Will) says so and is
    newer than its last reading.
    """
    seen = {d.device_id: d for s in state.snapshots.values() for d in s.devices}
    for device_id in sorted(set(seen) | set(state.registry)):
        last = seen.get(device_id)
        entry = state.registry.get(device_id)
        status = state.status.get(device_id)
        went_offline = (
            status is not None
            and status.fields.get("online") == 0
            and (last is None or status.time > last.time)
        )
        if last is not None and last.time > state.offline_before and not went_offline:
            continue
        since = status.time if went_offline and status else last.time if last else None
        device_type = last.device_type if last else entry.device_type if entry else "unknown"
        zone = entry.zone if entry else last.zone if last else "unknown"
        if since is None:
            message = _text("device_never_seen", hours=f"{state.settings.lookback_hours:g}")
        else:
            minutes = int((state.now - since).total_seconds() // 60)
            message = _text("device_offline", minutes=minutes)
        yield AlertPublic(
            id=f"device_offline:{device_id}",
            kind="device_offline",
            severity="warning",
            device_id=device_id,
            device_type=device_type,
            zone=zone,
            observed_at=since,
            message=message,
            detail={"registered": entry is not None, "last_will": went_offline},
        )
