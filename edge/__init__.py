"""The edge agent: one field device to the platform over MQTT, losing nothing on the way."""
