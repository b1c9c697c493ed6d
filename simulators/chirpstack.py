"""Bins as LoRaWAN sensors behind ChirpStack v4: each reading as the uplink event ChirpStack's
MQTT integration would publish, its payload in the sensor model's bytes (``--via chirpstack``).

So the bridge (``smartcity lorawan``) can be tried, and measured, without radios. A simulated
bin's DevEUI is derived from its id (:func:`dev_eui`), so the same fleet can be provisioned with
``smartcity devices provision ... --dev-eui``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

from smartcity import lorawan_profiles
from smartcity.devices import Reading

#: A made-up gateway that hears every simulated bin.
GATEWAY = "0016c001ff10a235"
_NS = uuid.UUID("0b8f6f3e-5d0e-4c1a-9a57-3f7e5f2a9c11")


def dev_eui(device_id: str) -> str:
    """The simulated bin's DevEUI: 16 hex digits from its id (stable across runs)."""
    return hashlib.sha256(device_id.encode()).hexdigest()[:16]


def up_topic(application_id: str, device_id: str) -> str:
    return f"application/{application_id}/device/{dev_eui(device_id)}/event/up"


def uplink(profile_name: str, application_id: str, device_id: str, reading: Reading) -> bytes:
    """ChirpStack v4's JSON ``up`` event for one reading (fCnt = seq, 32-bit)."""
    profile = lorawan_profiles.load(profile_name)
    fport, data = profile.encode_uplink(reading.model_dump())
    eui = dev_eui(device_id)
    event = {
        "deduplicationId": str(uuid.uuid5(_NS, f"{eui}/{reading.seq}")),
        "time": reading.ts.isoformat(),
        "deviceInfo": {
            "applicationId": application_id,
            "deviceName": device_id,
            "devEui": eui,
        },
        "fCnt": reading.seq % 2**32,
        "fPort": fport,
        "data": base64.b64encode(data).decode(),
        "rxInfo": [{"gatewayId": GATEWAY, "rssi": -90 - reading.seq % 20, "snr": 6.5}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"spreadingFactor": 9}}},
    }
    return json.dumps(event, separators=(",", ":")).encode()
