"""``smartcity ocpp``: an OCPP 1.6J central system that publishes the contract for its chargers.

Real charging columns speak OCPP 1.6J (JSON over WebSocket) to a central system and never run
an edge agent. This gateway is that central system: it authenticates each charger, answers it
as OCPP asks, turns what it says into the contract's readings, events, status and health, and
publishes them for it as an edge agent would (disk outbox first, MQTT QoS 1 after), so the
ingester, the API and the boards see chargers like any other device. Operators' commands reach
a charger as OCPP calls and its answer comes back as the command's result. See docs/ocpp.md.
"""
