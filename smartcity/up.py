"""``smartcity up``: the whole pipeline on this machine, with servers it starts itself.

Mosquitto and InfluxDB run as child processes with config and data under ``--data-dir``; the
ingester and a simulated fleet run as child processes of their own (two cores, not one).
Ctrl-C or SIGTERM stops them in the order that loses nothing: simulator, ingester (which drains
and acknowledges), broker, database.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from smartcity.settings import InfluxSettings, MqttSettings, add_arguments, load


class UpSettings(MqttSettings, InfluxSettings):
    section = "up"

    data_dir: Path = Field(
        Path("var"), description="Where servers keep config, data and logs (project-local)."
    )
    streetlights: int = Field(200, ge=0, description="Simulated street lights.")
    bins: int = Field(100, ge=0, description="Simulated waste bins.")
    chargers: int = Field(20, ge=0, description="Simulated EV charging stations.")
    seed: int = Field(1, description="Simulator seed.")
    backfill: float = Field(
        3600.0, ge=0, description="Seconds of history the simulator fills in before going live."
    )
    install: bool = Field(
        True, description="Install mosquitto and influxdb from Debian packages when missing."
    )
    simulate: bool = Field(True, description="Run the simulated fleet.")
    api: bool = Field(True, description="Serve the API and public page on 127.0.0.1:8000.")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up",
        parents=[common],
        help="run the whole pipeline here: mosquitto, influxdb, ingester, simulated fleet",
        description="Start Mosquitto and InfluxDB on the ports of --mqtt-url and --influx-url "
        "(installing them from Debian packages if missing), then the ingester and a simulated "
        "fleet. Stops everything cleanly on Ctrl-C or SIGTERM.",
    )
    add_arguments(p, UpSettings)
    p.set_defaults(func=run)


def _local_port(url: str, what: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        from smartcity.cli import UserError

        raise UserError(
            f"smartcity up starts {what} on this machine, but the URL names {host}: "
            "use a local address, or run the components one by one against remote servers"
        )
    default = 1883 if what == "mosquitto" else 8086
    return ("127.0.0.1" if host == "localhost" else host), parts.port or default


def run(args: argparse.Namespace) -> int:
    settings = load(UpSettings, args)
    from smartcity.cli import UserError
    from smartcity.servers import Influxd, Mosquitto, ServerError, install_missing, port_in_use

    mqtt_host, mqtt_port = _local_port(settings.mqtt_url, "mosquitto")
    influx_host, influx_port = _local_port(settings.influx_url, "influxd")
    ports = [("MQTT", mqtt_host, mqtt_port), ("InfluxDB", influx_host, influx_port)]
    if settings.api:
        ports.append(("the API", "127.0.0.1", 8000))
    for what, host, port in ports:
        if port_in_use(host, port):
            raise UserError(
                f"port {host}:{port} for {what} is already in use: stop what listens there "
                f"(another smartcity up?) or pick another port in the URL setting"
            )
    data = settings.data_dir.resolve()
    try:
        if settings.install:
            install_missing()
        broker = Mosquitto(workdir=data / "mosquitto", host=mqtt_host, port=mqtt_port)
        db = Influxd(workdir=data / "influxdb", host=influx_host, port=influx_port)
        broker.start()
        db.start()
    except ServerError as exc:
        raise UserError(str(exc)) from None

    env = {
        **os.environ,
        "SMARTCITY_MQTT_URL": settings.mqtt_url,
        "SMARTCITY_INFLUX_URL": settings.influx_url,
        "SMARTCITY_INFLUX_DB": settings.influx_db,
        "SMARTCITY_CITY": settings.city,
        "SMARTCITY_INGEST_SPOOL_DIR": str(data / "spool"),
    }
    me = [sys.executable, "-m", "smartcity"]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    children.append(("ingester", subprocess.Popen([*me, "ingest"], env=env)))
    if settings.api:
        api_env = {**env, "SMARTCITY_API_REGISTRY_URL": f"sqlite:///{data}/registry.db"}
        children.append(("api", subprocess.Popen([*me, "api"], env=api_env)))
    if settings.simulate:
        sim = [
            *me, "simulate", "--streetlights", str(settings.streetlights), "--bins",
            str(settings.bins), "--chargers", str(settings.chargers), "--seed", str(settings.seed),
            "--backfill", str(settings.backfill), "--speed", "0", "--no-progress",
        ]  # fmt: skip
        children.insert(0, ("simulator", subprocess.Popen(sim, env=env)))

    print(banner(settings, broker, db), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            for name, child in children:
                if child.poll() is not None:
                    print(
                        f"smartcity up: the {name} exited ({child.returncode}); stopping.",
                        file=sys.stderr,
                    )
                    stop.set()
    finally:
        print(
            "stopping: simulator, ingester (drains to InfluxDB), mosquitto, influxd...",
            file=sys.stderr,
        )
        for _, child in children:
            _terminate(child)
        broker.stop()
        db.stop()
    return 0


def _terminate(child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def banner(settings: UpSettings, broker: Any, db: Any) -> str:
    q = "SELECT count(seq) FROM streetlight, wastebin, evcharger"
    return f"""
Cremona smart-city pipeline is up.
  MQTT broker   {broker.url}   (config {broker.workdir}/mosquitto.conf, log {broker.log_path})
  InfluxDB      {db.url}   database '{settings.influx_db}' (data in {db.workdir})
  ingester      smartcity ingest (acknowledges what is stored; spool {settings.data_dir}/spool)
  api           {"http://127.0.0.1:8000/ (catalogue page), /docs (API)" if settings.api else "off"}
  simulator     {settings.streetlights} street lights, {settings.bins} bins, \
{settings.chargers} chargers, seed {settings.seed}
Watch it:
  curl -s {db.url}/query --data-urlencode 'db={settings.influx_db}' --data-urlencode 'q={q}'
  mosquitto_sub -h {broker.host} -p {broker.port} -t 'smartcity/v1/#' -v
Stop with Ctrl-C.
"""
