"""The ingester: MQTT in, validated, InfluxDB out, nothing lost (``smartcity ingest``)."""
