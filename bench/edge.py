"""Edge agent footprint and replay rate, against the targets of issue 3 (a script, not a test).

    .venv/bin/python bench/edge.py [--duration 60] [--replay 20000]

1. Footprint: one agent (simulated street light, one reading every 10 s) against a local
   Mosquitto; RSS and CPU of its process over ``--duration`` seconds after it connected.
   Baseline, same run: the RSS of a bare Python interpreter on this machine.
2. Replay: an outbox holding ``--replay`` readings (filled while no broker runs, as after an
   outage), then the broker comes back; time from the agent's reconnection until its outbox is
   empty, i.e. every reading PUBACKed, and a subscriber counts that all arrived. Baseline, same
   run: a plain paho client publishing the same batches with the same window, no outbox.

Targets: RSS <= 40 MB, CPU <= 1 % of a core, replay >= 2,000 readings/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smartcity.contract import encode_stored, topic
from stack.servers import Mosquitto, free_port

# Run as ``python bench/edge.py``, this file's folder leads sys.path and its name would hide the
# ``edge`` package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from edge.drivers import DRIVERS  # noqa: E402
from edge.outbox import Outbox  # noqa: E402
from edge.settings import EdgeSettings  # noqa: E402

TARGET_RSS_MB, TARGET_CPU_PCT, TARGET_REPLAY = 40.0, 1.0, 2000.0
CITY, DEVICE = "bench", "sl-bench"
TICK = os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int) -> dict[str, float]:
    """The memory figures of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile...), in MB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return {k: int(v.split()[0]) / 1024 for k, v in fields.items() if v.strip().endswith("kB")}


def proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK  # utime + stime


