"""Container health checks for docker-compose; exit 0 when healthy, 1 with the reason if not.

python deploy/healthcheck.py http URL     URL answers 2xx (the API)
python deploy/healthcheck.py fresh SECONDS
    InfluxDB (SMARTCITY_INFLUX_URL, SMARTCITY_INFLUX_DB) holds a device reading younger
    than SECONDS: readings are flowing from the simulator through the ingester.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from smartcity.devices import DEVICE_TYPES
from smartcity.settings import InfluxSettings


def http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return None if 200 <= resp.status < 300 else f"{url} answered {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def fresh(seconds: float) -> str | None:
    settings = InfluxSettings()
    since = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    measurements = ", ".join(f'"{t.measurement()}"' for t in DEVICE_TYPES.values())
    body = urllib.parse.urlencode(
        {
            "db": settings.influx_db,
            "q": f'SELECT count("seq") FROM {measurements} WHERE time > $since',
            "params": json.dumps({"since": since}),
        }
    ).encode()
    try:
        with urllib.request.urlopen(f"{settings.influx_url}/query", body, timeout=5) as resp:
            result = json.load(resp)["results"][0]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return f"cannot query InfluxDB at {settings.influx_url}: {exc}"
    if "error" in result:
        return f"InfluxDB: {result['error']}"
    if not result.get("series"):
        return f"no device reading in InfluxDB younger than {seconds:.0f} s"
    return None


def main(argv: list[str]) -> int:
    checks = {"http": http, "fresh": lambda arg: fresh(float(arg))}
    if len(argv) != 2 or argv[0] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    problem = checks[argv[0]](argv[1])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
