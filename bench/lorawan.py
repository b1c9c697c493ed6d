"""Uplinks per second through the LoRaWAN bridge, against the same readings sent straight in the
contract (a script, not a test).

    .venv/bin/python bench/lorawan.py [--bins 200] [--uplinks 5000]

A local Mosquitto, a registry of ``--bins`` Milesight EM400-UDL bins, and ``smartcity lorawan``
as a child process. ``--uplinks`` ChirpStack v4 ``up`` events (the simulator's, EM400-UDL bytes)
are published at QoS 1 as fast as the broker takes them; the rate is uplinks divided by the time
from the first publish until a subscriber has every resulting telemetry message. Baseline, same
run: the same readings published straight on their contract telemetry topics, timed the same way.
The ratio is bridge rate / direct rate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from simulators.chirpstack import dev_eui, up_topic, uplink
from smartcity.contract import encode_telemetry, topic
from smartcity.devices.wastebin import WastebinReading
from smartcity.registry.db import make_engine
from smartcity.registry.models import Device
from stack.servers import Mosquitto, free_port

CITY, APP, PROFILE = "bench", "00000000-0000-4000-8000-00000000b0b0", "milesight-em400-udl"


def readings(bins: int, uplinks: int) -> list[tuple[str, WastebinReading]]:
    start = datetime.now(UTC) - timedelta(seconds=uplinks + 600)
    out = []
    for i in range(uplinks):
        device_id = f"wb-{i % bins:05d}"
        reading = WastebinReading(
            ts=start + timedelta(seconds=i), seq=i // bins, fillingLevel=(i % 100) / 100,
            temperature=20.0 + i % 10, storedWasteKind="residual", status="ok",
            batteryLevel=0.9,
        )  # fmt: skip
        out.append((device_id, reading))
    return out


class Counter:
    """Counts telemetry messages arriving for the bench city."""

    def __init__(self, broker: Mosquitto) -> None:
        self.n = 0
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = lambda c, u, m: self._one()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"smartcity/v1/{CITY}/+/+/telemetry", qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _one(self) -> None:
        with self.lock:
            self.n += 1

    def wait(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.n < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.n} of {n} telemetry messages arrived")
            time.sleep(0.01)


def blast(broker: Mosquitto, messages: list[tuple[str, bytes]], counter: Counter) -> float:
    """Messages per second from the first publish until the counter has them all."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    before = counter.n
    t0 = time.perf_counter()
    for name, payload in messages:
        client.publish(name, payload, qos=1)
    counter.wait(before + len(messages))
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return len(messages) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=200)
    parser.add_argument("--uplinks", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = f"sqlite:///{work}/registry.db"
        engine = make_engine(registry)
        now = datetime.now(UTC)
        with Session(engine) as session:
            for i in range(args.bins):
                device_id = f"wb-{i:05d}"
                session.add(
                    Device(
                        device_id=device_id, device_type="wastebin", zone="Centro", lat=45.13,
                        lon=10.02, created_at=now, updated_at=now, dev_eui=dev_eui(device_id),
                        lorawan_profile=PROFILE,
                    )
                )  # fmt: skip
            session.commit()
        engine.dispose()
        broker = Mosquitto(workdir=work / "mosquitto", host="127.0.0.1", port=free_port())
        broker.start()
        bridge = None
        try:
            log = (work / "lorawan.log").open("wb")
            bridge = subprocess.Popen(
                [sys.executable, "-m", "smartcity", "lorawan", "--mqtt-url", broker.url,
                 "--city", CITY, "--registry-url", registry, "--state", str(work / "state.db"),
                 "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(3)  # connected and subscribed (its log is quiet at warning)
            counter = Counter(broker)
            data = readings(args.bins, args.uplinks)
            direct = [
                (topic("wastebin", d, "telemetry", CITY), encode_telemetry([r], "Centro"))
                for d, r in data
            ]
            chirp = [(up_topic(APP, d), uplink(PROFILE, APP, d, r)) for d, r in data]
            direct_rate = blast(broker, direct, counter)
            bridge_rate = blast(broker, chirp, counter)
            assert bridge.poll() is None, (work / "lorawan.log").read_text()
        except BaseException:
            print((work / "lorawan.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if bridge is not None:
                bridge.terminate()
                try:
                    bridge.wait(30)
                except subprocess.TimeoutExpired:
                    bridge.kill()
            broker.stop()
    print(f"bins {args.bins}, uplinks {args.uplinks}")
    print(f"straight in the contract: {direct_rate:,.0f} readings/s")
    print(f"through the bridge:       {bridge_rate:,.0f} uplinks/s")
    print(f"ratio bridge/direct:      {bridge_rate / direct_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
