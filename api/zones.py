"""Per-zone summaries and health, from the same live state as the KPIs and alerts."""

from __future__ import annotations

from collections import Counter, defaultdict

from api.alerts import build_alerts
from api.kpis import KPI_MODULES
from api.schemas.zones import DeviceCounts, ZoneHealth, ZoneSummary
from api.state import CityState
from smartcity.city import ZONES


def zone_summaries(state: CityState) -> list[ZoneSummary]:
    """Every zone's summary (once per state)."""
    return state.derive("zones", lambda: _summaries(state))


def _summaries(state: CityState) -> list[ZoneSummary]:
    alerts = build_alerts(state)
    alert_counts: dict[str, Counter[str]] = defaultdict(Counter)
    offline: dict[tuple[str, str], int] = Counter()
    for a in alerts:
        alert_counts[a.zone][a.kind] += 1
        if a.kind == "device_offline":
            offline[(a.zone, a.device_type)] += 1
    registered: Counter[tuple[str, str]] = Counter(
        (r.zone, r.device_type) for r in state.registry.values()
    )
    figures: dict[str, Counter[str]] = defaultdict(Counter)
    reporting: Counter[tuple[str, str]] = Counter()
    unregistered: Counter[str] = Counter()
    for t, module in KPI_MODULES.items():
        snap = state.snapshots[t]
        for zone, counts in module.zone_figures(snap, state.settings).items():
            figures[zone].update(counts)
        for d in snap.fresh:
            reporting[(d.zone, t)] += 1
            unregistered[d.zone] += d.device_id not in state.registry
    out = []
    for z in ZONES:
        devices = {
            t: DeviceCounts(
                registered=registered[(z.name, t)],
                reporting=reporting[(z.name, t)],
                offline=offline[(z.name, t)],
            )
            for t in KPI_MODULES
        }
        up = sum(c.reporting for c in devices.values())
        down = sum(c.offline for c in devices.values())
        agents = [h for h in state.health.values() if h.zone == z.name]
        out.append(
            ZoneSummary(
                zone=z.name,
                lat=z.lat,
                lon=z.lon,
                devices=devices,
                figures={k: figures[z.name][k] for k in _figure_names()},
                alerts=dict(sorted(alert_counts[z.name].items())),
                health=ZoneHealth(
                    reporting_share=round(100 * up / (up + down), 2) if up + down else None,
                    unregistered_reporting=unregistered[z.name],
                    edge_agents=len(agents),
                    outbox_depth=sum(int(h.fields.get("outboxDepth") or 0) for h in agents),
                    dropped=sum(int(h.fields.get("dropped") or 0) for h in agents),
                    agents_with_errors=sum(bool(h.fields.get("lastError")) for h in agents),
                ),
            )
        )
    return out


def _figure_names() -> list[str]:
    return [name for m in KPI_MODULES.values() for name in m.zone_counts]
