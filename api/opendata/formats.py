"""Rendering a dataset's rows as CSV, JSON or GeoJSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from api.opendata.datasets import Dataset
from smartcity.city import ZONES

LICENSE_URL = "https://creativecommons.org/licenses/by/4.0/"
PUBLISHER = "Comune di Cremona"
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "geojson": "application/geo+json",
}
_CENTROIDS = {z.name: (z.lon, z.lat) for z in ZONES}


def to_csv(dataset: Dataset, rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, [c.name for c in dataset.columns], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(dataset: Dataset, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    return json.dumps(
        {
            "dataset": dataset.id,
            "title": {"it": dataset.title_it, "en": dataset.title_en},
            "license": LICENSE_URL,
            "publisher": PUBLISHER,
            **meta,
            "data": rows,
        },
        ensure_ascii=False,
    )


def to_geojson(dataset: Dataset, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Points: a device's own position, or for figures per zone the zone's centroid."""
    features = []
    for row in rows:
        if dataset.spatial == "point":
            # a station the registry does not place has no geometry
            coords: tuple[float, float] | None = (
                (row["lon"], row["lat"]) if row["lat"] is not None else None
            )
        else:
            coords = _CENTROIDS.get(row["zone"])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(coords)} if coords else None,
                "properties": row,
            }
        )
    return json.dumps(
        {
            "type": "FeatureCollection",
            "name": dataset.id,
            "license": LICENSE_URL,
            "publisher": PUBLISHER,
            **meta,
            "features": features,
        },
        ensure_ascii=False,
    )
