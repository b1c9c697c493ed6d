"""Waste: full and burning bin alerts and zone figures. The KPIs are declared with the device
type (``Wastebin.kpis``); "full" is at or above the bin's threshold from the registry, else the
global ``--bin-threshold``."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine

from api.kpis.base import AlertDraft, Check, DeviceKpis, DeviceState, Snapshot, meets
from api.opendata.datasets import DAY, ZONE, Column, Dataset, Days, day_of, read_days, rounded
from api.settings import ApiSettings
from smartcity.devices.wastebin import Wastebin
from smartcity.influx import InfluxReader, ident
from smartcity.kpis import find
from smartcity.storage import rollup_field

#: At or above its threshold by its latest reading (the ``bins_full`` KPI's definition).
full = meets(find(Wastebin.kpis, "bins_full"))
#: Burning by its latest reading (the ``bins_burning`` KPI's definition).
burning = meets(find(Wastebin.kpis, "bins_burning"))


def stream(d: DeviceState) -> str:
    return str(d.fields.get("storedWasteKind", "unknown"))


_C = rollup_field  # the rollups' field names, short: _C("energy", "sum") is "energy_sum"
#: Collections by day, zone and stream, from raw events and from hourly rollups.
COLLECTIONS = {
    res: f'SELECT sum("count") AS collections, {level} AS level FROM {src} '
    'WHERE "kind" = $kind AND time >= $from AND time < $to '
    'GROUP BY time(1d), "zone", "waste_kind" fill(none) tz($tz)'
    for res, src, level in (
        ("raw", "$m", 'mean("collectedLevel")'),
        ("hourly", "$rp.$m", f'sum("{_C("collectedLevel", "sum")}") / '
         f'sum("{_C("collectedLevel", "count")}")'),
    )
}  # fmt: skip


async def _wastebin_collections(db: InfluxReader, _e: Engine, days: Days) -> list[dict[str, Any]]:
    rows = await read_days(
        db, COLLECTIONS, days, {"m": ident(Wastebin.event_measurement()), "kind": "emptied"}
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
    zone_counts: ClassVar[dict[str, Check]] = {"bins_full": full, "bins_burning": burning}
    uses_threshold = True

    def message_values(self, alert: AlertDraft) -> dict[str, object]:
        """A full bin's fill level as a percent."""
        return {"pct": round(100 * float(alert.value or 0))} if alert.kind == "bin_full" else {}

    def alerts(self, snap: Snapshot, settings: ApiSettings) -> list[AlertDraft]:
        out = []
        for d in snap.fresh:
            if burning(d, settings):
                out.append(AlertDraft("bin_burning", "critical", d, d.fields.get("temperature")))
            if full(d, settings):
                out.append(
                    AlertDraft(
                        "bin_full", "warning", d, d.fields.get("fillingLevel"),
                        {"stream": stream(d)},
                    )
                )  # fmt: skip
        return out