def agent(work: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    (work / "agent.log").unlink(missing_ok=True)
    log = (work / "agent.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "smartcity", "edge", "run", "--driver", "simulated",
         "--device-type", "streetlight", "--device-id", DEVICE, "--city", CITY,
         "--mqtt-url", url, "--outbox", str(work / "outbox.sqlite"), "--zone", "Centro", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_log(work: Path, text: str, count: int = 1, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (work / "agent.log").read_text().count(text) >= count:
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"agent log has no {text!r}:\n{(work / 'agent.log').read_text()}")


def footprint(work: Path, broker: Mosquitto, duration: float) -> tuple[dict[str, float], float]:
    """The agent's memory figures at its largest RSS over ``duration``, and its CPU %."""
    proc = agent(work, broker.url, "--interval", "10", "--heartbeat", "60")
    try:
        wait_log(work, "connected to broker")
        time.sleep(1.0)
        cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        worst: dict[str, float] = {"VmRSS": 0.0}
        while time.monotonic() - t0 < duration:
            time.sleep(1.0)
            now = proc_status_mb(proc.pid)
            worst = max(worst, now, key=lambda m: m["VmRSS"])
        cpu_pct = 100 * (proc_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(30)
    return worst, cpu_pct


def bare_python_rss() -> float:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    rss = proc_status_mb(p.pid)["VmRSS"]
    p.wait()
    return rss


class Counter:
    """A QoS 1 subscriber counting the readings that reach it."""

    def __init__(self, broker: Mosquitto, filt: str) -> None:
        self.readings = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        # a persistent session: the broker keeps its subscription and queue across its restart
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.subscribe(filt, qos=1)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.readings += len(json.loads(msg.payload)["readings"])

    def wait(self, n: int, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.readings < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.readings

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fill_outbox(path: Path, n: int) -> None:
    """``n`` readings of the simulated light, one per 10 s, as if stored during an outage."""
    settings = EdgeSettings(
        device_type="streetlight", device_id=DEVICE, driver="simulated", outbox=path
    )
    driver = DRIVERS["simulated"]["streetlight"](settings)
    start = datetime.now(UTC) - timedelta(seconds=10 * n)
    readings = [driver.read(start + timedelta(seconds=10 * i)).readings[0] for i in range(n)]
    with Outbox(path, max(n, 10)) as box:
        box.store(readings, [])


def replay(work: Path, broker: Mosquitto, n: int) -> tuple[float, float, int]:
    """(readings/s the agent replays, its own report, readings a subscriber received)."""
    path = work / "outbox.sqlite"
    path.unlink(missing_ok=True)
    fill_outbox(path, n)
    counter = Counter(broker, topic("streetlight", DEVICE, "telemetry", CITY))
    time.sleep(0.5)
    broker.stop()
    proc = agent(
        work, broker.url, "--interval", "3600",
        "--reconnect-min-delay", "0.1", "--reconnect-max-delay", "0.2",
    )  # fmt: skip
    try:
        wait_log(work, "cannot reach the broker")
        broker.start()
        connected = wait_log(work, "connected to broker")
        depth = n
        while depth:
            with Outbox(path, n, exclusive=False) as box:
                depth = box.depth
            time.sleep(0.002)
        rate = n / (time.monotonic() - connected)
        wait_log(work, "backlog replayed")
        line = next(x for x in (work / "agent.log").read_text().splitlines() if "backlog" in x)
        own = float(line.split("rows_per_s=")[1].split()[0])
        received = counter.wait(n + 1)  # +1: the reading taken at start
        counter.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return rate, own, received


def baseline_replay(work: Path, broker: Mosquitto, n: int, batch: int, window: int) -> float:
    """The same readings and batches published by a bare paho client, no outbox."""
    path = work / "baseline.sqlite"
    fill_outbox(path, n)
    with Outbox(path, n) as box:
        rows = [r for (r,) in box.db.execute("SELECT body FROM outbox ORDER BY id")]
    payloads = [
        encode_stored("telemetry", rows[i : i + batch], "Centro") for i in range(0, n, batch)
    ]
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    done = threading.Semaphore(window)
    client.on_publish = lambda *a: done.release()
    client.connect(broker.host, broker.port)
    client.loop_start()
    where = topic("streetlight", "sl-baseline", "telemetry", CITY)
    t0 = time.monotonic()
    for p in payloads:
        done.acquire()
        client.publish(where, p, qos=1)
    for _ in range(window):
        done.acquire()
    elapsed = time.monotonic() - t0
    client.disconnect()
    client.loop_stop()
    return n / elapsed


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of footprint")
    parser.add_argument("--replay", type=int, default=20_000, help="readings in the backlog")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(workdir=work / "mosquitto", host="127.0.0.1", port=free_port())
        broker.start()
        try:
            print(f"footprint: one agent, one reading every 10 s, {args.duration:.0f} s ...")
            mem, cpu = footprint(work, broker, args.duration)
            base_rss = bare_python_rss()
            print(f"replay: {args.replay:,} readings waiting in the outbox, broker restarted ...")
            rate, own, received = replay(work, broker, args.replay)
            defaults = EdgeSettings.model_fields
            base_rate = baseline_replay(
                work, broker, args.replay, defaults["batch_size"].default,
                defaults["window"].default,
            )  # fmt: skip
        finally:
            broker.stop()
    rss = mem["VmRSS"]
    print()
    print(f"RSS        {rss:6.2f} MB  target <= {TARGET_RSS_MB:.0f} MB: "
          f"{verdict(rss <= TARGET_RSS_MB)} ({rss / TARGET_RSS_MB:.0%} of it)")  # fmt: skip
    print(f"           of which {mem['RssFile']:.1f} MB shared files (libpython, pydantic-core, "
          f"libcrypto...), {mem['RssAnon']:.1f} MB private; peak since start "
          f"{mem['VmHWM']:.1f} MB; a bare Python here: {base_rss:.1f} MB")  # fmt: skip
    print(f"CPU        {cpu:6.3f} % of a core  target <= {TARGET_CPU_PCT:.0f} %: "
          f"{verdict(cpu <= TARGET_CPU_PCT)} ({cpu / TARGET_CPU_PCT:.1%} of it)")  # fmt: skip
    print(f"replay     {rate:8,.0f} readings/s until all PUBACKed (agent's own figure "
          f"{own:,.0f}/s); bare paho, same batches: {base_rate:,.0f}/s "
          f"(agent at {rate / base_rate:.0%} of it)")  # fmt: skip
    print(f"           target >= {TARGET_REPLAY:,.0f}/s: {verdict(rate >= TARGET_REPLAY)} "
          f"({rate / TARGET_REPLAY:.1f}x); subscriber received {received:,} of "
          f"{args.replay + 1:,} readings")  # fmt: skip
    ok = rss <= TARGET_RSS_MB and cpu <= TARGET_CPU_PCT and rate >= TARGET_REPLAY
    return 0 if ok and received >= args.replay else 1


if __name__ == "__main__":
    sys.exit(main())
