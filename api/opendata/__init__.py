"""Open data: aggregated, non-personal datasets in CSV, JSON and GeoJSON, described in a
DCAT-AP_IT catalogue (JSON-LD) under CC BY 4.0."""
