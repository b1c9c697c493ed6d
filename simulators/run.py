"""Run a simulated fleet against a broker until stopped or ``--messages`` readings are acked."""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict

from simulators.chirpstack import up_topic, uplink
from simulators.commands import FleetCommands
from simulators.fleet import SimClock, build_fleet, schedule
from simulators.publisher import AckingPublisher
from simulators.settings import SimulateSettings
from smartcity.contract import Location, Status, encode, encode_events, encode_telemetry, topic
from smartcity.devices import Event, Reading
from smartcity.progress import Progress
from smartcity.settings import mqtt_endpoint

log = logging.getLogger("smartcity.simulate")


def run(settings: SimulateSettings, stop: threading.Event | None = None) -> int:
    """Publish until ``stop`` is set or the target is acknowledged; returns readings acked."""
    stop = stop or threading.Event()
    fleet = build_fleet(settings.seed, settings.counts(), settings.fault_rate, settings.id_prefix)
    if not fleet:
        raise ValueError("the fleet is empty: give --fleet TYPE=N, e.g. --fleet airquality=10")
    start = settings.start_time()
    # a broker with accounts binds each login to one client id, its username
    # (smartcity/broker_acl.py); an open broker takes any
    client_id = mqtt_endpoint(settings.mqtt_url)[3] or f"smartcity-sim-{os.getpid()}"
    pub = AckingPublisher(settings.mqtt_url, client_id, settings.window)
    pub.connect()
    city = settings.city
    chirpstack = settings.via == "chirpstack"
    if settings.commands and not chirpstack:  # ChirpStack devices answer through the bridge
        answering = FleetCommands(fleet, city)
        pub.subscribe(answering.filter, answering.handle)
    chargers = None
    if settings.via == "ocpp":
        from simulators.ocpp import OcppFleet

        chargers = OcppFleet(settings.ocpp_url, settings.charger_passwords())
        chargers.connect([d for d in fleet if d.device_type.name == "evcharger"])
    target = settings.messages
    log.info(
        "simulating",
        extra={
            "devices": len(fleet),
            "start": start.isoformat(),
            "speed": settings.effective_speed(),
            "target": target or "none",
        },
    )
    if settings.status:
        for dev in fleet:
            if chirpstack and dev.device_type.name == "wastebin":
                continue  # a LoRaWAN sensor has no MQTT session, hence no status
            if chargers is not None and dev.device_type.name == "evcharger":
                continue  # the central system reports an OCPP charger's status
            p = dev.placement
            status = Status(
                v=1,
                state="online",
                ts=start,
                zone=p.zone,
                location=Location(lat=p.lat, lon=p.lon),
                firmware="simulator",
            )
            pub.publish(
                topic(dev.device_type.name, dev.device_id, "status", city),
                encode(status),
                retain=True,
            )
    clock = SimClock(start, settings.effective_speed())
    produced = 0
    sim_now = start
    progress = Progress(
        lambda: (
            f"readings acked {pub.acked_readings:,}/{target or produced:,}  "
            f"messages in flight {len(pub.outstanding):,}  simulated time {sim_now:%Y-%m-%d %H:%M}"
        ),
        settings.progress,
    )
    buffers: dict[int, list[Reading]] = defaultdict(list)

    def send(dev_index: int) -> None:
        dev = fleet[dev_index]
        readings = buffers.pop(dev_index)
        if chirpstack and dev.device_type.name == "wastebin":
            for reading in readings:  # one uplink per reading: a sensor has no backlog
                pub.publish(
                    up_topic(settings.application_id, dev.device_id),
                    uplink(settings.lorawan_profile, settings.application_id, dev.device_id,
                           reading),
                    readings=1,
                )  # fmt: skip
            return
        pub.publish(
            topic(dev.device_type.name, dev.device_id, "telemetry", city),
            encode_telemetry(readings, dev.placement.zone),
            readings=len(readings),
        )

    index = {id(d): i for i, d in enumerate(fleet)}
    try:
        for due, dev in schedule(fleet, start):
            if stop.is_set() or (target is not None and produced >= target):
                break
            clock.wait_until(due)
            sim_now = due
            reading, events = dev.read(due)
            if chargers is not None and dev.device_type.name == "evcharger":
                chargers.send(dev, reading, events)
                produced += 1
                progress.tick()
                continue
            i = index[id(dev)]
            buffers[i].append(reading)
            produced += 1
            if len(buffers[i]) >= settings.batch:
                send(i)
            if events and not (chirpstack and dev.device_type.name == "wastebin"):
                publish_events(
                    pub, dev.device_type.name, dev.device_id, city, events, dev.placement.zone
                )
            progress.tick()
    except KeyboardInterrupt:
        stop.set()
    finally:
        for i in list(buffers):
            send(i)
        if not pub.drain(timeout=60):
            log.error(
                "some messages were not acknowledged in 60 s",
                extra={"unacked": len(pub.outstanding)},
            )
        progress.done()
        pub.close()
        if chargers is not None:
            chargers.close()
    log.info(
        "simulation finished",
        extra={"readings_acked": pub.acked_readings, "messages_acked": pub.acked_messages},
    )
    return pub.acked_readings + (chargers.acked if chargers is not None else 0)


def publish_events(
    pub: AckingPublisher,
    device_type: str,
    device_id: str,
    city: str,
    events: list[Event],
    zone: str,
) -> None:
    pub.publish(topic(device_type, device_id, "events", city), encode_events(events, zone))
