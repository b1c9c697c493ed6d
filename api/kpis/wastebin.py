"""Waste KPIs: bins at or above their threshold (the registry's for the bin, else the global
``--bin-threshold``) by stream and zone, fires, collections, and the separate-collection share
measured against the plan's 80 % target."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Engine

from api.kpis.base import (
    AlertDraft,
    Check,
    DeviceKpis,
    DeviceState,
    Figure,
    Period,
    Snapshot,
    count_by,
    count_events,
)
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, rounded
from api.settings import ApiSettings
from smartcity.devices.wastebin import Wastebin
from smartcity.influx import InfluxReader, ident

#: The stream that is not separately collected.
RESIDUAL = "residual"
#: The separate-collection share is measured over this many days of collections.
SHARE_DAYS = 30


def full(d: DeviceState, s: ApiSettings) -> bool:
    """At or above the bin's own threshold from the registry, else the global setting."""
    limit = d.threshold if d.threshold is not None else s.bin_threshold
    return float(d.fields.get("fillingLevel") or 0.0) >= limit


def burning(d: DeviceState, _s: ApiSettings | None = None) -> bool:
    return d.fields.get("status") == "burning"


def stream(d: DeviceState) -> str:
    return str(d.fields.get("storedWasteKind", "unknown"))


async def _wastebin_collections(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    rows = await db.rows(
        'SELECT sum("count") AS collections, mean("collectedLevel") AS level FROM $m '
        'WHERE "kind" = $kind AND time >= $from AND time < $to '
        'GROUP BY time(1d), "zone", "waste_kind" fill(none) tz($tz)',
        {"m": ident(Wastebin.event_measurement()), "kind": "emptied", **days.params()},
    )
    out = [
        {
            "day": day_of(r),
            "zone": r.tags["zone"],
            "stream": r.tags["waste_kind"],
            "collections": int(r.values["collections"]),
            "mean_collected_level": rounded(r.values["level"]),
        }
        for r in rows
    ]
    return sorted(out, key=lambda x: (x["day"], x["zone"], x["stream"]))


#: Its open dataset (``/v1/opendata/wastebin-collections-daily``).
COLLECTIONS_DAILY = Dataset(
    "wastebin-collections-daily",
    "Rifiuti: svuotamenti giornalieri per quartiere e flusso",
    "Waste: daily collections by zone and stream",
    "Svuotamenti dei cassonetti con sensore e riempimento medio allo svuotamento, per "
    "giorno, quartiere e flusso di raccolta.",
    "Collections of sensor-equipped bins and mean fill level when emptied, by day, zone "
    "and collection stream.",
    "ENVI",
    "DAILY",
    ("rifiuti", "raccolta differenziata", "economia circolare"),
    (
        DAY,
        ZONE,
        Column("stream", "string", "Flusso di raccolta", "Collection stream"),
        Column("collections", "integer", "Svuotamenti", "Collections"),
        Column("mean_collected_level", "number", "Riempimento medio (0-1)", "Mean fill (0-1)"),
    ),
    "zone",
    True,
    _wastebin_collections,
)


class WastebinKpis(DeviceKpis):
    device = Wastebin
    datasets = (COLLECTIONS_DAILY,)
    alert_messages: ClassVar[dict[str, tuple[str, str]]] = {
        "bin_full": (
            "Cassonetto pieno al {pct}% ({stream})",
            "Bin {pct}% full ({stream})",
        ),
        "bin_burning": ("Cassonetto in fiamme ({value} °C)", "Bin on fire ({value} °C)"),
    }
    kpi_ids = (
        "bins_reporting",
        "bins_full",
        "bins_burning",
        "collections_24h",
        "separate_collection_share",
    )
    zone_counts: ClassVar[dict[str, Check]] = {"bins_full": full, "bins_burning": burning}
    uses_threshold = True

    async def window(
        self, db: InfluxReader, end: datetime, settings: ApiSettings
    ) -> dict[str, float]:
        events = {"m": ident(Wastebin.event_measurement()), "kind": "emptied"}
        collections = await count_events(
            db, Wastebin.event_measurement(), "emptied", Period.last(end, 24)
        )
        rows = await db.rows(
            'SELECT sum("collectedLevel") AS v FROM $m '
            'WHERE "kind" = $kind AND time > $from AND time <= $to GROUP BY "waste_kind"',
            {**events, **Period.last(end, 24 * SHARE_DAYS).params()},
        )
        volume = {r.tags.get("waste_kind", ""): float(r.values["v"] or 0.0) for r in rows}
        return {
            "collections_24h": collections,
            "collected_total": sum(volume.values()),
            "collected_separately": sum(v for k, v in volume.items() if k != RESIDUAL),
        }

    def kpis(
        self, snap: Snapshot, window: dict[str, float], settings: ApiSettings
    ) -> dict[str, Figure]:
        fresh = snap.fresh
        full_bins = [d for d in fresh if full(d, settings)]
        total = window["collected_total"]
        return {
            "bins_reporting": Figure(len(fresh)),
            "bins_full": Figure(len(full_bins), count_by(full_bins, stream, lambda d: d.zone)),
            "bins_burning": Figure(sum(burning(d) for d in fresh)),
            "collections_24h": Figure(window["collections_24h"]),
            "separate_collection_share": Figure(
                round(100 * window["collected_separately"] / total, 2) if total > 0 else None
            ),
        }

    def message_values(self, alert: AlertDraft) -> dict[str, object]:
        """A full bin's fill level as a percent."""
        return {"pct": round(100 * float(alert.value or 0))} if alert.kind == "bin_full" else {}

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        out = []
        for d in snap.fresh:
            if burning(d):
                out.append(AlertDraft("bin_burning", "critical", d, d.fields.get("temperature")))
            if full(d, settings):
                out.append(
                    AlertDraft(
                        "bin_full", "warning", d, d.fields.get("fillingLevel"),
                        {"stream": stream(d)},
                    )
                )  # fmt: skip
        return out
